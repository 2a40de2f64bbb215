// Replication faults with real processes: three peer daemons and a writer
// (k=3, W=2) committing through the C interface. Each case takes one peer
// away (killed, hung, restarted with or without its disk, cut off from the
// network), then a second, and checks:
//   - with W replicas reachable the writer keeps committing;
//   - with fewer, a commit fails naming the replicas, or blocks; it never
//     reports success;
//   - a returning peer catches up to the writer's epoch;
//   - nothing acknowledged is lost: the heap recovered on an empty directory
//     from the peers is exactly the writer's last durable state.
// And a replica whose stored pages have flipped bits: readers still get
// the right data, from another replica. And a heap on two of the three
// peers (k=2, W=2) that loses its writer and one replica: it opens
// elsewhere from the other, which holds every acknowledged commit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>

#include "store/log_format.h"
#include "replication/placement.h"
#include "tests/cluster/cluster_fixture.h"

namespace pheaptest::cluster {
namespace {

// One way of taking a peer away and bringing it back.
struct Fault {
  std::function<void(Peer&)> inject;
  std::function<void(Peer&)> heal;
};

const Fault kKill = {[](Peer& p) { p.Kill(); }, [](Peer& p) { ASSERT_TRUE(p.Start()); }};
const Fault kStop = {[](Peer& p) { p.Pause(); }, [](Peer& p) { p.Resume(); }};
const Fault kKillAndWipe = {[](Peer& p) { p.Kill(); }, [](Peer& p) {
                              p.Wipe();
                              ASSERT_TRUE(p.Start());
                            }};

class ClusterFaults : public ClusterTest {
 protected:
  // Peer 0 gets `first` (and comes back only if `first_returns`); with it
  // away, peer 1 gets `second`, leaving fewer than W; then both return.
  // Last, peer 2 (never touched) is killed and the heap recovered from the
  // two that came back; when peer 0 does not return, from peers 1 and 2.
  void Scenario(const Fault& first, const Fault& second, bool first_returns) {
    ASSERT_TRUE(writer_.Start(kHeap, Config("writer"), seed_));
    ASSERT_NO_FATAL_FAILURE(CommitAll(3, "all peers up"));
    ASSERT_NO_FATAL_FAILURE(first.inject(*peers_[0]));
    ASSERT_NO_FATAL_FAILURE(CommitAll(5, "one peer away"));

    ASSERT_NO_FATAL_FAILURE(second.inject(*peers_[1]));
    const bool blocked = ExpectNoQuorum();
    ASSERT_NO_FATAL_FAILURE(second.heal(*peers_[1]));
    ASSERT_NO_FATAL_FAILURE(ExpectResumes(blocked));
    ASSERT_NO_FATAL_FAILURE(ExpectCaughtUp(1));
    if (first_returns) {
      ASSERT_NO_FATAL_FAILURE(first.heal(*peers_[0]));
      ASSERT_NO_FATAL_FAILURE(ExpectCaughtUp(0));
    }
    writer_.Kill();
    if (first_returns) peers_[2]->Kill();
    ExpectRecovers("recovered", first_returns ? "from the two peers that came back" : "from the two peers left");
  }
};

TEST_F(ClusterFaults, PeerKilled) {
  PHEAP_CLUSTER_SKIP_IF_TSAN();
  ASSERT_TRUE(StartPeers(false));
  Scenario(kKill, kKill, /*first_returns=*/false);
}

TEST_F(ClusterFaults, PeerHung) {
  PHEAP_CLUSTER_SKIP_IF_TSAN();
  ASSERT_TRUE(StartPeers(false));
  Scenario(kStop, kStop, true);
}

TEST_F(ClusterFaults, PeerRestartedWithItsDisk) {
  PHEAP_CLUSTER_SKIP_IF_TSAN();
  ASSERT_TRUE(StartPeers(false));
  Scenario(kKill, kKill, true);
}

// The peer comes back with an empty directory: it must be brought to the
// writer's epoch, epochs it never saw included.
TEST_F(ClusterFaults, PeerRestartedEmpty) {
  PHEAP_CLUSTER_SKIP_IF_TSAN();
  ASSERT_TRUE(StartPeers(false));
  Scenario(kKillAndWipe, kKill, true);
}

TEST_F(ClusterFaults, PeerCutOffFromTheNetwork) {
  PHEAP_CLUSTER_SKIP_IF_TSAN();
  std::string skip;
  if (!StartPeers(true, &skip)) {
    ASSERT_FALSE(skip.empty()) << "the peers did not start";
    GTEST_SKIP() << skip;
  }
  // The cut must really separate the peer, and the heal really join it.
  const Fault cut = {[](Peer& p) {
                       p.netns()->Cut();
                       ASSERT_EQ(p.Durable(kHeap, 500ms), -1) << p.endpoint() << " still answers after the cut";
                     },
                     [](Peer& p) {
                       p.netns()->Heal();
                       ASSERT_GE(p.Durable(kHeap, 10s), 0) << p.endpoint() << " does not answer after the heal";
                     }};
  Scenario(cut, cut, true);
}

// Flips one byte inside every stored page of the log files under `dir`
// (the data pages that follow each kPages entry block); the number flipped.
size_t FlipStoredPages(const std::string& dir) {
  namespace fmt = pheap::logfmt;
  size_t flipped = 0;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir)) {
    if (f.path().extension() != ".pheap") continue;
    std::ifstream in(f.path(), std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t blocks = bytes.size() / fmt::kBlockSize;
    for (size_t b = 1; b < blocks; ++b) {
      fmt::EntryBlock entry;
      std::memcpy(&entry, bytes.data() + b * fmt::kBlockSize, sizeof(entry));
      if (entry.magic != fmt::kEntryMagic || entry.kind != static_cast<uint32_t>(fmt::EntryKind::kPages)) continue;
      for (uint32_t i = 0; i < entry.count && b + 1 + i < blocks; ++i, ++flipped)
        bytes[(b + 1 + i) * fmt::kBlockSize + 1000] ^= 0x20;
      b += entry.count;
    }
    std::ofstream out(f.path(), std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  return flipped;
}

TEST_F(ClusterFaults, ReplicaWithFlippedBits) {
  PHEAP_CLUSTER_SKIP_IF_TSAN();
  ASSERT_TRUE(StartPeers(false));
  ASSERT_TRUE(writer_.Start(kHeap, Config("writer"), seed_));
  ASSERT_NO_FATAL_FAILURE(CommitAll(6, "all peers up"));
  for (int i = 0; i < kPeers; ++i) ASSERT_NO_FATAL_FAILURE(ExpectCaughtUp(i));
  writer_.Kill();

  // Damage the replica a reader asks first.
  std::vector<std::string> endpoints;
  for (auto& p : peers_) endpoints.push_back(p->endpoint());
  const auto order = pheap::ReplicaSet(pheap::logfmt::HeapIdOf(kHeap, std::strlen(kHeap)), endpoints, kPeers);
  auto index = [&](const std::string& ep) {
    return static_cast<size_t>(std::find(endpoints.begin(), endpoints.end(), ep) - endpoints.begin());
  };
  Peer& damaged = *peers_[index(order[0])];
  damaged.Terminate();
  ASSERT_GT(FlipStoredPages(damaged.dir()), 0u) << "no stored page found under " << damaged.dir();
  ASSERT_TRUE(damaged.Start());
  EXPECT_EQ(damaged.Durable(kHeap), writer_.last_durable().epoch)
      << "the damaged replica should still report its durable epoch (its pages are checked when read)";

  ExpectRecovers("recovered1", "with every page of the first replica damaged");
  peers_[index(order[1])]->Kill();
  ExpectRecovers("recovered2", "from the damaged replica and one good one");
}

// The writer's machine is lost (killed, its directory deleted) and so is one
// of the heap's two replicas. With W = 2 an open needs k - W + 1 = 1
// replica: the heap opens on a new directory with every acknowledged
// commit. Commits then fail, saying that fewer than W replicas are
// reachable, and succeed again once the lost replica is back.
TEST_F(ClusterFaults, WriterAndOneOfTwoReplicasLost) {
  PHEAP_CLUSTER_SKIP_IF_TSAN();
  replication_ = "replicas=2;quorum=2";
  ASSERT_TRUE(StartPeers(false));
  ASSERT_TRUE(writer_.Start(kHeap, Config("writer"), seed_));
  ASSERT_NO_FATAL_FAILURE(CommitAll(5, "both replicas up"));
  writer_.Kill();
  std::filesystem::remove_all(tmp_.path() + "/writer");
  std::vector<std::string> endpoints;
  for (auto& p : peers_) endpoints.push_back(p->endpoint());
  const auto set = pheap::ReplicaSet(pheap::logfmt::HeapIdOf(kHeap, std::strlen(kHeap)), endpoints, 2);
  const auto lost =
      static_cast<size_t>(std::find(endpoints.begin(), endpoints.end(), set[seed_ % 2]) - endpoints.begin());
  peers_[lost]->Kill();

  ExpectRecovers("elsewhere", "from the one replica left");
  Writer again;
  ASSERT_TRUE(again.Start(kHeap, Config("again"), seed_));
  EXPECT_EQ(again.open_ops(), writer_.last_durable().ops);
  Writer::Reply r = again.Commit();
  ASSERT_TRUE(r.answered) << "a commit with one of two replicas must fail, not hang";
  EXPECT_FALSE(r.durable) << "epoch " << r.epoch << " durable on one replica of two, W = 2";
  EXPECT_NE(r.error.find("fewer than quorum=2 replicas are reachable"), std::string::npos) << r.error;

  ASSERT_TRUE(peers_[lost]->Start());
  for (int attempt = 0; attempt < 3 && !r.durable; ++attempt) r = again.Commit();
  ASSERT_TRUE(r.durable) << "no commit succeeded in 3 tries once the lost replica was back: " << r.error
                         << "\nthe writer said:\n"
                         << again.stderr_text();
}

}  // namespace
}  // namespace pheaptest::cluster

int main(int argc, char** argv) { return pheaptest::cluster::RunTests(argc, argv); }
