// The replica client against three real peer processes (test_peer):
// shipping to a quorum, a killed or stopped replica, no quorum, catching up
// a replica that missed epochs, term fencing between two writers, and
// recovery that reads back exactly the last durable epoch, failing over
// from a killed replica and from a damaged page; the open's quorum k - W + 1
// at its corners (W = k, W = 1, k = 1), and two claimants of one term.
#include "replication/replica_client.h"

#include <gtest/gtest.h>

#include <xxhash.h>

#include <atomic>
#include <thread>

#include "replica_test_util.h"

namespace pheap {
namespace {

using namespace std::chrono_literals;
using testing::DamageStoredPage;
using testing::kBase;
using testing::kSize;
using testing::MakeEpoch;
using testing::Oracle;
using testing::Range;

using ReplicaClientTest = testing::ReplicaFixture;

TEST_F(ReplicaClientTest, QuorumSurvivesOneLossFailsOnTwoAndCatchesUp) {
  auto c = Open(Options());
  ASSERT_TRUE(c);
  EXPECT_EQ(c->image().epoch, 0u);
  EXPECT_EQ(c->term(), 1u);
  ASSERT_EQ(c->replicas().size(), 3u);
  for (const ReplicaState& st : c->state()) EXPECT_TRUE(st.answered) << st.endpoint;
  Oracle oracle;
  ShipFirstEpochs(*c, &oracle);
  for (const auto& ep : endpoints_) EXPECT_EQ(DurableAt(ep), 3) << ep;

  const int first = IndexOf(c->replicas()[0]);
  const int second = IndexOf(c->replicas()[1]);
  const int third = IndexOf(c->replicas()[2]);
  peers_[first]->Signal(SIGKILL);
  auto e4 = MakeEpoch(4, {7, 8, 9, 1000}, 1501, {}, &oracle);
  Status s = c->Persist(e4.sealed);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(DurableAt(endpoints_[second]), 4);
  EXPECT_EQ(DurableAt(endpoints_[third]), 4);

  peers_[second]->Signal(SIGKILL);
  auto e5 = MakeEpoch(5, Range(10, 40), 1501, {}, &oracle);
  s = c->Persist(e5.sealed);
  ASSERT_EQ(s.code(), Status::Code::kTimeout) << s.ToString();
  EXPECT_NE(s.message().find("1 of 3 replicas"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("2 needed"), std::string::npos) << s.message();
  EXPECT_EQ(c->image().epoch, 4u);

  // The first replica comes back holding epoch 3: epoch 4 (kept because it
  // missed it) and then 5 reach it, and the retried commit makes a quorum.
  StartPeer(first);
  s = c->Persist(e5.sealed);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(c->image().epoch, 5u);
  EXPECT_EQ(DurableAt(endpoints_[first]), 5);
  EXPECT_EQ(DurableAt(endpoints_[third]), 5);
  EXPECT_EQ(c->state()[0].durable, 5u);
  EXPECT_EQ(c->state()[1].durable, 4u);

  // A reader elsewhere recovers exactly epoch 5 from the two live replicas.
  c.reset();
  auto reader = Open(Options(/*claim=*/false));
  ASSERT_TRUE(reader);
  EXPECT_EQ(reader->image().epoch, 5u);
  EXPECT_EQ(reader->image().hwm, 1501u);
  EXPECT_EQ(reader->image().base, kBase);
  EXPECT_EQ(reader->image().size, kSize);
  VerifyImage(*reader, 1501, oracle);
}

TEST_F(ReplicaClientTest, StoppedReplicaDoesNotHoldTheQuorum) {
  auto c = Open(Options());
  ASSERT_TRUE(c);
  Oracle oracle;
  const int stopped = IndexOf(c->replicas()[1]);
  kill(peers_[stopped]->pid(), SIGSTOP);
  auto e1 = MakeEpoch(1, Range(0, 300), 300, {}, &oracle);
  Status s = c->Persist(e1.sealed);
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto e2 = MakeEpoch(2, Range(100, 130), 300, {}, &oracle);
  s = c->Persist(e2.sealed);
  ASSERT_TRUE(s.ok()) << s.ToString();
  for (int i = 0; i < kPeers; ++i) {
    if (i != stopped) {
      EXPECT_EQ(DurableAt(endpoints_[i]), 2);
    }
  }
  kill(peers_[stopped]->pid(), SIGCONT);
  // Resumed, it is caught up from the kept copies of the epochs it missed.
  // Its first answer may come after a commit reached its quorum (then it is
  // not waited for), so it has a few commits to get there.
  Epoch e = 2;
  std::vector<testing::TestEpoch> more;
  while (DurableAt(endpoints_[stopped]) != static_cast<int64_t>(e) && e < 8) {
    ++e;
    more.push_back(MakeEpoch(e, {3, 100 + e}, 300, {}, &oracle));
    s = c->Persist(more.back().sealed);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  for (int i = 0; i < kPeers; ++i) EXPECT_EQ(DurableAt(endpoints_[i]), static_cast<int64_t>(e)) << endpoints_[i];
  VerifyImage(*c, 300, oracle);
}

TEST_F(ReplicaClientTest, NewerWriterSupersedesTheOld) {
  auto a = Open(Options());
  ASSERT_TRUE(a);
  Oracle oracle;
  auto e1 = MakeEpoch(1, {1, 2, 3}, 16, {}, &oracle);
  ASSERT_TRUE(a->Persist(e1.sealed).ok());
  auto b = Open(Options());
  ASSERT_TRUE(b);
  EXPECT_EQ(b->term(), 2u);
  EXPECT_EQ(b->image().epoch, 1u);
  auto e2 = MakeEpoch(2, {4}, 16, {}, &oracle);
  Status s = a->Persist(e2.sealed);
  ASSERT_EQ(s.code(), Status::Code::kSuperseded) << s.ToString();
  EXPECT_NE(s.message().find("term 2"), std::string::npos) << s.message();
  s = b->Persist(e2.sealed);
  ASSERT_TRUE(s.ok()) << s.ToString();
  // A reader cannot persist.
  auto r = Open(Options(/*claim=*/false));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->Persist(e2.sealed).code(), Status::Code::kInvalidArgument);
}

TEST_F(ReplicaClientTest, RecoveryReadsTheLastEpochAndFailsOver) {
  Oracle oracle;
  {
    auto w = Open(Options(/*claim=*/true, /*quorum=*/3));  // every replica holds every epoch
    ASSERT_TRUE(w);
    ShipFirstEpochs(*w, &oracle);
  }
  auto reader = Open(Options(/*claim=*/false));
  ASSERT_TRUE(reader);
  ASSERT_EQ(reader->image().epoch, 3u);
  VerifyImage(*reader, 1501, oracle);

  // A damaged page on the replica asked first is served by another.
  const int first = IndexOf(reader->replicas()[0]);
  peers_[first]->Signal(SIGTERM);
  ASSERT_TRUE(DamageStoredPage(dirs_[first], 599, 2));
  StartPeer(first);
  VerifyImage(*reader, 1501, oracle);

  // Killed, it is passed over after its fetch times out.
  peers_[first]->Signal(SIGKILL);
  VerifyImage(*reader, 1501, oracle);
}

TEST_F(ReplicaClientTest, FetchesRunBesideShipping) {
  auto c = Open(Options());
  ASSERT_TRUE(c);
  Oracle oracle;
  ShipFirstEpochs(*c, &oracle);
  // Readers of pages [0, 600) while the writer commits pages at 1000 and up.
  const Oracle low = oracle;
  std::atomic<bool> done{false};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      while (!done.load()) VerifyImage(*c, 600, low);
    });
  }
  for (Epoch e = 4; e < 12; ++e) {
    auto sealed = MakeEpoch(e, Range(1000, 1000 + 8 * e), 1501, {}, &oracle);
    Status s = c->Persist(sealed.sealed);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  done = true;
  for (auto& t : readers) t.join();
  VerifyImage(*c, 1501, oracle);
}

TEST_F(ReplicaClientTest, ReplicaBehindWhatIsRetainedIsInstalledThenCounts) {
  auto o = Options();
  o.retain_max = 0;  // keep no copies: a replica that misses an epoch cannot be caught up epoch by epoch
  auto c = Open(o);
  ASSERT_TRUE(c);
  Oracle oracle;
  const int behind = IndexOf(c->replicas()[2]);
  peers_[behind]->Signal(SIGKILL);
  auto e1 = MakeEpoch(1, Range(0, 20), 32, {}, &oracle);
  ASSERT_TRUE(c->Persist(e1.sealed).ok());
  StartPeer(behind);
  auto e2 = MakeEpoch(2, {1}, 32, {{30, 2}}, &oracle);
  Status s = c->Persist(e2.sealed);
  ASSERT_TRUE(s.ok()) << s.ToString();
  // It is installed in the background, at a durable epoch.
  const Epoch at = PersistUntilInstalled(*c, behind, 3, 32, &oracle);
  ASSERT_NE(at, 0u);
  // Installed, it counts toward the quorum: one other replica is enough.
  peers_[IndexOf(c->replicas()[0])]->Signal(SIGKILL);
  auto next = MakeEpoch(at + 1, {2}, 32, {}, &oracle);
  s = c->Persist(next.sealed);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(DurableAt(endpoints_[behind]), static_cast<int64_t>(at + 1));
  VerifyImage(*c, 32, oracle);
}

TEST_F(ReplicaClientTest, DamagedPageIsReadElsewhereAndRepaired) {
  Oracle oracle;
  {
    auto w = Open(Options(/*claim=*/true, /*quorum=*/3));
    ASSERT_TRUE(w);
    ShipFirstEpochs(*w, &oracle);
  }
  auto reader = Open(Options(/*claim=*/false));
  ASSERT_TRUE(reader);
  const int first = IndexOf(reader->replicas()[0]);
  peers_[first]->Signal(SIGTERM);
  ASSERT_TRUE(DamageStoredPage(dirs_[first], 599, 2));
  StartPeer(first);
  VerifyImage(*reader, 1501, oracle);  // served by another replica; the good copy goes back to `first`
  // With the others gone, the damaged replica alone serves a good page again.
  for (int i = 0; i < kPeers; ++i)
    if (i != first) peers_[i]->Signal(SIGTERM);
  auto alone = ReaderOn(endpoints_[first]);
  ASSERT_TRUE(alone);
  std::unique_ptr<uint8_t, decltype(&std::free)> page(static_cast<uint8_t*>(std::aligned_alloc(kPageSize, kPageSize)), &std::free);
  Status s;
  for (int tries = 0; tries < 100; ++tries) {  // the repair is not waited for by the read
    s = alone->ReadRun(599, 1, page.get(), nullptr);
    if (s.ok()) break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(s.ok()) << s.ToString();
  VerifyImage(*alone, 1501, oracle);
}

// An open needs k - W + 1 replicas: two of three with W = 2.
TEST_F(ReplicaClientTest, OpenNeedsReplicasMinusQuorumPlusOne) {
  peers_[0]->Signal(SIGKILL);
  peers_[1]->Signal(SIGKILL);
  auto o = Options();
  o.timeout = 600ms;  // the open's too, without an open_timeout
  auto c = ReplicaClient::Open(kHeap, o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Status::Code::kTimeout);
  EXPECT_NE(
      c.status().message().find("1 of 3 replicas answered HELLO within 600 ms, 2 needed (replicas=3 - quorum=2 + 1)"),
      std::string::npos)
      << c.status().message();
  // open_timeout bounds the open alone; a commit would wait a minute.
  o.timeout = 60s;
  o.open_timeout = 300ms;
  c = ReplicaClient::Open(kHeap, o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Status::Code::kTimeout);
  EXPECT_NE(c.status().message().find("1 of 3 replicas answered HELLO within 300 ms"), std::string::npos)
      << c.status().message();
}

// W = k: every acknowledged epoch is on every replica, so any one replica
// opens the heap with all of it (k - W + 1 = 1); commits then need all k,
// and fail saying that fewer are reachable.
TEST_F(ReplicaClientTest, QuorumOfAllOpensOnAnyOneReplica) {
  Oracle oracle;
  {
    auto w = Open(Options(/*claim=*/true, /*quorum=*/3));
    ASSERT_TRUE(w);
    ShipFirstEpochs(*w, &oracle);
  }
  const int kept = 1;
  for (int i = 0; i < kPeers; ++i)
    if (i != kept) peers_[i]->Signal(SIGKILL);
  auto c = Open(Options(/*claim=*/true, /*quorum=*/3));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->image().epoch, 3u);
  EXPECT_EQ(c->term(), 2u);
  VerifyImage(*c, 1501, oracle);
  auto e4 = MakeEpoch(4, {1}, 1501, {}, &oracle);
  Status s = c->Persist(e4.sealed);
  ASSERT_EQ(s.code(), Status::Code::kTimeout) << s.ToString();
  EXPECT_NE(s.message().find("1 of 3 replicas"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("3 needed"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("fewer than quorum=3 replicas are reachable"), std::string::npos) << s.message();
  EXPECT_EQ(c->image().epoch, 3u);
}

// W = 1: an epoch may be on one replica alone, so an open needs every
// replica (k - W + 1 = k). With that one down it fails, within its
// timeout and saying what it needs, rather than open an older image.
TEST_F(ReplicaClientTest, QuorumOfOneOpensOnlyWithEveryReplica) {
  Oracle oracle;
  int lone = -1;
  {
    auto w = Open(Options(/*claim=*/true, /*quorum=*/1));
    ASSERT_TRUE(w);
    ShipFirstEpochs(*w, &oracle);
    for (const auto& ep : endpoints_) ASSERT_TRUE(AwaitDurable(ep, 3)) << ep;
    lone = IndexOf(w->replicas()[0]);
    for (int i = 0; i < kPeers; ++i)
      if (i != lone) peers_[i]->Signal(SIGKILL);
    auto e4 = MakeEpoch(4, {1000, 1001}, 1501, {}, &oracle);
    Status s = w->Persist(e4.sealed);
    ASSERT_TRUE(s.ok()) << "epoch 4 needs one acknowledgement: " << s.ToString();
  }
  for (int i = 0; i < kPeers; ++i) {
    if (i == lone) continue;
    StartPeer(i);  // with its disk, at epoch 3
    ASSERT_TRUE(AwaitDurable(endpoints_[i], 3));
  }
  peers_[lone]->Signal(SIGKILL);
  for (bool claim : {true, false}) {
    auto o = Options(claim, /*quorum=*/1);
    o.open_timeout = 1s;
    const auto start = std::chrono::steady_clock::now();
    auto c = ReplicaClient::Open(kHeap, o);
    const auto took = std::chrono::steady_clock::now() - start;
    ASSERT_FALSE(c.ok()) << "opened at epoch " << (*c)->image().epoch << " without the one replica holding epoch 4";
    EXPECT_EQ(c.status().code(), Status::Code::kTimeout);
    EXPECT_NE(c.status().message().find(
                  "2 of 3 replicas answered HELLO within 1000 ms, 3 needed (replicas=3 - quorum=1 + 1)"),
              std::string::npos)
        << c.status().message();
    EXPECT_LT(took, 5s) << "the open gives up at its timeout";
  }
  StartPeer(lone);
  ASSERT_TRUE(AwaitDurable(endpoints_[lone], 4));
  auto c = Open(Options(/*claim=*/true, /*quorum=*/1));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->image().epoch, 4u);
  VerifyImage(*c, 1501, oracle);
}

// k = 1: the one replica is every quorum.
TEST_F(ReplicaClientTest, SingleReplica) {
  auto rc = ResolveReplication({endpoints_[0]}, 1, 0);
  ASSERT_TRUE(rc.ok()) << rc.status().ToString();
  EXPECT_EQ(rc->quorum, 1u);
  auto o = Options();
  o.replication = *rc;
  Oracle oracle;
  {
    auto w = Open(o);
    ASSERT_TRUE(w);
    ShipFirstEpochs(*w, &oracle);
  }
  peers_[0]->Signal(SIGKILL);
  o.open_timeout = 500ms;
  auto gone = ReplicaClient::Open(kHeap, o);
  ASSERT_FALSE(gone.ok());
  EXPECT_NE(gone.status().message().find("0 of 1 replicas answered HELLO within 500 ms, 1 needed"), std::string::npos)
      << gone.status().message();
  StartPeer(0);
  ASSERT_TRUE(AwaitDurable(endpoints_[0], 3));
  o.open_timeout.reset();
  auto c = Open(o);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->image().epoch, 3u);
  EXPECT_EQ(c->term(), 2u);
  VerifyImage(*c, 1501, oracle);
  auto e4 = MakeEpoch(4, {7}, 1501, {}, &oracle);
  Status s = c->Persist(e4.sealed);
  ASSERT_TRUE(s.ok()) << s.ToString();
  VerifyImage(*c, 1501, oracle);
}

// With W = k = 3 a claim needs one grant, so two writers can claim the
// same term on different replicas: B (by hand) on replicas 1 and 2, A on
// replica 0 while the others are stopped. Neither can make an epoch
// durable: each is refused where the other holds the term. And A, which
// never got W grants, ships nothing, so no two images share a name.
TEST_F(ReplicaClientTest, TwoClaimantsOfOneTermCannotBothReachTheQuorum) {
  const uint64_t kB[2] = {0xb0b, 0xb0b};
  const HeapId id = XXH3_64bits(kHeap.data(), kHeap.size());
  zmq::context_t ctx;
  std::vector<std::unique_ptr<PeerChannel>> b;
  for (int i = 0; i < kPeers; ++i) {
    auto ch = PeerChannel::Connect(ctx, endpoints_[i], nullptr);
    ASSERT_TRUE(ch.ok()) << ch.status().ToString();
    b.push_back(std::move(ch.value()));
    ASSERT_TRUE(b[i]->Call(wire::EncodeHello(b[i]->NextRequestId(), kHeap), 5s).ok());
    if (i == 0) continue;
    auto r = b[i]->Call(wire::EncodeClaimTerm(b[i]->NextRequestId(), id, 1, kB), 5s);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    const auto* t = std::get_if<wire::TermReplyBody>(&(*r)->msg.body);
    ASSERT_TRUE(t != nullptr && t->granted == 1) << "B claims term 1 on " << endpoints_[i];
  }
  kill(peers_[1]->pid(), SIGSTOP);
  kill(peers_[2]->pid(), SIGSTOP);
  auto a = Open(Options(/*claim=*/true, /*quorum=*/3));
  kill(peers_[1]->pid(), SIGCONT);
  kill(peers_[2]->pid(), SIGCONT);
  ASSERT_TRUE(a);
  ASSERT_EQ(a->term(), 1u) << "A claims term 1 from replica 0 alone";

  Oracle oracle;
  auto e1 = MakeEpoch(1, {1, 2}, 16, {}, &oracle);
  Status s = a->Persist(e1.sealed);
  EXPECT_EQ(s.code(), Status::Code::kSuperseded) << s.ToString();
  EXPECT_NE(s.message().find("term 1 to another writer"), std::string::npos) << s.message();

  // B's epoch 1 of term 1: replicas 1 and 2 acknowledge it, replica 0 refuses.
  std::vector<uint8_t> page(kPageSize);
  testing::FillPage(page.data(), 3, 1);
  const std::vector<Pgno> pgnos = {3};
  int acks = 0;
  for (int i = 0; i < kPeers; ++i) {
    auto p = b[i]->Call(wire::EncodePages(b[i]->NextRequestId(), id, 1, kB, 1, pgnos, page.data()), 5s);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    auto c =
        b[i]->Call(wire::EncodeCommit(b[i]->NextRequestId(), id, 1, kB, 1, {kBase, kSize, 16, 1, 0, 0, 0}, {}), 5s);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    const auto* ack = std::get_if<wire::CommitAckBody>(&(*c)->msg.body);
    if (ack != nullptr && ack->durable_epoch == 1 && ack->image_term == 1) ++acks;
    if (i == 0) {
      EXPECT_EQ(ErrorStatus(**c).code(), Status::Code::kSuperseded) << "replica 0 promised term 1 to A";
    }
  }
  EXPECT_EQ(acks, 2) << "B's epoch reached replicas 1 and 2 only";

  // A shipped nothing (its term was never granted by W replicas), so epoch
  // 1 of term 1 names B's image alone: a later writer takes it, installs it
  // on replica 0, and every replica serves it.
  EXPECT_EQ(DurableAt(endpoints_[0]), 0) << "A left an epoch of term 1 on replica 0";
  b.clear();
  Oracle theirs;
  theirs[3] = 1;
  auto c = Open(Options(/*claim=*/true, /*quorum=*/3));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->term(), 2u);
  ASSERT_EQ(c->image().epoch, 1u);
  VerifyImage(*c, 16, theirs);
  ASSERT_TRUE(AwaitInstalled(*c, 0, 1));
  auto e2 = MakeEpoch(2, {5}, 16, {}, &theirs);
  s = c->Persist(e2.sealed);
  ASSERT_TRUE(s.ok()) << s.ToString();
  c.reset();
  for (int i = 0; i < kPeers; ++i) {
    auto alone = ReaderOn(endpoints_[i]);
    ASSERT_TRUE(alone);
    EXPECT_EQ(alone->image().epoch, 2u) << endpoints_[i];
    VerifyImage(*alone, 16, theirs);
  }
}

}  // namespace
// Writer A leaves epoch 4 on one replica only and dies; writer B, whose
// open never saw it (W = 2: A's epoch was not durable), writes its own epoch 4. When that replica returns
// it holds A's epoch 4: B must not extend it with epoch 5 (a mixed image
// counted toward the quorum), must not read A's pages from it, and installs
// its own image there instead.
TEST_F(ReplicaClientTest, DivergentReplicaIsInstalledNotExtended) {
  Oracle oracle;
  int lone = -1;
  {
    auto a = Open(Options());
    ASSERT_TRUE(a);
    ShipFirstEpochs(*a, &oracle);
    lone = IndexOf(a->replicas()[0]);
    for (int i = 0; i < kPeers; ++i)
      if (i != lone) peers_[i]->Signal(SIGKILL);
    Oracle lost = oracle;
    auto a4 = MakeEpoch(4, {1000, 1001}, 1501, {}, &lost);
    EXPECT_FALSE(a->Persist(a4.sealed).ok()) << "epoch 4 reached one replica of three";
    ASSERT_TRUE(AwaitDurable(endpoints_[lone], 4));
  }
  peers_[lone]->Signal(SIGKILL);
  for (int i = 0; i < kPeers; ++i)
    if (i != lone) StartPeer(i);  // with their disks, at epoch 3

  auto b = Open(Options());
  ASSERT_TRUE(b);
  ASSERT_EQ(b->image().epoch, 3u) << "the replicas B opened on never held A's epoch 4";
  auto b4 = MakeEpoch(4, {2000}, 2001, {}, &oracle);
  ASSERT_TRUE(b->Persist(b4.sealed).ok());
  StartPeer(lone);  // with its disk: A's epoch 4 is still there
  ASSERT_TRUE(AwaitDurable(endpoints_[lone], 4));
  // B reads every page of its image; none may come from A's epoch 4.
  VerifyImage(*b, 2001, oracle);
  const Epoch at = PersistUntilInstalled(*b, lone, 5, 2001, &oracle);
  ASSERT_NE(at, 0u) << "the diverged replica was never installed";
  // The returned replica alone now holds exactly B's image.
  for (int i = 0; i < kPeers; ++i)
    if (i != lone) kill(peers_[i]->pid(), SIGSTOP);
  auto alone = ReaderOn(endpoints_[lone]);
  ASSERT_TRUE(alone);
  EXPECT_EQ(alone->image().epoch, at);
  VerifyImage(*alone, 2001, oracle);
  for (int i = 0; i < kPeers; ++i)
    if (i != lone) kill(peers_[i]->pid(), SIGCONT);
}

}  // namespace pheap
