// The engine with peers: commits reach the replicas, a heap opened by name on
// an empty directory comes back from them (faulting lazily, then restored
// into the local store in the background), and a stale local store is set
// aside rather than mixed with newer epochs.
#include <filesystem>
#include <random>

#include "heap/engine.h"
#include "peer_test_util.h"
#include "replication/peer_channel.h"
#include "replication/replica_composite.h"
#include "replication/wire.h"

namespace pheap::testing {
namespace {

using namespace std::chrono_literals;

constexpr Pgno kPages = 600;  // more than one restore run

class EngineReplicated : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i) {
      endpoints_.push_back("ipc://" + tmp_.path() + "/peer" + std::to_string(i) + ".sock");
      peers_[i].Start({"--listen", endpoints_[i], "--dir", tmp_.path() + "/peer" + std::to_string(i)});
    }
  }

  EngineOptions Options(const std::string& dir, bool with_peers = true) {
    EngineOptions o;
    o.dir = dir;
    o.size = uint64_t{64} << 20;
    if (with_peers) {
      auto r = ResolveReplication(endpoints_, 3, 2);
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      o.replication = *r;
    }
    o.restore_progress = false;
    return o;
  }

  std::unique_ptr<Engine> Open(const std::string& name, const EngineOptions& o) {
    auto e = Engine::Open(name, o);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? std::move(*e) : nullptr;
  }

  // Page p holds the byte (p + round) in every word-sized slot.
  static void Write(Engine& e, Pgno first, Pgno end, uint8_t round) {
    for (Pgno p = first; p < end; ++p)
      std::memset(static_cast<uint8_t*>(e.base()) + p * kPageSize, static_cast<uint8_t>(p + round), kPageSize);
  }
  static ::testing::AssertionResult Holds(Engine& e, Pgno first, Pgno end, uint8_t round) {
    for (Pgno p = first; p < end; ++p) {
      const uint8_t* page = static_cast<uint8_t*>(e.base()) + p * kPageSize;
      for (size_t i = 0; i < kPageSize; i += 512)
        if (page[i] != static_cast<uint8_t>(p + round))
          return ::testing::AssertionFailure()
                 << "page " << p << " byte " << i << " is " << int(page[i]) << ", want " << int(uint8_t(p + round));
    }
    return ::testing::AssertionSuccess();
  }
  static bool WaitRestored(Engine& e) {
    for (int i = 0; i < 400 && e.replicated()->restoring(); ++i) std::this_thread::sleep_for(25ms);
    return !e.replicated()->restoring() && e.replicated()->local_in_use();
  }

  // The manifest `endpoint` answers HELLO with, asked apart from any engine.
  static bool Manifest(const std::string& endpoint, wire::ManifestBody* out, const std::string& heap = "rep-read") {
    zmq::context_t ctx;
    auto ch = PeerChannel::Connect(ctx, endpoint, nullptr);
    if (!ch.ok()) return false;
    auto r = (*ch)->Call(wire::EncodeHello((*ch)->NextRequestId(), heap), 2s);
    if (!r.ok()) return false;
    const auto* m = std::get_if<wire::ManifestBody>(&(*r)->msg.body);
    if (m != nullptr) *out = *m;
    return m != nullptr;
  }

  TempDir tmp_;
  std::vector<std::string> endpoints_;
  PeerProcess peers_[3];
};

