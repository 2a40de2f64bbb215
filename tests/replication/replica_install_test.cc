// Installing the whole image on a replica the writer cannot catch up epoch
// by epoch, against three real peer processes: a peer restarted empty, a
// peer restarted from a stale disk (its store set aside, not deleted), and
// a peer killed in the middle of an install (left empty, not torn; the
// install begins again). Each installed replica then serves the image alone.
#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>

#include "replica_test_util.h"
#include "store/page_store.h"
#include "replication/replica_client.h"

namespace pheap {
namespace {

using namespace std::chrono_literals;
using testing::kBase;
using testing::kSize;
using testing::MakeEpoch;
using testing::Oracle;
using testing::Range;

class ReplicaInstallTest : public testing::ReplicaFixture {
 protected:
  // The writer's local store, for a test to make the image source.
  std::unique_ptr<PageStore> OpenLocalStore() {
    PageStoreOptions lo;
    lo.base = kBase;
    lo.size = kSize;
    auto local = PageStore::Open(tmp_.path() + "/local", kHeap, lo);
    EXPECT_TRUE(local.ok()) << local.status().ToString();
    return local.ok() ? std::move(local.value()) : nullptr;
  }
  // Epoch e into the local store, then to the replicas, as a writer does.
  void PersistBoth(PageStore& store, ReplicaClient& c, const testing::TestEpoch& e) {
    ASSERT_TRUE(store.Persist(e.sealed).ok());
    Status s = c.Persist(e.sealed);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  // Closes the writer and stops every peer but x: x alone must serve
  // `epoch` with the oracle's pages.
  void ExpectServesAlone(std::unique_ptr<ReplicaClient>& c, int x, Epoch epoch, Pgno hwm, const Oracle& oracle) {
    c->SetImageSource(nullptr);
    c.reset();
    for (int i = 0; i < kPeers; ++i)
      if (i != x) peers_[i]->Signal(SIGTERM);
    auto alone = ReaderOn(endpoints_[x]);
    ASSERT_TRUE(alone);
    EXPECT_EQ(alone->image().epoch, epoch);
    VerifyImage(*alone, hwm, oracle);
  }
};

// An image source whose reads can be held at a gate.
class GatedSource final : public PageSource {
 public:
  explicit GatedSource(PageSource* inner) : inner_(inner) {}

  Status ReadRun(Pgno first, uint32_t count, uint8_t* out, uint64_t* present) override {
    {
      std::unique_lock l(mu_);
      if (block_after_ >= 0 && reads_ >= block_after_) {
        blocked_ = true;
        cv_.notify_all();
        cv_.wait(l, [&] { return block_after_ < 0; });
        blocked_ = false;
      }
      ++reads_;
    }
    return inner_->ReadRun(first, count, out, present);
  }
  // Reads after the first `n` wait until Release.
  void BlockAfter(int n) {
    std::lock_guard l(mu_);
    reads_ = 0;
    block_after_ = n;
  }
  void Release() {
    std::lock_guard l(mu_);
    block_after_ = -1;
    cv_.notify_all();
  }
  bool AwaitBlocked(std::chrono::milliseconds limit) {
    std::unique_lock l(mu_);
    return cv_.wait_for(l, limit, [&] { return blocked_; });
  }

