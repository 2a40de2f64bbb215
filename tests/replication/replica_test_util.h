// Shared by the replica client tests: sealed epochs with an oracle of what
// each page must read as, and three test_peer processes with helpers to ask
// them, independently of the client under test, what they hold.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <thread>

#include "base/page_io.h"
#include "peer_test_util.h"
#include "replication/peer_channel.h"
#include "replication/replica_client.h"
#include "replication/wire.h"

namespace pheap::testing {

using namespace std::chrono_literals;

inline constexpr uint64_t kBase = uint64_t{0x3100} << 32;
inline constexpr uint64_t kRegionPages = 2048;
inline constexpr uint64_t kSize = kRegionPages * kPageSize;

// A sealed epoch with its own 4 KiB aligned buffer.
struct TestEpoch {
  SealedEpoch sealed;
  std::unique_ptr<uint8_t, decltype(&std::free)> buf{nullptr, &std::free};
};

// What every page must read as: the epoch that last wrote it (absent:
// never written, or discarded).
using Oracle = std::map<Pgno, Epoch>;

inline TestEpoch MakeEpoch(Epoch e, const std::vector<Pgno>& pages, Pgno hwm, std::vector<Run> discarded, Oracle* oracle) {
  TestEpoch t;
  t.buf.reset(static_cast<uint8_t*>(std::aligned_alloc(kPageSize, std::max<size_t>(1, pages.size()) * kPageSize)));
  for (size_t i = 0; i < pages.size(); ++i) FillPage(t.buf.get() + i * kPageSize, pages[i], e);
  t.sealed.image = ImageInfo{0, e, 0, kBase, kSize, hwm};
  t.sealed.pages = pages;
  t.sealed.data = t.buf.get();
  t.sealed.discarded = discarded;
  for (Pgno p : pages) (*oracle)[p] = e;
  for (const Run& r : discarded)
    for (Pgno p = r.first; p < r.end(); ++p) oracle->erase(p);
  return t;
}

inline std::vector<Pgno> Range(Pgno first, Pgno end) {
  std::vector<Pgno> v;
  for (Pgno p = first; p < end; ++p) v.push_back(p);
  return v;
}

class ReplicaFixture : public ::testing::Test {
 protected:
  static constexpr int kPeers = 3;