TEST_F(EngineReplicated, EmptyDirectoryComesBackFromTheReplicas) {
  const std::string a = tmp_.path() + "/a", b = tmp_.path() + "/b";
  {
    auto e = Open("rep-empty", Options(a));
    ASSERT_TRUE(e);
    ASSERT_NE(e->replicas(), nullptr);
    Write(*e, 0, kPages, 1);
    ASSERT_TRUE(e->Commit().ok());
    Write(*e, 100, 200, 2);
    auto c = e->Commit();
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_EQ(*c, 2u);
  }
  {
    // The machine is gone: a new directory, the same name and peers.
    auto e = Open("rep-empty", Options(b));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->durable_epoch(), 2u);
    EXPECT_TRUE(Holds(*e, 0, 100, 1));
    EXPECT_TRUE(Holds(*e, 100, 200, 2));
    EXPECT_TRUE(Holds(*e, 200, kPages, 1));
    // A commit while the restore may still run goes into the install too.
    Write(*e, 300, 320, 3);
    auto c = e->Commit();
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    ASSERT_TRUE(WaitRestored(*e)) << "the local store never took the replicas' image";
    Write(*e, 500, 510, 4);
    ASSERT_TRUE(e->Commit().ok());
    EXPECT_EQ(e->store().image().epoch, e->durable_epoch()) << "the local store takes part after the restore";
  }
  // The local store alone now holds the whole heap.
  EngineOptions local = Options(b, /*with_peers=*/false);
  local.replication_change = true;
  auto e = Open("rep-empty", local);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->durable_epoch(), 4u);
  EXPECT_TRUE(Holds(*e, 0, 100, 1));
  EXPECT_TRUE(Holds(*e, 100, 200, 2));
  EXPECT_TRUE(Holds(*e, 200, 300, 1));
  EXPECT_TRUE(Holds(*e, 300, 320, 3));
  EXPECT_TRUE(Holds(*e, 320, 500, 1));
  EXPECT_TRUE(Holds(*e, 500, 510, 4));
  EXPECT_TRUE(Holds(*e, 510, kPages, 1));
}

// With peers a heap exists where its replicas hold an epoch of it, even if
// this directory is empty: create=only refuses it, create=0 restores it.
// Neither leaves a directory behind when it refuses.
// Under a memory budget far below the heap: pages given back come back
// from the local store while it has them, and, on a new machine with an
// empty directory, from the replicas, with their newest bytes each time.
TEST_F(EngineReplicated, UnderABudgetEvictedPagesComeBackFromTheReplicas) {
  PHEAP_SKIP_UNDER_TSAN(
      "it defers the safepoint signal of a thread that waits in a page fault for room, so an eviction pause never "
      "holds it");
  constexpr Pgno kHeap = 2048;  // 8 MiB against a 1 MiB budget
  const std::string a = tmp_.path() + "/a", b = tmp_.path() + "/b";
  auto budget = [&](const std::string& dir) {
    EngineOptions o = Options(dir);
    o.pager.memory_max = uint64_t{1} << 20;
    return o;
  };
  std::vector<uint8_t> round(kHeap, 1);  // what each page was last written with
  auto write = [&](Engine& e, Pgno first, Pgno end, uint8_t r) {
    Write(e, first, end, r);
    std::fill(round.begin() + static_cast<std::ptrdiff_t>(first), round.begin() + static_cast<std::ptrdiff_t>(end), r);
  };
  auto holds_at_random = [&](Engine& e) {
    std::mt19937_64 rng(kHeap);
    for (int i = 0; i < 2000; ++i) {
      const Pgno p = rng() % kHeap;
      if (auto r = Holds(e, p, p + 1, round[p]); !r) return r;
    }
    return ::testing::AssertionSuccess();
  };
  Epoch durable = 0;  // early commits for the budget add epochs of their own
  {
    auto e = Open("rep-budget", budget(a));
    ASSERT_TRUE(e);
    write(*e, 0, kHeap, 1);
    ASSERT_TRUE(e->Commit().ok());
    write(*e, 512, 1024, 2);
    ASSERT_TRUE(e->Commit().ok());
    EXPECT_TRUE(Holds(*e, 0, 512, 1));
    EXPECT_TRUE(Holds(*e, 512, 1024, 2));
    EXPECT_TRUE(Holds(*e, 1024, kHeap, 1));
    EXPECT_TRUE(holds_at_random(*e));
    const PagerStats s = e->pager().stats();
    EXPECT_GT(s.evictions, kHeap / 2);
    EXPECT_GT(s.refetches, kHeap / 4);
    durable = e->durable_epoch();
  }
  // The machine is gone: the image comes from the replicas, under the same
  // budget, while the local store is restored beside it.
  auto e = Open("rep-budget", budget(b));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->durable_epoch(), durable);
  EXPECT_TRUE(Holds(*e, 0, 512, 1));
  EXPECT_TRUE(Holds(*e, 512, 1024, 2));
  EXPECT_TRUE(Holds(*e, 1024, kHeap, 1));
  write(*e, 1536, 2048, 3);
  ASSERT_TRUE(e->Commit().ok());
  EXPECT_TRUE(holds_at_random(*e));
  EXPECT_TRUE(Holds(*e, 1536, 2048, 3));
  EXPECT_TRUE(Holds(*e, 512, 1024, 2));
  EXPECT_GT(e->pager().stats().evictions, kHeap / 2);
  ASSERT_TRUE(WaitRestored(*e));
  EXPECT_TRUE(Holds(*e, 0, 512, 1));
}