 private:
  PageSource* inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  int reads_ = 0;
  int block_after_ = -1;
  bool blocked_ = false;
};

TEST_F(ReplicaInstallTest, PeerRestartedEmptyIsInstalledAndServesAlone) {
  auto c = Open(Options());
  ASSERT_TRUE(c);
  Oracle oracle;
  ShipFirstEpochs(*c, &oracle);  // every replica acknowledged: nothing retained
  const int x = IndexOf(c->replicas()[1]);
  peers_[x]->Signal(SIGKILL);
  std::filesystem::remove_all(dirs_[x]);
  StartPeer(x);
  auto e4 = MakeEpoch(4, Range(300, 340), 1501, {{1400, 50}}, &oracle);
  Status s = c->Persist(e4.sealed);
  ASSERT_TRUE(s.ok()) << s.ToString();
  const Epoch at = PersistUntilInstalled(*c, x, 5, 1501, &oracle);
  ASSERT_NE(at, 0u);
  // It takes the next epoch like any replica.
  const Epoch last = at + 1;
  auto next = MakeEpoch(last, {2, 1450}, 1501, {}, &oracle);
  s = c->Persist(next.sealed);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(AwaitDurable(endpoints_[x], last));
  c.reset();
  for (int i = 0; i < kPeers; ++i)
    if (i != x) peers_[i]->Signal(SIGTERM);
  auto alone = ReaderOn(endpoints_[x]);
  ASSERT_TRUE(alone);
  EXPECT_EQ(alone->image().epoch, last);
  EXPECT_EQ(alone->image().hwm, 1501u);
  EXPECT_EQ(alone->image().base, kBase);
  EXPECT_EQ(alone->image().size, kSize);
  VerifyImage(*alone, 1501, oracle);
}

TEST_F(ReplicaInstallTest, PeerWithAStaleDiskIsInstalledOverItsStore) {
  auto o = Options();
  o.retain_max = 0;  // the epochs it misses are not kept
  auto c = Open(o);
  ASSERT_TRUE(c);
  Oracle oracle;
  ShipFirstEpochs(*c, &oracle);
  const int x = IndexOf(c->replicas()[2]);
  peers_[x]->Signal(SIGKILL);
  auto e4 = MakeEpoch(4, Range(0, 50), 1501, {}, &oracle);
  ASSERT_TRUE(c->Persist(e4.sealed).ok());
  auto e5 = MakeEpoch(5, {700, 701}, 1501, {{1, 4}}, &oracle);
  ASSERT_TRUE(c->Persist(e5.sealed).ok());
  StartPeer(x);  // with its disk at epoch 3
  const Epoch at = PersistUntilInstalled(*c, x, 6, 1501, &oracle);
  ASSERT_NE(at, 0u);
  // The installed image replaced the old store's files; nothing is set aside.
  for (const auto& f : std::filesystem::directory_iterator(dirs_[x]))
    EXPECT_EQ(f.path().filename().string().find("stale-epoch"), std::string::npos) << f.path();
  ExpectServesAlone(c, x, at, 1501, oracle);
}

TEST_F(ReplicaInstallTest, PeerKilledMidInstallIsLeftEmptyAndTheInstallBeginsAgain) {
  auto local = OpenLocalStore();
  ASSERT_TRUE(local);
  GatedSource gate(local.get());
  auto c = Open(Options());
  ASSERT_TRUE(c);
  PageStore* store = local.get();
  c->SetImageSource(&gate, [store] { return store->image(); });
  Oracle oracle;
  auto persist = [&](const testing::TestEpoch& e) { PersistBoth(*store, *c, e); };
  auto e1 = MakeEpoch(1, Range(0, 1200), 1200, {}, &oracle);  // five image runs
  persist(e1);
  auto e2 = MakeEpoch(2, Range(500, 520), 1200, {{900, 10}}, &oracle);
  persist(e2);

  const int x = IndexOf(c->replicas()[1]);
  peers_[x]->Signal(SIGKILL);
  std::filesystem::remove_all(dirs_[x]);
  StartPeer(x);
  gate.BlockAfter(2);
  // The first epoch shipped once the restarted replica is connected meets
  // it empty: its install starts.
  Epoch e = 2;
  std::vector<testing::TestEpoch> shipped;
  do {
    ++e;
    shipped.push_back(MakeEpoch(e, {e}, 1200, {}, &oracle));
    persist(shipped.back());
  } while (!gate.AwaitBlocked(3s) && e < 8);
  ASSERT_TRUE(gate.AwaitBlocked(0s));
  // Two runs are in its install file, unclosed, when it dies.
  peers_[x]->Signal(SIGKILL);
  {
    PageStoreOptions ro;
    ro.read_only = true;
    ro.create_if_missing = false;
    auto left = PageStore::Open(dirs_[x], kHeap, ro);
    ASSERT_TRUE(left.ok()) << left.status().ToString();
    EXPECT_EQ((*left)->image().epoch, 0u);
    std::vector<uint8_t> page(kPageSize);
    uint64_t present = ~uint64_t{0};
    ASSERT_TRUE((*left)->ReadRun(0, 1, page.data(), &present).ok());
    EXPECT_EQ(present, 0u) << "a page of the unfinished install is visible";
  }
  StartPeer(x);
  gate.Release();
  auto last = MakeEpoch(e + 1, {8, 1100}, 1200, {}, &oracle);
  persist(last);
  ASSERT_TRUE(AwaitInstalled(*c, x, e + 1));
  ExpectServesAlone(c, x, e + 1, 1200, oracle);
}

// The writer's local store is the image source, and it lags the replicas:
// Persist ships an epoch while the local fdatasync still runs, so an epoch
// can be durable before the local store holds it. A run read from the
// local store then holds the epoch before; labelled with the durable epoch,
// it would win over that epoch's own part, sent just before, and the
// installed replica would keep the older pages.
TEST_F(ReplicaInstallTest, ARunReadFromALaggingLocalStoreDoesNotOverrideANewerEpoch) {
  auto local = OpenLocalStore();
  ASSERT_TRUE(local);
  GatedSource gate(local.get());
  auto c = Open(Options());
  ASSERT_TRUE(c);
  PageStore* store = local.get();
  c->SetImageSource(&gate, [store] { return store->image(); });
  Oracle oracle;
  auto persist = [&](const testing::TestEpoch& e) { PersistBoth(*store, *c, e); };
  auto e1 = MakeEpoch(1, Range(0, 1200), 1200, {}, &oracle);  // five image runs
  persist(e1);

  const int x = IndexOf(c->replicas()[1]);
  peers_[x]->Signal(SIGKILL);
  std::filesystem::remove_all(dirs_[x]);
  StartPeer(x);
  gate.BlockAfter(1);  // the install's second run waits
  Epoch e = 1;
  std::vector<testing::TestEpoch> shipped;
  do {
    ++e;
    shipped.push_back(MakeEpoch(e, {e}, 1200, {}, &oracle));
    persist(shipped.back());
  } while (!gate.AwaitBlocked(3s) && e < 8);
  ASSERT_TRUE(gate.AwaitBlocked(0s));
  // Durable on the replicas, not yet in the local store: it rewrites pages
  // of runs the install has not read.
  auto lagging = MakeEpoch(e + 1, Range(800, 820), 1200, {}, &oracle);
  Status s = c->Persist(lagging.sealed);
  ASSERT_TRUE(s.ok()) << s.ToString();
  gate.Release();
  ASSERT_TRUE(AwaitInstalled(*c, x, e + 1));
  ASSERT_TRUE(store->Persist(lagging.sealed).ok());
  ExpectServesAlone(c, x, e + 1, 1200, oracle);
}

// The same lag when the install begins: the replicas made two epochs
// durable that the local store (the image source) does not hold yet, as
// after its disk filled, and then a replica restarted empty. The install's
// floor is past the local store's epoch, so those epochs are sent as no
// part: a run read from the local store would keep their pages' older
// versions on the installed replica.
TEST_F(ReplicaInstallTest, AnInstallThatBeginsPastALaggingLocalStoreReadsTheReplicas) {
  auto local = OpenLocalStore();
  ASSERT_TRUE(local);
  auto c = Open(Options());
  ASSERT_TRUE(c);
  PageStore* store = local.get();
  c->SetImageSource(store, [store] { return store->image(); });
  Oracle oracle;
  auto e1 = MakeEpoch(1, Range(0, 1200), 1200, {}, &oracle);
  PersistBoth(*store, *c, e1);
  // Durable on the replicas only.
  auto e2 = MakeEpoch(2, Range(100, 140), 1200, {}, &oracle);
  Status s = c->Persist(e2.sealed);
  ASSERT_TRUE(s.ok()) << s.ToString();
  const int x = IndexOf(c->replicas()[1]);
  peers_[x]->Signal(SIGKILL);
  std::filesystem::remove_all(dirs_[x]);
  StartPeer(x);
  auto e3 = MakeEpoch(3, Range(900, 910), 1200, {}, &oracle);
  s = c->Persist(e3.sealed);
  ASSERT_TRUE(s.ok()) << s.ToString();
  const Epoch at = PersistUntilInstalled(*c, x, 4, 1200, &oracle);
  ASSERT_NE(at, 0u) << "replica " << x << " was never installed";
  ExpectServesAlone(c, x, at, 1200, oracle);
}

// A new writer finds one replica a step behind the other two and installs
// its image there while its own first epoch, which rewrites the pages of
// the epoch before, becomes durable on the other two. The installed
// replica must hold the new epoch's pages, not the older ones the install
// read before it: a later writer may read from that replica first. Rounds
// vary how soon the first epoch follows the open.
TEST_F(ReplicaInstallTest, ANewWritersFirstEpochDuringAnInstallReachesTheInstalledReplica) {
  Oracle oracle;
  Epoch e = 3;
  {
    auto a = Open(Options());
    ASSERT_TRUE(a);
    ShipFirstEpochs(*a, &oracle);
  }
  const std::vector<Pgno> stamps = {0, 1, 2, 3, 300, 301, 1400};  // rewritten by every epoch
  for (int round = 0; round < 8; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    int x;
    {
      auto a = Open(Options());
      ASSERT_TRUE(a);
      x = IndexOf(a->replicas()[round % 3]);
      peers_[x]->Signal(SIGKILL);
      auto behind = MakeEpoch(++e, stamps, 1501, {}, &oracle);  // on the other two only
      Status st = a->Persist(behind.sealed);
      ASSERT_TRUE(st.ok()) << st.ToString();
    }
    StartPeer(x);
    for (int i = 0; i < 200 && DurableAt(endpoints_[x]) < 0; ++i) std::this_thread::sleep_for(20ms);
    auto b = Open(Options());  // installs replica x, a step behind
    ASSERT_TRUE(b);
    std::this_thread::sleep_for(std::chrono::milliseconds(round * 3));
    auto first = MakeEpoch(++e, stamps, 1501, {}, &oracle);
    Status st = b->Persist(first.sealed);
    ASSERT_TRUE(st.ok()) << st.ToString();
    // Epochs on other pages until x is installed and caught up.
    e = PersistUntilInstalled(*b, x, e + 1, 1501, &oracle);
    ASSERT_NE(e, 0u) << "replica " << x << " was never installed";
    b.reset();
    auto alone = ReaderOn(endpoints_[x]);
    ASSERT_TRUE(alone);
    EXPECT_EQ(alone->image().epoch, e);
    VerifyImage(*alone, 1501, oracle);
    if (HasFatalFailure() || HasNonfatalFailure()) return;
  }
}

}  // namespace
}  // namespace pheap