  void SetUp() override {
    for (int i = 0; i < kPeers; ++i) {
      endpoints_.push_back("ipc://" + tmp_.path() + "/peer" + std::to_string(i) + ".sock");
      dirs_.push_back(tmp_.path() + "/data" + std::to_string(i));
      peers_.push_back(std::make_unique<testing::PeerProcess>());
      StartPeer(i);
    }
    // Every peer answers before a test begins: on a loaded machine one that
    // starts late misses the client's HELLO and the first epochs, which the
    // checks of every replica's epoch would then see.
    for (const auto& ep : endpoints_) {
      const auto until = std::chrono::steady_clock::now() + 20s;
      while (DurableAt(ep) < 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(20ms);
    }
  }
  void StartPeer(int i) {
    peers_[i] = std::make_unique<testing::PeerProcess>();
    peers_[i]->Start({"--listen", endpoints_[i], "--dir", dirs_[i]});
  }
  int IndexOf(const std::string& endpoint) const {
    return static_cast<int>(std::find(endpoints_.begin(), endpoints_.end(), endpoint) - endpoints_.begin());
  }

  ReplicaClientOptions Options(bool claim = true, uint32_t quorum = 2) {
    ReplicaClientOptions o;
    auto rc = ResolveReplication(endpoints_, 3, quorum);
    EXPECT_TRUE(rc.ok()) << rc.status().ToString();
    o.replication = *rc;
    o.claim = claim;
    o.timeout = 2s;
    o.resend = 200ms;
    o.fetch_timeout = 500ms;
    o.straggler_wait = 1s;  // a live replica finishes each epoch: the checks below read its manifest
    o.frame_bytes = 256 * 1024;  // several frames per epoch
    return o;
  }
  std::unique_ptr<ReplicaClient> Open(const ReplicaClientOptions& o) {
    auto c = ReplicaClient::Open(kHeap, o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c.value()) : nullptr;
  }

  // The durable epoch replica `endpoint` reports, asked independently of
  // the client under test; -1 if it does not answer.
  int64_t DurableAt(const std::string& endpoint) {
    zmq::context_t ctx;
    auto ch = PeerChannel::Connect(ctx, endpoint, nullptr);
    if (!ch.ok()) return -1;
    auto r = (*ch)->Call(wire::EncodeHello((*ch)->NextRequestId(), kHeap), 2s);
    if (!r.ok()) return -1;
    const auto* m = std::get_if<wire::ManifestBody>(&(*r)->msg.body);
    return m ? static_cast<int64_t>(m->epoch) : -1;
  }

  // A reader of the heap on replica `endpoint` alone (the others may be down).
  std::unique_ptr<ReplicaClient> ReaderOn(const std::string& endpoint) {
    ReplicaClientOptions o = Options(/*claim=*/false);
    auto rc = ResolveReplication({endpoint}, 1, 1);
    EXPECT_TRUE(rc.ok()) << rc.status().ToString();
    o.replication = *rc;
    return Open(o);
  }

  // Waits until `endpoint` reports durable epoch `e`, up to `limit`.
  bool AwaitDurable(const std::string& endpoint, Epoch e, std::chrono::milliseconds limit = 20s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (DurableAt(endpoint) != static_cast<int64_t>(e)) {
      if (std::chrono::steady_clock::now() >= until) return false;
      std::this_thread::sleep_for(50ms);
    }
    return true;
  }

  // Waits until the client `c` sees the replica peers_[i] installed and
  // the peer reports durable epoch `e`.
  bool AwaitInstalled(const ReplicaClient& c, int i, Epoch e, std::chrono::milliseconds limit = 20s) {
    if (!AwaitDurable(endpoints_[i], e, limit)) return false;
    const auto until = std::chrono::steady_clock::now() + limit;
    for (;;) {
      for (const ReplicaState& st : c.state())
        if (st.endpoint == endpoints_[i] && !st.installing) return true;
      if (std::chrono::steady_clock::now() >= until) return false;
      std::this_thread::sleep_for(20ms);
    }
  }

  // Persists epochs from `next` on (one page each) until peers_[i], which
  // the writer cannot catch up epoch by epoch, is installed and holds the
  // last of them: a replica that just restarted is met by the first epoch
  // shipped once it is connected. Returns the last epoch persisted, 0 if it
  // was never installed.
  Epoch PersistUntilInstalled(ReplicaClient& c, int i, Epoch next, Pgno hwm, Oracle* oracle) {
    for (Epoch e = next; e < next + 5; ++e) {
      auto t = MakeEpoch(e, {e % hwm}, hwm, {}, oracle);
      Status s = c.Persist(t.sealed);
      EXPECT_TRUE(s.ok()) << s.ToString();
      if (!s.ok()) return 0;
      if (AwaitInstalled(c, i, e, 5s)) return e;
    }
    return 0;
  }

  // Reads pages [0, hwm) through `src` and checks each against the oracle.
  void VerifyImage(PageSource& src, Pgno hwm, const Oracle& oracle) {
    std::unique_ptr<uint8_t, decltype(&std::free)> buf(
        static_cast<uint8_t*>(std::aligned_alloc(kPageSize, PageSource::kMaxReadRun * kPageSize)), &std::free);
    std::vector<uint8_t> want(kPageSize), zero(kPageSize, 0);
    std::vector<uint64_t> present(PageSource::kMaxReadRun / 64);
    for (Pgno first = 0; first < hwm; first += PageSource::kMaxReadRun) {
      const auto count = static_cast<uint32_t>(std::min<Pgno>(PageSource::kMaxReadRun, hwm - first));
      Status s = src.ReadRun(first, count, buf.get(), present.data());
      ASSERT_TRUE(s.ok()) << s.ToString();
      for (uint32_t i = 0; i < count; ++i) {
        const Pgno p = first + i;
        auto it = oracle.find(p);
        const bool bit = (present[i / 64] >> (i % 64)) & 1;
        ASSERT_EQ(bit, it != oracle.end()) << "page " << p;
        if (it != oracle.end()) FillPage(want.data(), p, it->second);
        ASSERT_EQ(0, std::memcmp(buf.get() + uint64_t{i} * kPageSize, it != oracle.end() ? want.data() : zero.data(), kPageSize))
            << "page " << p << " should hold epoch " << (it != oracle.end() ? it->second : 0);
      }
    }
  }

  // Ships three epochs (multi-frame, sparse, discards) through `c`.
  void ShipFirstEpochs(ReplicaClient& c, Oracle* oracle) {
    auto e1 = MakeEpoch(1, Range(0, 600), 600, {}, oracle);
    ASSERT_TRUE(c.Persist(e1.sealed).ok());
    std::vector<Pgno> sparse = {1, 5, 64, 65, 599, 700, 1500};
    auto e2 = MakeEpoch(2, sparse, 1501, {{100, 20}}, oracle);
    ASSERT_TRUE(c.Persist(e2.sealed).ok());
    auto e3 = MakeEpoch(3, Range(200, 260), 1501, {}, oracle);
    ASSERT_TRUE(c.Persist(e3.sealed).ok());
  }

  static inline const std::string kHeap = "replicated";
  testing::TempDir tmp_;
  std::vector<std::string> endpoints_, dirs_;
  std::vector<std::unique_ptr<testing::PeerProcess>> peers_;
};

using pheaptest::DamageStoredPage;

}  // namespace pheap::testing