TEST_F(EngineReplicated, CreateCountsAHeapOnTheReplicasAsExisting) {
  const std::string a = tmp_.path() + "/a", b = tmp_.path() + "/b";
  EngineOptions never = Options(a);
  never.create = EngineOptions::Create::kNever;
  auto missing = Engine::Open("rep-create", never);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().err(), ENOENT) << missing.status().ToString();
  EXPECT_FALSE(std::filesystem::exists(a + "/rep-create"));
  {
    EngineOptions only = Options(a);
    only.create = EngineOptions::Create::kOnly;
    auto e = Open("rep-create", only);
    ASSERT_TRUE(e);
    Write(*e, 0, 10, 1);
    ASSERT_TRUE(e->Commit().ok());
  }
  EngineOptions only = Options(b);
  only.create = EngineOptions::Create::kOnly;
  auto exists = Engine::Open("rep-create", only);
  ASSERT_FALSE(exists.ok());
  EXPECT_EQ(exists.status().err(), EEXIST) << exists.status().ToString();
  EXPECT_FALSE(std::filesystem::exists(b + "/rep-create"));
  never = Options(b);
  never.create = EngineOptions::Create::kNever;
  auto e = Open("rep-create", never);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->durable_epoch(), 1u);
  EXPECT_TRUE(Holds(*e, 0, 10, 1));
}

// Peers holding only 64 pages of an epoch in memory take 600-page epochs
// through their inbox files, and the heap comes back whole from them.
TEST_F(EngineReplicated, EpochLargerThanThePeersInboxMemory) {
  for (int i = 0; i < 3; ++i) {
    peers_[i].Signal(SIGTERM);
    peers_[i].Start({"--listen", endpoints_[i], "--dir", tmp_.path() + "/peer" + std::to_string(i), "--inbox-memory",
                     std::to_string(64 * kPageSize)});
  }
  const std::string a = tmp_.path() + "/a", b = tmp_.path() + "/b";
  {
    auto e = Open("rep-big", Options(a));
    ASSERT_TRUE(e);
    for (uint8_t round = 1; round <= 2; ++round) {
      Write(*e, 0, kPages, round);
      auto c = e->Commit();
      ASSERT_TRUE(c.ok()) << c.status().ToString();
    }
  }
  auto e = Open("rep-big", Options(b));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->durable_epoch(), 2u);
  EXPECT_TRUE(Holds(*e, 0, kPages, 2));
}

TEST_F(EngineReplicated, StaleLocalStoreIsSetAside) {
  const std::string a = tmp_.path() + "/a", b = tmp_.path() + "/b";
  {
    auto e = Open("rep-stale", Options(a));
    ASSERT_TRUE(e);
    Write(*e, 0, 50, 1);
    ASSERT_TRUE(e->Commit().ok());
  }
  {
    auto e = Open("rep-stale", Options(b));
    ASSERT_TRUE(e);
    Write(*e, 10, 20, 2);
    ASSERT_TRUE(e->Commit().ok());
    EXPECT_EQ(e->durable_epoch(), 2u);
  }
  auto e = Open("rep-stale", Options(a));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->durable_epoch(), 2u);
  EXPECT_TRUE(std::filesystem::exists(a + "/rep-stale.stale-epoch-1-term-1")) << "the old store is kept, not deleted";
  EXPECT_TRUE(Holds(*e, 0, 10, 1));
  EXPECT_TRUE(Holds(*e, 10, 20, 2));
  EXPECT_TRUE(Holds(*e, 20, 50, 1));
  EXPECT_TRUE(WaitRestored(*e));
}

