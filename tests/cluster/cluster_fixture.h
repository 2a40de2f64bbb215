// The cluster tests' fixture: three peers, the writer (k=3, W=2 unless a
// case sets replication_) and the checks every fault case makes.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/cluster/cluster_util.h"
#include "tests/support/test_util.h"

namespace pheaptest::cluster {

// ThreadSanitizer runs an internal thread with every signal blocked, so the
// writer's commit safepoint (a signal to every thread) cannot complete under
// it; the release and ASan builds run these tests.
#define PHEAP_CLUSTER_SKIP_IF_TSAN() \
  PHEAP_SKIP_UNDER_TSAN("its background thread blocks the writer's commit safepoint signal")

inline constexpr char kHeap[] = "cluster";

inline uint64_t TestSeed() {
  uint64_t seed = std::random_device{}();
  if (const char* s = std::getenv("PHEAP_CRASH_SEED")) seed = std::strtoull(s, nullptr, 0);
  std::printf("seed %llu (replay: PHEAP_CRASH_SEED=%llu)\n", static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(seed));
  return seed;
}

// Three peers and a writer, with the checks the cases share (usable
// outside a fixture: its assertions fail the running test).
class Cluster {
 public:
  static constexpr int kPeers = 3;

  explicit Cluster(uint64_t seed) : seed_(seed) {}

  // Starts the peers, each in its own network namespace if `netns`; false
  // (with the reason in *skip) when namespaces are not available.
  bool StartPeers(bool netns, std::string* skip = nullptr) {
    if (netns) {
      keys_ = tmp_.path() + "/keys";
      std::string why = MakeSharedKeys(keys_);
      EXPECT_EQ(why, "") << "making CURVE keys";
      if (!why.empty()) return false;
    }
    for (int i = 0; i < kPeers; ++i) {
      const NetNs* ns = nullptr;
      if (netns) {
        ns_.push_back(std::make_unique<NetNs>());
        std::string why = ns_.back()->Create();
        if (!why.empty()) {
          if (skip != nullptr) *skip = "no network namespace for a peer: " + why;
          return false;
        }
        ns = ns_.back().get();
      }
      peers_.push_back(std::make_unique<Peer>(tmp_.path() + "/peer" + std::to_string(i), ns, keys_));
      if (!peers_.back()->Start()) return false;
    }
    return true;
  }

  // The heap's config on `dir` (under the test's directory) with the peers.
  std::string Config(const std::string& dir) const {
    return "dir=" + tmp_.path() + "/" + dir + ";size=256M;code_check=off;peers=" + PeerList(peers_) + ";" +
           replication_ + (keys_.empty() ? "" : ";keys=" + keys_);
  }

  // Commits `n` times; every commit must become durable.
  void CommitAll(int n, const char* when) {
    for (int i = 0; i < n; ++i) {
      Writer::Reply r = writer_.Commit();
      ASSERT_TRUE(r.answered) << when << ": commit " << i << " did not return within 30 s\n"
                              << writer_.stderr_text();
      ASSERT_TRUE(r.durable) << when << ": commit " << i << " failed: " << r.error;
    }
  }

  // With fewer than W replicas reachable a commit must fail with a reason
  // naming the replicas, or block; never succeed. True if it blocked.
  bool ExpectNoQuorum() {
    Writer::Reply r = writer_.Commit(15s);
    if (!r.answered) return true;
    EXPECT_FALSE(r.durable) << "a commit reported epoch " << r.epoch << " durable with fewer than W replicas reachable";
    std::string lower = r.error;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_NE(lower.find("replica"), std::string::npos) << "the failure does not say what is wrong: " << r.error;
    return false;
  }

  // After W replicas are back: a blocked commit completes; after a failed
  // one, the writer commits again (the first try may still meet a replica
  // reconnecting), and then every commit succeeds.
  void ExpectResumes(bool blocked) {
    if (blocked) {
      Writer::Reply r = writer_.Await(30s);
      ASSERT_TRUE(r.answered) << "the blocked commit did not complete once W replicas were back";
      ASSERT_TRUE(r.durable) << "the blocked commit failed once W replicas were back: " << r.error;
    } else {
      Writer::Reply r;
      for (int attempt = 0; attempt < 3 && !r.durable; ++attempt) r = writer_.Commit();
      ASSERT_TRUE(r.durable) << "no commit succeeded in 3 tries once W replicas were back: " << r.error
                             << "\nthe writer said:\n" << writer_.stderr_text();
    }
    CommitAll(3, "with W replicas back");
  }

  // A returning peer is brought up to the writer's epoch while the writer
  // goes on committing (each commit drives the catch-up; an empty peer is
  // first installed in the background, which takes a few round trips).
  void ExpectCaughtUp(int i) {
    int64_t at = -1;
    constexpr int kCommits = 60;  // 100 ms apart: at most about 6 s
    for (int commits = 0; commits <= kCommits; ++commits) {
      at = peers_[i]->Durable(kHeap, 2s);
      if (at == writer_.last_durable().epoch) return;
      Writer::Reply r = writer_.Commit();
      ASSERT_TRUE(r.durable) << "commit failed while peer " << i << " catches up: " << r.error;
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << "peer " << peers_[i]->endpoint() << " is at epoch " << at << " after " << kCommits
                  << " more commits; the writer at " << writer_.last_durable().epoch << "\nthe writer said:\n"
                  << writer_.stderr_text();
  }

  // Recovers the heap on a new empty directory and expects exactly the
  // writer's last durable state.
  void ExpectRecovers(const std::string& dir, const char* when) {
    Checked c = CheckHeap(kHeap, Config(dir), seed_);
    ASSERT_TRUE(c.ok) << when << ": " << c.text;
    EXPECT_EQ(c.ops, writer_.last_durable().ops) << when;
    EXPECT_EQ(c.epoch, writer_.last_durable().epoch) << when;
  }

  uint64_t seed_;
  pheaptest::TempDir tmp_{"pheap-cluster"};
  std::string replication_ = "replicas=3;quorum=2";  // k and W, as config keys
  std::string keys_;  // CURVE keys of peers in namespaces (not on loopback)
  std::vector<std::unique_ptr<NetNs>> ns_;  // outlive the peers inside them
  std::vector<std::unique_ptr<Peer>> peers_;
  Writer writer_;
};

class ClusterTest : public ::testing::Test, public Cluster {
 protected:
  ClusterTest() : Cluster(TestSeed()) {}
};

}  // namespace pheaptest::cluster