// The two cases below commit while the replicas are being installed. Under
// ThreadSanitizer a signal to a thread blocked in pthread_mutex_lock waits
// until the lock is taken, so the commit safepoint can wait forever for an
// install thread (the same limit as tests/cluster); they run in the release
// and ASan builds.
#define PHEAP_SKIP_IF_TSAN() PHEAP_SKIP_UNDER_TSAN("it holds back the safepoint signal to install threads")

// Commits until one is durable (the replicas are being installed first);
// false if none is within about 10 s.
static bool CommitUntilDurable(Engine& e) {
  for (int i = 0; i < 100; ++i) {
    if (e.Commit().ok()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

// The writer died between its local fdatasync and the replicas'
// acknowledgements: its local store holds an epoch no replica has. The
// reopened writer keeps that image, installs it on the replicas and commits
// again; nothing it had is lost, and a new machine recovers all of it.
TEST_F(EngineReplicated, LocalStoreAheadOfTheReplicasIsInstalledOnThem) {
  PHEAP_SKIP_IF_TSAN();
  const std::string a = tmp_.path() + "/a", b = tmp_.path() + "/b";
  EngineOptions o = Options(a);
  o.replica_timeout_ms = 1000;
  {
    auto e = Open("rep-ahead", o);
    ASSERT_TRUE(e);
    Write(*e, 0, 50, 1);
    ASSERT_TRUE(e->Commit().ok());
    for (auto& p : peers_) p.Signal(SIGKILL);
    Write(*e, 10, 20, 2);
    EXPECT_FALSE(e->Commit().ok()) << "a commit with no replica reachable";
    EXPECT_EQ(e->store().image().epoch, 2u) << "the local store took epoch 2";
  }
  for (int i = 0; i < 3; ++i)
    peers_[i].Start({"--listen", endpoints_[i], "--dir", tmp_.path() + "/peer" + std::to_string(i)});
  Epoch last = 0;
  {
    auto e = Open("rep-ahead", o);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->durable_epoch(), 2u);
    EXPECT_TRUE(Holds(*e, 10, 20, 2));
    Write(*e, 30, 40, 3);
    ASSERT_TRUE(CommitUntilDurable(*e)) << "the replicas never took the local image";
    last = e->durable_epoch();
  }
  auto e = Open("rep-ahead", Options(b));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->durable_epoch(), last);
  EXPECT_TRUE(Holds(*e, 0, 10, 1));
  EXPECT_TRUE(Holds(*e, 10, 20, 2));
  EXPECT_TRUE(Holds(*e, 20, 30, 1));
  EXPECT_TRUE(Holds(*e, 30, 40, 3));
  EXPECT_TRUE(Holds(*e, 40, 50, 1));
}

// Failback: writer A's last commit reached only its own disk (the peers
// were down) and failed; A died. Writer B recovered elsewhere from the
// replicas and committed the same epoch number in its own term. When A's
// machine comes back, its local epoch is not in the heap's lineage: A opens
// with B's acknowledged epoch, sets its own aside, and its next commit
// extends B's; a new machine recovers B's epoch and A's new one.
TEST_F(EngineReplicated, FailbackDoesNotResurrectAnUnacknowledgedEpoch) {
  PHEAP_SKIP_IF_TSAN();
  const std::string a = tmp_.path() + "/a", b = tmp_.path() + "/b", c = tmp_.path() + "/c";
  EngineOptions o = Options(a);
  o.replica_timeout_ms = 1000;
  {
    auto e = Open("rep-failback", o);
    ASSERT_TRUE(e);
    Write(*e, 0, 50, 1);
    ASSERT_TRUE(e->Commit().ok());
    for (auto& p : peers_) p.Signal(SIGKILL);
    Write(*e, 10, 20, 2);
    EXPECT_FALSE(e->Commit().ok()) << "a commit with every replica down";
    EXPECT_EQ(e->store().image().epoch, 2u) << "the local store took epoch 2";
  }
  for (int i = 0; i < 3; ++i)
    peers_[i].Start({"--listen", endpoints_[i], "--dir", tmp_.path() + "/peer" + std::to_string(i)});
  {
    EngineOptions ob = Options(b);
    ob.replica_timeout_ms = 1000;
    auto e = Open("rep-failback", ob);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->durable_epoch(), 1u);
    EXPECT_TRUE(Holds(*e, 10, 20, 1));
    Write(*e, 10, 20, 3);
    ASSERT_TRUE(CommitUntilDurable(*e));
    EXPECT_EQ(e->durable_epoch(), 2u) << "B's epoch has A's unacknowledged epoch's number";
  }
  {
    auto e = Open("rep-failback", o);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->durable_epoch(), 2u);
    EXPECT_TRUE(Holds(*e, 10, 20, 3)) << "A's reopened heap must hold B's acknowledged epoch, not its own";
    bool aside = false;
    for (const auto& f : std::filesystem::directory_iterator(a))
      aside |= f.path().filename().string().starts_with("rep-failback.stale-epoch-2-term-");
    EXPECT_TRUE(aside) << "A's own epoch 2 is set aside, not deleted";
    Write(*e, 30, 40, 4);
    ASSERT_TRUE(CommitUntilDurable(*e));
  }
  auto e = Open("rep-failback", Options(c));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->durable_epoch(), 3u);
  EXPECT_TRUE(Holds(*e, 0, 10, 1));
  EXPECT_TRUE(Holds(*e, 10, 20, 3));
  EXPECT_TRUE(Holds(*e, 20, 30, 1));
  EXPECT_TRUE(Holds(*e, 30, 40, 4));
}

// The local store lost its newest log file (the store reports the rollback
// at open): the replicas hold every acknowledged epoch, so the damaged
// store is set aside and the heap comes back from them.
TEST_F(EngineReplicated, LocalStoreThatLostEpochsIsRestoredFromTheReplicas) {
  PHEAP_SKIP_IF_TSAN();
  const std::string a = tmp_.path() + "/a";
  {
    auto e = Open("rep-lost", Options(a));
    ASSERT_TRUE(e);
    Write(*e, 0, 50, 1);
    ASSERT_TRUE(e->Commit().ok());
    Write(*e, 10, 20, 2);
    ASSERT_TRUE(e->Commit().ok());
  }
  for (const auto& f : std::filesystem::directory_iterator(a + "/rep-lost"))
    if (f.path().extension() == ".pheap") std::filesystem::remove(f.path());
  auto e = Open("rep-lost", Options(a));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->durable_epoch(), 2u);
  EXPECT_TRUE(Holds(*e, 0, 10, 1));
  EXPECT_TRUE(Holds(*e, 10, 20, 2));
  EXPECT_TRUE(std::filesystem::exists(a + "/rep-lost.damaged")) << "the damaged store is kept, not deleted";
  Write(*e, 30, 40, 3);
  ASSERT_TRUE(CommitUntilDurable(*e));
}

// A replicated heap grows: the replicas take the larger region's epochs,
// and a new machine recovers the heap at its grown size.
TEST_F(EngineReplicated, GrowsWithItsReplicas) {
  PHEAP_SKIP_IF_TSAN();
  const std::string a = tmp_.path() + "/a", b = tmp_.path() + "/b";
  {
    auto e = Open("rep-grow", Options(a));
    ASSERT_TRUE(e);
    Write(*e, 0, 50, 1);
    ASSERT_TRUE(e->Commit().ok());
  }
  constexpr Pgno kFar = (uint64_t{100} << 20) / kPageSize;  // past the first 64 MiB
  {
    EngineOptions o = Options(a);
    o.size = uint64_t{128} << 20;
    auto e = Open("rep-grow", o);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->size(), o.size);
    Write(*e, kFar, kFar + 10, 2);
    auto c = e->Commit();
    ASSERT_TRUE(c.ok()) << c.status().ToString();
  }
  EngineOptions o = Options(b);
  o.size = 0;  // the recorded size
  auto e = Open("rep-grow", o);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->size(), uint64_t{128} << 20);
  EXPECT_TRUE(Holds(*e, 0, 50, 1));
  EXPECT_TRUE(Holds(*e, kFar, kFar + 10, 2));
}

// A heap that lived on its local store alone is given peers: they are
// installed from the local store, and then hold the heap.
TEST_F(EngineReplicated, PeersAddedToALocalHeapTakeItsImage) {
  PHEAP_SKIP_IF_TSAN();
  const std::string a = tmp_.path() + "/a", b = tmp_.path() + "/b";
  {
    auto e = Open("rep-added", Options(a, /*with_peers=*/false));
    ASSERT_TRUE(e);
    Write(*e, 0, kPages, 1);
    ASSERT_TRUE(e->Commit().ok());
  }
  {
    auto e = Open("rep-added", Options(a));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->durable_epoch(), 1u);
    Write(*e, 5, 15, 2);
    ASSERT_TRUE(CommitUntilDurable(*e)) << "the peers never took the local image";
  }
  auto e = Open("rep-added", Options(b));
  ASSERT_TRUE(e);
  EXPECT_TRUE(Holds(*e, 0, 5, 1));
  EXPECT_TRUE(Holds(*e, 5, 15, 2));
  EXPECT_TRUE(Holds(*e, 15, kPages, 1));
}

// A heap that lived on its local store alone (its epochs of term 0, no
// term having been claimed) is opened with peers by a program that only
// reads it. The install of the local image must close without a commit to
// carry it: each replica ends up holding the image under the term of the
// writer that installed it, never under term 0, which no wire message may
// name as an image's term.
TEST_F(EngineReplicated, LocalHeapOpenedWithPeersAndOnlyReadIsInstalled) {
  PHEAP_SKIP_IF_TSAN();
  const std::string a = tmp_.path() + "/a", b = tmp_.path() + "/b";
  {
    auto e = Open("rep-read", Options(a, /*with_peers=*/false));
    ASSERT_TRUE(e);
    Write(*e, 0, 50, 1);
    ASSERT_TRUE(e->Commit().ok());
    Write(*e, 10, 20, 2);
    ASSERT_TRUE(e->Commit().ok());
    ASSERT_EQ(e->store().image().term, 0u) << "a heap without peers claims no term";
  }
  {
    auto e = Open("rep-read", Options(a));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->durable_epoch(), 2u);
    EXPECT_TRUE(Holds(*e, 0, 10, 1));
    EXPECT_TRUE(Holds(*e, 10, 20, 2));
    for (const auto& ep : endpoints_) {
      wire::ManifestBody m{};
      const auto until = std::chrono::steady_clock::now() + 10s;
      while ((!Manifest(ep, &m) || m.epoch != 2) && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(50ms);
      EXPECT_EQ(m.epoch, 2u) << ep << " never took the local image";
      EXPECT_NE(m.image_term, 0u) << ep << " holds an image of term 0";
    }
  }
  auto e = Open("rep-read", Options(b));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->durable_epoch(), 2u);
  EXPECT_TRUE(Holds(*e, 0, 10, 1));
  EXPECT_TRUE(Holds(*e, 10, 20, 2));
  EXPECT_TRUE(Holds(*e, 20, 50, 1));
}

// A replicated heap reopened on its own, current local store maps runs of
// stored pages from it as a local heap does (the replicas' copies are
// fetched only when the local store lags).
TEST_F(EngineReplicated, ReopenedOnItsLocalStoreMapsStoredRuns) {
  PHEAP_SKIP_IF_TSAN();
  const std::string a = tmp_.path() + "/a", b = tmp_.path() + "/b";
  {
    auto e = Open("rep-mapped", Options(a));
    ASSERT_TRUE(e);
    Write(*e, 0, kPages, 1);
    ASSERT_TRUE(CommitUntilDurable(*e));
  }
  {
    auto e = Open("rep-mapped", Options(a));
    ASSERT_TRUE(e);
    ASSERT_TRUE(e->replicated()->local_in_use());
    EXPECT_TRUE(Holds(*e, 0, kPages, 1));
    const PagerStats st = e->pager().stats();
    if (Pager::Probe().wp_async && st.mode == TrackingMode::kAsyncWp) {
      EXPECT_GE(st.pages_mapped, kPages / 2) << "fetched " << st.pages_fetched;
    }
    Write(*e, 100, 110, 3);
    ASSERT_TRUE(CommitUntilDurable(*e));
  }
  auto e = Open("rep-mapped", Options(b));  // from the replicas alone
  ASSERT_TRUE(e);
  EXPECT_TRUE(Holds(*e, 0, 100, 1));
  EXPECT_TRUE(Holds(*e, 100, 110, 3));
  EXPECT_TRUE(Holds(*e, 110, kPages, 1));
}

TEST_F(EngineReplicated, NonLoopbackPeerWithoutKeysIsRefused) {
  EngineOptions o = Options(tmp_.path() + "/c");
  auto r = ResolveReplication({"tcp://192.0.2.1:7400"}, 1, 1);
  ASSERT_TRUE(r.ok());
  o.replication = *r;
  auto e = Engine::Open("rep-keys", o);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("keys=DIR"), std::string::npos) << e.status().ToString();
}

TEST_F(EngineReplicated, ConfigKeysReachTheOptions) {
  auto cfg = Config::Parse("peers=ipc:///x,ipc:///y,ipc:///z;quorum=3;replica_timeout_ms=700", Engine::ConfigKeys());
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  auto o = Engine::OptionsFromConfig(*cfg);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->replication.peers.size(), 3u);
  EXPECT_EQ(o->replication.replicas, 3u);
  EXPECT_EQ(o->replication.quorum, 3u);
  EXPECT_EQ(o->replica_timeout_ms, 700u);
  EXPECT_EQ(o->replica_open_timeout_ms, 0u) << "none given: the open takes replica_timeout_ms";
  cfg = Config::Parse("peers=ipc:///x;replica_open_timeout_ms=250", Engine::ConfigKeys());
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  o = Engine::OptionsFromConfig(*cfg);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->replica_open_timeout_ms, 250u);
  cfg = Config::Parse("peers=ipc:///x;replica_open_timeout_ms=0", Engine::ConfigKeys());
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  o = Engine::OptionsFromConfig(*cfg);
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("replica_open_timeout_ms"), std::string::npos) << o.status().ToString();
  auto bad = Config::Parse("quorum=2", Engine::ConfigKeys());
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(Engine::OptionsFromConfig(*bad).ok()) << "a quorum without peers is an error";
}

}  // namespace
}  // namespace pheap::testing

namespace pheap::testing {
namespace {

// A heap records its replication: an open that names no peers is still
// replicated on the recorded ones, and the replicas take its next commit.
TEST_F(EngineReplicated, AnOpenWithoutPeersUsesTheRecordedOnes) {
  PHEAP_SKIP_IF_TSAN();
  const std::string a = tmp_.path() + "/a", b = tmp_.path() + "/b";
  {
    auto e = Open("rep-recorded", Options(a));
    ASSERT_TRUE(e);
    Write(*e, 0, 50, 1);
    ASSERT_TRUE(e->Commit().ok());
  }
  {
    auto e = Open("rep-recorded", Options(a, /*with_peers=*/false));
    ASSERT_TRUE(e);
    ASSERT_NE(e->replicas(), nullptr) << "reopened without peers, the heap went local";
    Write(*e, 10, 20, 2);
    auto c = e->Commit();
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_EQ(*c, 2u);
  }
  for (const auto& ep : endpoints_) {
    wire::ManifestBody m{};
    EXPECT_TRUE(Manifest(ep, &m, "rep-recorded"));
    EXPECT_EQ(m.epoch, 2u) << ep;
  }
  auto e = Open("rep-recorded", Options(b));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->durable_epoch(), 2u);
  EXPECT_TRUE(Holds(*e, 0, 10, 1));
  EXPECT_TRUE(Holds(*e, 10, 20, 2));
}

// Other peers than the recorded ones are refused, naming both sets, unless
// replication=change accepts them; a new replica then takes the heap's
// image before it counts towards a commit.
TEST_F(EngineReplicated, AnotherReplicaSetNeedsReplicationChange) {
  PHEAP_SKIP_IF_TSAN();
  const std::string a = tmp_.path() + "/a", b = tmp_.path() + "/b";
  const std::string ep3 = "ipc://" + tmp_.path() + "/peer3.sock";
  PeerProcess fourth;
  fourth.Start({"--listen", ep3, "--dir", tmp_.path() + "/peer3"});
  {
    auto e = Open("rep-moved", Options(a));
    ASSERT_TRUE(e);
    Write(*e, 0, 50, 1);
    ASSERT_TRUE(e->Commit().ok());
  }
  EngineOptions moved = Options(a);
  auto set = ResolveReplication({endpoints_[1], endpoints_[2], ep3}, 3, 3);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  moved.replication = *set;
  auto refused = Engine::Open("rep-moved", moved);
  ASSERT_FALSE(refused.ok());
  const std::string why = refused.status().message();
  EXPECT_NE(why.find(endpoints_[0]), std::string::npos) << why;  // recorded
  EXPECT_NE(why.find(ep3), std::string::npos) << why;            // configured
  EXPECT_NE(why.find("replication=change"), std::string::npos) << why;

  moved.replication_change = true;
  {
    auto e = Open("rep-moved", moved);
    ASSERT_TRUE(e);
    Write(*e, 10, 20, 2);
    ASSERT_TRUE(CommitUntilDurable(*e)) << "the new replica never took the image";
  }
  // The new set is the recorded one now.
  {
    auto e = Open("rep-moved", Options(a, /*with_peers=*/false));
    ASSERT_TRUE(e);
    ASSERT_NE(e->replicas(), nullptr);
  }
  // The new replica alone gives the whole heap back.
  EngineOptions alone = Options(b);
  auto one = ResolveReplication({ep3}, 1, 1);
  ASSERT_TRUE(one.ok());
  alone.replication = *one;
  auto e = Open("rep-moved", alone);
  ASSERT_TRUE(e);
  EXPECT_TRUE(Holds(*e, 0, 10, 1));
  EXPECT_TRUE(Holds(*e, 10, 20, 2));
  EXPECT_TRUE(Holds(*e, 20, 50, 1));
}

// The live statistics of a replicated heap (heap/live_stats.h) name each
// replica with its durable epoch, and count the pages faulted in from the
// replicas apart from those of the local store.
TEST_F(EngineReplicated, LiveStatisticsShowTheReplicasAndPagesReadFromThem) {
  const std::string a = tmp_.path() + "/a", b = tmp_.path() + "/b";
  // The snapshot of the heap in `store` once it shows `commits` commits.
  auto live = [](const std::string& store, uint64_t commits) -> Result<LiveStats> {
    auto f = LiveStatsFile::Open(store + "/" + kLiveFileName);
    if (!f.ok()) return f.status();
    Result<LiveStats> s = (*f)->Read();
    for (int i = 0; i < 200 && (!s.ok() || s->commits < commits); ++i) {
      std::this_thread::sleep_for(25ms);
      s = (*f)->Read();
    }
    return s;
  };
  {
    auto e = Open("rep-live", Options(a));
    ASSERT_TRUE(e);
    Write(*e, 0, kPages, 1);
    ASSERT_TRUE(e->Commit().ok());
    ASSERT_TRUE(e->Commit().ok());
    auto s = live(a + "/rep-live", 2);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_EQ(s->durable_epoch, 2u);
    ASSERT_EQ(s->replica_count, 3u);
    int current = 0;
    for (uint64_t i = 0; i < s->replica_count; ++i) {
      const LiveReplica& r = s->replica[i];
      EXPECT_NE(std::find(endpoints_.begin(), endpoints_.end(), std::string(r.endpoint)), endpoints_.end())
          << r.endpoint;
      EXPECT_NE(r.flags & kLiveAnswered, 0u) << r.endpoint;
      EXPECT_LE(r.durable_epoch, s->durable_epoch);
      current += r.durable_epoch == s->durable_epoch;
    }
    EXPECT_GE(current, 2) << "a write quorum holds the last epoch";
    EXPECT_EQ(s->pages_from_replicas, 0u);
  }
  // A new directory, not restored: every page comes from the replicas.
  EngineOptions o = Options(b);
  o.restore = false;
  auto e = Open("rep-live", o);
  ASSERT_TRUE(e);
  EXPECT_TRUE(Holds(*e, 0, kPages, 1));
  ASSERT_TRUE(e->Commit().ok());
  auto s = live(b + "/rep-live", 1);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_GE(s->pages_from_replicas, kPages);
  EXPECT_GT(s->faults, 0u);
}

}  // namespace
}  // namespace pheap::testing
