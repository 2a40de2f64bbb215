// The peer daemon end to end, as a separate process (test_peer): the
// writer's conversation (HELLO, CLAIM_TERM, PAGES, COMMIT, FETCH), term
// fencing, idempotent resends, restart, SIGTERM, malformed input and the
// CURVE allow-list.
#include "replication/peer_server.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <xxhash.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <chrono>
#include <optional>
#include <thread>

#include "peer_test_util.h"
#include "replication/peer_channel.h"
#include "replication/wire.h"

namespace pheap {
namespace {

using namespace std::chrono_literals;
using testing::FillPage;
using wire::ErrorCode;

constexpr uint64_t kBase = uint64_t{0x3000} << 32;
constexpr uint64_t kRegionPages = 256;
constexpr uint64_t kSize = kRegionPages * kPageSize;
constexpr auto kWait = 5s;

const uint64_t kWriterA[2] = {0xa, 0xa};
const uint64_t kWriterB[2] = {0xb, 0xb};

// A writer's view of one heap on one peer, with an oracle of what each page
// must hold (the epoch that last wrote it, 0 for never / discarded).
class Client {
 public:
  Client(const std::string& endpoint, const std::string& heap, const CurveClientKeys* keys = nullptr) : heap_(heap) {
    auto ch = PeerChannel::Connect(ctx_, endpoint, keys);
    EXPECT_TRUE(ch.ok()) << ch.status().ToString();
    ch_ = std::move(ch.value());
    id_ = XXH3_64bits(heap.data(), heap.size());
  }
  HeapId id() const { return id_; }
  PeerChannel& ch() { return *ch_; }

  Result<std::unique_ptr<Received>> Call(const wire::OutMessage& m, std::chrono::milliseconds t = kWait) { return ch_->Call(m, t); }

  // The reply's body as T; fails the test if it is something else.
  template <typename T>
  static std::optional<T> As(const Result<std::unique_ptr<Received>>& r) {
    if (!r.ok()) {
      ADD_FAILURE() << r.status().ToString();
      return std::nullopt;
    }
    const Received& rec = *r.value();
    if (const T* v = std::get_if<T>(&rec.msg.body)) return *v;
    ADD_FAILURE() << "unexpected reply " << wire::TypeName(rec.msg.header.type) << ": " << ErrorStatus(rec).ToString();
    return std::nullopt;
  }
  // The error code of the reply (0 when it is not an error).
  static int ErrCode(const Result<std::unique_ptr<Received>>& r, uint64_t* detail = nullptr) {
    if (!r.ok()) return -1;
    const auto* e = std::get_if<wire::Error>(&r.value()->msg.body);
    if (e == nullptr) return 0;
    if (detail) *detail = e->detail;
    return static_cast<int>(e->code);
  }

  std::optional<wire::ManifestBody> Hello() { return As<wire::ManifestBody>(Call(wire::EncodeHello(ch_->NextRequestId(), heap_))); }
  // Claims term t as writer `who`, which this client's writes name from
  // then on (kWriterA until a claim).
  Result<std::unique_ptr<Received>> Claim(Term t, const uint64_t who[2]) {
    set_who(who);
    return Call(wire::EncodeClaimTerm(ch_->NextRequestId(), id_, t, who));
  }
  const uint64_t* who() const { return who_; }
  void set_who(const uint64_t who[2]) {
    who_[0] = who[0];
    who_[1] = who[1];
  }
  Result<std::unique_ptr<Received>> SendPages(Term t, Epoch e, const std::vector<Pgno>& pgnos) {
    std::vector<uint8_t> data(pgnos.size() * kPageSize);
    for (size_t i = 0; i < pgnos.size(); ++i) FillPage(data.data() + i * kPageSize, pgnos[i], e);
    return Call(wire::EncodePages(ch_->NextRequestId(), id_, t, who_, e, pgnos, data.data()));
  }
  // The COMMIT names prev_term(), the term this client believes wrote the
  // epoch before (the last one it shipped, unless set).
  Result<std::unique_ptr<Received>> Commit(Term t, Epoch e, uint64_t total, Pgno hwm, std::vector<Run> discarded = {}) {
    wire::CommitBody c{kBase, kSize, hwm, total, 0, 0, prev_term_};
    return Call(wire::EncodeCommit(ch_->NextRequestId(), id_, t, who_, e, c, discarded));
  }
  void set_prev_term(Term t) { prev_term_ = t; }
  // Ships epoch e: its pages in frames of `per_frame`, then the commit.
  void ShipEpoch(Term t, Epoch e, const std::vector<Pgno>& pgnos, Pgno hwm, std::vector<Run> discarded = {}, size_t per_frame = 16) {
    for (size_t at = 0; at < pgnos.size(); at += per_frame) {
      std::vector<Pgno> part(pgnos.begin() + at, pgnos.begin() + std::min(pgnos.size(), at + per_frame));
      ASSERT_TRUE(As<wire::PagesAckBody>(SendPages(t, e, part)));
    }
    auto ack = As<wire::CommitAckBody>(Commit(t, e, pgnos.size(), hwm, discarded));
    ASSERT_TRUE(ack);
    EXPECT_EQ(ack->durable_epoch, e);
    prev_term_ = t;
    for (Pgno p : pgnos) oracle_[p] = e;
    for (const Run& r : discarded)
      for (Pgno p = r.first; p < r.end(); ++p) oracle_.erase(p);
  }
  // Fetches [first, first + count) and checks every page against the oracle.
  void FetchAndVerify(Pgno first, uint32_t count, Epoch durable) {
    auto r = Call(wire::EncodeFetch(ch_->NextRequestId(), id_, durable, first, count));
    auto fr = As<wire::FetchReply>(r);
    ASSERT_TRUE(fr);
    if (durable != 0) {
      EXPECT_EQ((*r)->msg.header.epoch, durable);
    }
    uint32_t k = 0;
    std::vector<uint8_t> want(kPageSize);
    for (uint32_t i = 0; i < count; ++i) {
      auto it = oracle_.find(first + i);
      ASSERT_EQ(fr->present(i), it != oracle_.end()) << "page " << first + i;
      if (!fr->present(i)) continue;
      const uint8_t* got = fr->data + uint64_t{k} * kPageSize;
      EXPECT_EQ(fr->checksum(k), XXH3_64bits(got, kPageSize));
      FillPage(want.data(), first + i, it->second);
      EXPECT_EQ(0, std::memcmp(got, want.data(), kPageSize)) << "page " << first + i << " of epoch " << it->second;
      ++k;
    }
    EXPECT_EQ(k, fr->present_count);
  }

 private:
  zmq::context_t ctx_;
  std::unique_ptr<PeerChannel> ch_;
  std::string heap_;
  HeapId id_ = 0;
  std::map<Pgno, Epoch> oracle_;
  Term prev_term_ = 0;
  uint64_t who_[2] = {kWriterA[0], kWriterA[1]};
};

std::vector<Pgno> Range(Pgno first, Pgno end) {
  std::vector<Pgno> v;
  for (Pgno p = first; p < end; ++p) v.push_back(p);
  return v;
}

class PeerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    endpoint_ = "ipc://" + tmp_.path() + "/peer.sock";
    dir_ = tmp_.path() + "/data";
  }
  void StartPeer(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--listen", endpoint_, "--dir", dir_};
    args.insert(args.end(), extra.begin(), extra.end());
    peer_ = std::make_unique<testing::PeerProcess>();
    peer_->Start(args);
  }
  // SIGTERM, and the peer must exit 0.
  void StopPeer() {
    int status = peer_->Signal(SIGTERM);
    EXPECT_TRUE(WIFEXITED(status)) << "status " << status;
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }

  testing::TempDir tmp_;
  std::string endpoint_, dir_;
  std::unique_ptr<testing::PeerProcess> peer_;
};

TEST_F(PeerTest, WriterConversationEndToEndAndRestart) {
  StartPeer();
  Client c(endpoint_, "orders");
  auto m = c.Hello();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->flags & wire::kManifestHeld, 0u);
  EXPECT_EQ(m->epoch, 0u);
  EXPECT_EQ(m->max_message_bytes, wire::kMaxMessageBytes);

  auto t = Client::As<wire::TermReplyBody>(c.Claim(1, kWriterA));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->granted, 1u);
  EXPECT_EQ(t->promised_term, 1u);

  c.ShipEpoch(1, 1, Range(0, 40), 64);
  std::vector<Pgno> e2 = {3, 7, 8, 39, 41, 63, 100};
  c.ShipEpoch(1, 2, e2, 128, {{10, 5}});
  c.FetchAndVerify(0, 128, 2);
  c.FetchAndVerify(120, 20, 0);  // epoch 0: whatever is durable

  // The peer counts connections from ZeroMQ's monitor events, which reach
  // it on their own path and may trail the requests: ask again for a while.
  auto st = Client::As<wire::StatusReply>(c.Call(wire::EncodeStatus(c.ch().NextRequestId())));
  for (int i = 0; i < 200 && st && st->body.clients == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    st = Client::As<wire::StatusReply>(c.Call(wire::EncodeStatus(c.ch().NextRequestId())));
  }
  ASSERT_TRUE(st);
  ASSERT_EQ(st->heaps.size(), 1u);
  EXPECT_EQ(st->heaps[0].name, "orders");
  EXPECT_EQ(st->heaps[0].status.epoch, 2u);
  EXPECT_EQ(st->heaps[0].status.promised_term, 1u);
  EXPECT_GT(st->heaps[0].status.bytes_on_disk, 40 * kPageSize);
  EXPECT_GE(st->body.clients, 1u);

  StopPeer();
  StartPeer();
  m = c.Hello();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->flags & wire::kManifestHeld, wire::kManifestHeld);
  EXPECT_EQ(m->epoch, 2u);
  EXPECT_EQ(m->hwm, 128u);
  EXPECT_EQ(m->base, kBase);
  EXPECT_EQ(m->promised_term, 1u);
  c.FetchAndVerify(0, 128, 2);
  c.ShipEpoch(1, 3, {5, 6}, 128);
  c.FetchAndVerify(0, 16, 3);
  StopPeer();
}

using pheaptest::LogFileBytes;

// A peer that receives many small epochs compacts its store in the
// background: it stays near twice the live image plus one log file, and
// serves the same image before and after a restart.
TEST_F(PeerTest, ManySmallEpochsAreCompacted) {
  constexpr uint64_t kLogFile = 128 << 10, kLive = 32;
  // As in tests/engine/compaction_test.cc: the active file's padding, the
  // garbage left below kCompactMinGain, a compaction file's own blocks.
  constexpr uint64_t kSlack = (256 << 10) + PageStore::kCompactMinGain + 8 * kPageSize;
  StartPeer({"--log-file-size", std::to_string(kLogFile)});
  Client c(endpoint_, "small");
  ASSERT_TRUE(c.Hello());
  ASSERT_TRUE(Client::As<wire::TermReplyBody>(c.Claim(1, kWriterA)));
  c.ShipEpoch(1, 1, Range(0, kLive), kLive);
  const std::string path = dir_ + "/small";
  const uint64_t bound = 2 * kLive * kPageSize + kLogFile + kSlack;
  constexpr Epoch kEvery = 25;
  for (Epoch e = 2; e <= 800; ++e) {
    c.ShipEpoch(1, e, {(e * 7) % kLive}, kLive);
    if (e % kEvery != 0) continue;
    // Since the last checkpoint: at most its epochs (a page, its entries
    // and commit record each), a file's padding, and the output of a
    // compaction under way (at most the live image), which exists beside
    // its sources until it is durable.
    EXPECT_LE(LogFileBytes(path), bound + kLive * kPageSize + kEvery * 3 * kPageSize + (256 << 10)) << "epoch " << e;
    // And the compactor catches up: some moment finds the files within the
    // bound.
    ASSERT_LE(pheaptest::LogFileBytesOnceAtMost(path, bound, 20s), bound) << "epoch " << e;
  }
  c.FetchAndVerify(0, kLive, 800);
  StopPeer();
  StartPeer({"--no-compact"});
  c.FetchAndVerify(0, kLive, 800);
  c.ShipEpoch(1, 801, {3}, kLive);
  c.FetchAndVerify(0, kLive, 801);
  StopPeer();
}

TEST_F(PeerTest, TermFencingSurvivesRestart) {
  StartPeer();
  Client a(endpoint_, "h");
  Client b(endpoint_, "h");
  ASSERT_TRUE(a.Hello());
  ASSERT_TRUE(b.Hello());
  ASSERT_EQ(Client::As<wire::TermReplyBody>(a.Claim(2, kWriterA))->granted, 1u);
  auto refused = Client::As<wire::TermReplyBody>(b.Claim(1, kWriterB));
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->granted, 0u);
  EXPECT_EQ(refused->promised_term, 2u);
  // The same term by another writer is refused too; by the same one, granted again.
  EXPECT_EQ(Client::As<wire::TermReplyBody>(b.Claim(2, kWriterB))->granted, 0u);
  EXPECT_EQ(Client::As<wire::TermReplyBody>(a.Claim(2, kWriterA))->granted, 1u);

  a.ShipEpoch(2, 1, {1, 2}, 8);
  uint64_t detail = 0;
  EXPECT_EQ(Client::ErrCode(b.SendPages(1, 2, {3}), &detail), static_cast<int>(ErrorCode::kSuperseded));
  EXPECT_EQ(detail, 2u);

  ASSERT_EQ(Client::As<wire::TermReplyBody>(b.Claim(3, kWriterB))->granted, 1u);
  EXPECT_EQ(Client::ErrCode(a.SendPages(2, 2, {3}), &detail), static_cast<int>(ErrorCode::kSuperseded));
  EXPECT_EQ(detail, 3u);
  EXPECT_EQ(Client::ErrCode(a.Commit(2, 2, 0, 8), &detail), static_cast<int>(ErrorCode::kSuperseded));

  StopPeer();
  StartPeer();
  ASSERT_TRUE(a.Hello());
  auto after = Client::As<wire::TermReplyBody>(a.Claim(3, kWriterA));
  ASSERT_TRUE(after);
  EXPECT_EQ(after->granted, 0u);  // the promise to B outlived the restart
  EXPECT_EQ(after->promised_term, 3u);
  EXPECT_EQ(after->durable_epoch, 1u);
  EXPECT_EQ(Client::As<wire::TermReplyBody>(b.Claim(3, kWriterB))->granted, 1u);  // B's resend
  EXPECT_EQ(Client::ErrCode(a.Commit(2, 2, 0, 8)), static_cast<int>(ErrorCode::kSuperseded));
  b.set_prev_term(2);  // epoch 1 is A's
  b.ShipEpoch(3, 2, {4}, 8);
  StopPeer();
}

// A term belongs to the one claimant it was promised to: a claim quorum
// smaller than a majority lets two writers each claim the same term on
// replicas of their own, and neither may then write on the other's. A term
// adopted from a write names that writer just as a claim would.
TEST_F(PeerTest, PromisedTermIsRefusedToAnotherClaimant) {
  StartPeer();
  Client a(endpoint_, "one"), b(endpoint_, "one");
  ASSERT_TRUE(a.Hello());
  ASSERT_TRUE(b.Hello());
  ASSERT_EQ(Client::As<wire::TermReplyBody>(a.Claim(1, kWriterA))->granted, 1u);
  b.set_who(kWriterB);
  uint64_t detail = 0;
  EXPECT_EQ(Client::ErrCode(b.SendPages(1, 1, {3}), &detail), static_cast<int>(ErrorCode::kSuperseded));
  EXPECT_EQ(detail, 1u);
  EXPECT_EQ(Client::ErrCode(b.Commit(1, 1, 0, 8)), static_cast<int>(ErrorCode::kSuperseded));
  auto& bch = b.ch();
  EXPECT_EQ(
      Client::ErrCode(b.Call(wire::EncodeInstallBegin(bch.NextRequestId(), b.id(), 1, b.who(), 1, {kBase, kSize, 1}))),
      static_cast<int>(ErrorCode::kSuperseded));
  EXPECT_EQ(Client::ErrCode(b.Call(wire::EncodeDrop(bch.NextRequestId(), b.id(), 1, b.who()))),
            static_cast<int>(ErrorCode::kSuperseded));
  a.ShipEpoch(1, 1, {1, 2}, 8);  // the claimant writes on

  // Adopted from a write: A ships term 2 here without claiming it (its
  // claim quorum was elsewhere); B cannot claim term 2, nor write in it.
  a.ShipEpoch(2, 2, {3}, 8);
  auto refused = Client::As<wire::TermReplyBody>(b.Claim(2, kWriterB));
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->granted, 0u);
  EXPECT_EQ(Client::ErrCode(b.SendPages(2, 3, {4})), static_cast<int>(ErrorCode::kSuperseded));
  // The adopted promise, and its claimant, outlive a restart.
  StopPeer();
  StartPeer();
  ASSERT_TRUE(a.Hello());
  ASSERT_TRUE(b.Hello());
  EXPECT_EQ(Client::As<wire::TermReplyBody>(b.Claim(2, kWriterB))->granted, 0u);
  EXPECT_EQ(Client::As<wire::TermReplyBody>(a.Claim(2, kWriterA))->granted, 1u);
  a.ShipEpoch(2, 3, {4}, 8);
  // A newer term goes to B; A is refused from then on.
  ASSERT_EQ(Client::As<wire::TermReplyBody>(b.Claim(3, kWriterB))->granted, 1u);
  EXPECT_EQ(Client::ErrCode(a.SendPages(2, 4, {5})), static_cast<int>(ErrorCode::kSuperseded));
  b.set_prev_term(2);
  b.ShipEpoch(3, 4, {5}, 8);
  StopPeer();
}

// A writer of a newer term whose image lacks an epoch an older writer left
// on this replica (it never became durable) must not build on it: the
// replica says it diverged, and installing the newer image replaces it.
TEST_F(PeerTest, CommitOnAnotherWritersImageIsRefused) {
  StartPeer();
  Client a(endpoint_, "fork"), b(endpoint_, "fork");
  ASSERT_TRUE(a.Hello());
  ASSERT_TRUE(b.Hello());
  ASSERT_EQ(Client::As<wire::TermReplyBody>(a.Claim(1, kWriterA))->granted, 1u);
  a.ShipEpoch(1, 1, {1}, 8);
  a.ShipEpoch(1, 2, {2}, 8);  // only here: B starts from epoch 1
  ASSERT_EQ(Client::As<wire::TermReplyBody>(b.Claim(2, kWriterB))->granted, 1u);
  b.set_prev_term(1);
  // B's epoch 2 is not A's: the replica holds A's and acknowledges that.
  auto same_number = Client::As<wire::CommitAckBody>(b.Commit(2, 2, 0, 8));
  ASSERT_TRUE(same_number);
  EXPECT_EQ(same_number->image_term, 1u);
  // B's epoch 3 names its epoch 2 as term 2's: refused, naming term 1.
  ASSERT_TRUE(Client::As<wire::PagesAckBody>(b.SendPages(2, 3, {3})));
  b.set_prev_term(2);
  uint64_t detail = 0;
  EXPECT_EQ(Client::ErrCode(b.Commit(2, 3, 1, 8), &detail), static_cast<int>(ErrorCode::kDiverged));
  EXPECT_EQ(detail, 1u);
  EXPECT_EQ(b.Hello()->epoch, 2u);
  // B installs its epoch 2 (term 2): A's store is set aside, not extended.
  auto& ch = b.ch();
  EXPECT_TRUE(Client::As<wire::InstallAckBody>(
      b.Call(wire::EncodeInstallBegin(ch.NextRequestId(), b.id(), 2, b.who(), 2, {kBase, kSize, 2}))));
  EXPECT_TRUE(Client::As<wire::InstallAckBody>(
      b.Call(wire::EncodeInstallCommit(ch.NextRequestId(), b.id(), 2, b.who(), 2, {kBase, kSize, 8, 2}))));
  auto m = b.Hello();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->epoch, 2u);
  EXPECT_EQ(m->image_term, 2u);
  b.ShipEpoch(2, 3, {3}, 8);
  for (const auto& f : std::filesystem::directory_iterator(dir_))
    EXPECT_EQ(f.path().filename().string().find("stale-epoch"), std::string::npos)
        << "the installed image replaces the diverged store's files; nothing is set aside: " << f.path();
  // And a replica that holds exactly the writer's image is not installed over.
  EXPECT_EQ(
      Client::ErrCode(b.Call(wire::EncodeInstallBegin(ch.NextRequestId(), b.id(), 2, b.who(), 3, {kBase, kSize, 2}))),
      static_cast<int>(ErrorCode::kEpochMismatch));
  StopPeer();
}

// A reader asks for the epoch it opened at; the writer has moved on since.
TEST_F(PeerTest, PastEpochIsServedToAReader) {
  StartPeer();
  Client c(endpoint_, "past");
  ASSERT_TRUE(c.Hello());
  ASSERT_EQ(Client::As<wire::TermReplyBody>(c.Claim(1, kWriterA))->granted, 1u);
  c.ShipEpoch(1, 1, {0, 1, 2, 3}, 8);
  c.ShipEpoch(1, 2, {1, 2}, 8);
  c.ShipEpoch(1, 3, {2}, 8);
  // Each page as of `epoch`: written by the newest epoch <= it that wrote it.
  auto verify = [&](Epoch epoch, const std::map<Pgno, Epoch>& want) {
    auto r = c.Call(wire::EncodeFetch(c.ch().NextRequestId(), c.id(), epoch, 0, 4));
    auto fr = Client::As<wire::FetchReply>(r);
    ASSERT_TRUE(fr);
    EXPECT_EQ((*r)->msg.header.epoch, epoch);
    EXPECT_EQ(fr->image_term, 1u);
    ASSERT_EQ(fr->present_count, 4u);
    std::vector<uint8_t> page(kPageSize);
    for (const auto& [pgno, written] : want) {
      FillPage(page.data(), pgno, written);
      EXPECT_EQ(0, std::memcmp(fr->data + pgno * kPageSize, page.data(), kPageSize))
          << "page " << pgno << " as of epoch " << epoch;
    }
  };
  verify(1, {{0, 1}, {1, 1}, {2, 1}, {3, 1}});
  verify(2, {{0, 1}, {1, 2}, {2, 2}, {3, 1}});
  verify(1, {{0, 1}, {1, 1}, {2, 1}, {3, 1}});  // again, from the image kept
  c.FetchAndVerify(0, 4, 3);
  // An epoch not yet durable is still refused, naming the durable one.
  uint64_t detail = 0;
  EXPECT_EQ(Client::ErrCode(c.Call(wire::EncodeFetch(c.ch().NextRequestId(), c.id(), 4, 0, 4)), &detail),
            static_cast<int>(ErrorCode::kEpochMismatch));
  EXPECT_EQ(detail, 3u);
  StopPeer();
}

TEST_F(PeerTest, ResendsAreIdempotentAndGapsNamed) {
  StartPeer();
  Client c(endpoint_, "idem");
  ASSERT_TRUE(c.Hello());
  ASSERT_EQ(Client::As<wire::TermReplyBody>(c.Claim(1, kWriterA))->granted, 1u);
  // Pages resent before the commit are held once.
  ASSERT_TRUE(Client::As<wire::PagesAckBody>(c.SendPages(1, 1, {1, 2, 3})));
  auto again = Client::As<wire::PagesAckBody>(c.SendPages(1, 1, {1, 2, 3}));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->inbox_pages, 3u);
  // A commit short of pages lists what the inbox holds.
  auto missing = c.Commit(1, 1, 5, 16);
  uint64_t detail = 0;
  ASSERT_EQ(Client::ErrCode(missing, &detail), static_cast<int>(ErrorCode::kMissingPages));
  EXPECT_EQ(detail, 3u);
  const auto& err = std::get<wire::Error>((*missing)->msg.body);
  ASSERT_EQ(err.runs.size(), 1u);
  EXPECT_EQ(err.runs[0].first, 1u);
  EXPECT_EQ(err.runs[0].count, 3u);
  ASSERT_TRUE(Client::As<wire::PagesAckBody>(c.SendPages(1, 1, {8, 9})));
  ASSERT_TRUE(Client::As<wire::CommitAckBody>(c.Commit(1, 1, 5, 16)));
  // The same commit again (its ack was lost): acked, nothing changes.
  auto ack = Client::As<wire::CommitAckBody>(c.Commit(1, 1, 5, 16));
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->durable_epoch, 1u);
  EXPECT_TRUE(Client::As<wire::PagesAckBody>(c.SendPages(1, 1, {1})));  // late resend of durable pages
  // An epoch ahead of durable + 1 is refused, naming the one needed.
  EXPECT_EQ(Client::ErrCode(c.Commit(1, 3, 0, 16), &detail), static_cast<int>(ErrorCode::kEpochGap));
  EXPECT_EQ(detail, 2u);
  EXPECT_EQ(Client::ErrCode(c.SendPages(1, 4, {1}), &detail), static_cast<int>(ErrorCode::kEpochGap));
  EXPECT_EQ(detail, 2u);
  // A fetch of an epoch not durable here names the durable one.
  EXPECT_EQ(Client::ErrCode(c.Call(wire::EncodeFetch(c.ch().NextRequestId(), c.id(), 2, 0, 4)), &detail),
            static_cast<int>(ErrorCode::kEpochMismatch));
  EXPECT_EQ(detail, 1u);
  // Unknown heap id: HELLO first.
  EXPECT_EQ(Client::ErrCode(c.Call(wire::EncodeFetch(c.ch().NextRequestId(), 12345, 0, 0, 4))),
            static_cast<int>(ErrorCode::kUnknownHeap));
  StopPeer();
}

// With 16 pages of inbox memory, a 120-page epoch goes mostly to the
// inbox file; its frames arrive last first, so the commit must also put
// the pages in order where they lie. Past the inbox limit: INBOX_FULL.
TEST_F(PeerTest, EpochLargerThanInboxMemoryGoesThroughAFile) {
  StartPeer({"--inbox-memory", std::to_string(16 * kPageSize), "--inbox-limit", std::to_string(128 * kPageSize)});
  Client c(endpoint_, "spill");
  ASSERT_TRUE(c.Hello());
  ASSERT_EQ(Client::As<wire::TermReplyBody>(c.Claim(1, kWriterA))->granted, 1u);
  const std::vector<Pgno> first = Range(0, 120);
  for (size_t end = first.size(); end > 0; end -= std::min<size_t>(end, 10)) {
    const size_t begin = end - std::min<size_t>(end, 10);
    ASSERT_TRUE(Client::As<wire::PagesAckBody>(c.SendPages(1, 1, {first.begin() + begin, first.begin() + end})));
  }
  ASSERT_TRUE(Client::As<wire::CommitAckBody>(c.Commit(1, 1, first.size(), kRegionPages)));
  c.set_prev_term(1);
  std::vector<Pgno> second;  // every other page of a wider range: the inbox is reused
  for (Pgno p = 40; p < 240; p += 2) second.push_back(p);
  c.ShipEpoch(1, 2, second, kRegionPages, {}, 7);
  // After a restart, every page holds the epoch that last wrote it.
  StopPeer();
  StartPeer({"--inbox-memory", std::to_string(16 * kPageSize), "--inbox-limit", std::to_string(128 * kPageSize)});
  Client again(endpoint_, "spill");
  ASSERT_TRUE(again.Hello());
  auto r = again.Call(wire::EncodeFetch(again.ch().NextRequestId(), again.id(), 2, 0, kRegionPages));
  auto fr = Client::As<wire::FetchReply>(r);
  ASSERT_TRUE(fr);
  std::vector<uint8_t> want(kPageSize);
  uint32_t k = 0;
  for (Pgno p = 0; p < kRegionPages; ++p) {
    const bool in2 = p >= 40 && p < 240 && p % 2 == 0;
    const bool in1 = p < 120 && !in2;
    ASSERT_EQ(fr->present(static_cast<uint32_t>(p)), in1 || in2) << "page " << p;
    if (!in1 && !in2) continue;
    FillPage(want.data(), p, in2 ? 2 : 1);
    EXPECT_EQ(0, std::memcmp(fr->data + uint64_t{k} * kPageSize, want.data(), kPageSize)) << "page " << p;
    ++k;
  }
  // An epoch beyond the limit is refused with the limit, and nothing breaks.
  ASSERT_EQ(Client::As<wire::TermReplyBody>(again.Claim(2, kWriterA))->granted, 1u);
  uint64_t detail = 0;
  int code = 0;
  for (Pgno p = 0; p < 200 && code == 0; p += 20) code = Client::ErrCode(again.SendPages(2, 3, Range(p, p + 20)), &detail);
  EXPECT_EQ(code, static_cast<int>(ErrorCode::kInboxFull));
  EXPECT_EQ(detail, 128 * kPageSize);
  StopPeer();
}

// A peer whose disk fills up while it receives: allocating the inbox file
// ahead falls back to what a frame needs, so an epoch that fits still goes
// through; one that does not is refused with INBOX_FULL naming the
// directory, and the peer stays up. The disk is a 2 MiB tmpfs in a mount
// namespace of this test process, which the peer inherits.
TEST_F(PeerTest, FullDiskWhileReceivingIsRefusedAndThePeerStaysUp) {
  if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    GTEST_SKIP() << "cannot make a mount namespace here: " << std::strerror(errno);
  std::filesystem::create_directories(dir_);
  ASSERT_EQ(mount("tmpfs", dir_.c_str(), "tmpfs", 0, "size=2m"), 0) << std::strerror(errno);
  StartPeer({"--inbox-memory", std::to_string(16 * kPageSize), "--inbox-limit", std::to_string(4096 * kPageSize)});
  Client c(endpoint_, "full");
  ASSERT_TRUE(c.Hello());
  ASSERT_EQ(Client::As<wire::TermReplyBody>(c.Claim(1, kWriterA))->granted, 1u);
  c.ShipEpoch(1, 1, Range(0, 120), kRegionPages, {}, 7);  // 104 pages in the file: fits
  // Fill the disk but for 64 KiB; the next epoch needs 200 pages of file.
  struct statvfs fs {};
  ASSERT_EQ(statvfs(dir_.c_str(), &fs), 0);
  const uint64_t free_bytes = uint64_t{fs.f_bavail} * fs.f_frsize;
  ASSERT_GT(free_bytes, uint64_t{64} << 10);
  int filler = open((dir_ + "/filler").c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(filler, 0);
  ASSERT_EQ(fallocate(filler, 0, 0, static_cast<off_t>(free_bytes - (uint64_t{64} << 10))), 0) << std::strerror(errno);
  close(filler);
  uint64_t detail = 0;
  int code = 0;
  for (Pgno p = 0; p < 240 && code == 0; p += 20) code = Client::ErrCode(c.SendPages(1, 2, Range(p, p + 20)), &detail);
  EXPECT_EQ(code, static_cast<int>(ErrorCode::kInboxFull));
  // Still serving: epoch 1 reads back whole.
  auto r = c.Call(wire::EncodeFetch(c.ch().NextRequestId(), c.id(), 1, 0, 120));
  auto fr = Client::As<wire::FetchReply>(r);
  ASSERT_TRUE(fr) << Client::ErrCode(r);
  EXPECT_EQ(fr->present_count, 120u);
  StopPeer();
  EXPECT_EQ(umount2(dir_.c_str(), MNT_DETACH), 0) << std::strerror(errno);
}

TEST_F(PeerTest, CorruptPageInFrameIsRejectedAndNothingKept) {
  StartPeer();
  Client c(endpoint_, "crc");
  ASSERT_TRUE(c.Hello());
  std::vector<Pgno> pgnos = {4, 5};
  std::vector<uint8_t> data(2 * kPageSize);
  FillPage(data.data(), 4, 1);
  FillPage(data.data() + kPageSize, 5, 1);
  wire::OutMessage m = wire::EncodePages(c.ch().NextRequestId(), c.id(), 1, c.who(), 1, pgnos, data.data());
  data[kPageSize + 9] ^= 0x40;  // after the checksums were taken: damaged in flight
  uint64_t detail = 0;
  EXPECT_EQ(Client::ErrCode(c.Call(m), &detail), static_cast<int>(ErrorCode::kPageChecksum));
  EXPECT_EQ(detail, 5u);
  EXPECT_EQ(Client::ErrCode(c.Commit(1, 1, 2, 8), &detail), static_cast<int>(ErrorCode::kMissingPages));
  EXPECT_EQ(detail, 0u);
  StopPeer();
}

TEST_F(PeerTest, InstallIsFencedAndItsStepsAreIdempotent) {
  StartPeer();
  Client c(endpoint_, "inst");
  ASSERT_TRUE(c.Hello());
  ASSERT_TRUE(Client::As<wire::TermReplyBody>(c.Claim(2, kWriterA)));
  auto& ch = c.ch();
  const std::vector<Pgno> pgnos = {1, 2};
  std::vector<uint8_t> data(2 * kPageSize);
  for (size_t i = 0; i < 2; ++i) FillPage(data.data() + i * kPageSize, pgnos[i], 5);
  const std::vector<pheap::Run> absent = {{3, 1}};
  auto pages = [&](Term t) {
    return wire::EncodeInstallPages(ch.NextRequestId(), c.id(), t, c.who(), 5, pgnos, data.data(), absent);
  };

  EXPECT_EQ(Client::ErrCode(c.Call(pages(2))), static_cast<int>(ErrorCode::kNoInstall));
  EXPECT_EQ(
      Client::ErrCode(c.Call(wire::EncodeInstallBegin(ch.NextRequestId(), c.id(), 1, c.who(), 5, {kBase, kSize, 1}))),
      static_cast<int>(ErrorCode::kSuperseded));
  auto begun = c.Call(wire::EncodeInstallBegin(ch.NextRequestId(), c.id(), 2, c.who(), 5, {kBase, kSize, 2}));
  ASSERT_TRUE(Client::As<wire::InstallAckBody>(begun));
  // The writer's own epochs wait for the install to close.
  EXPECT_EQ(Client::ErrCode(c.SendPages(2, 1, {3})), static_cast<int>(ErrorCode::kBusy));
  ASSERT_TRUE(Client::As<wire::InstallAckBody>(c.Call(pages(2))));
  auto again = Client::As<wire::InstallAckBody>(c.Call(pages(2)));  // a resend
  ASSERT_TRUE(again);
  EXPECT_EQ(again->installed_pages, 4u);
  // Nothing is visible before the commit.
  auto m = c.Hello();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->epoch, 0u);
  const wire::InstallCommitBody body{kBase, kSize, 8, 2};
  for (int i = 0; i < 2; ++i) {  // the second is a resend
    auto done = Client::As<wire::InstallAckBody>(
        c.Call(wire::EncodeInstallCommit(ch.NextRequestId(), c.id(), 2, c.who(), 6, body)));
    ASSERT_TRUE(done);
    EXPECT_EQ(done->durable_epoch, 6u);
    EXPECT_EQ(done->image_term, 2u);
  }
  m = c.Hello();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->epoch, 6u);
  auto fr = c.Call(wire::EncodeFetch(ch.NextRequestId(), c.id(), 6, 0, 4));
  auto reply = Client::As<wire::FetchReply>(fr);
  ASSERT_TRUE(reply);
  ASSERT_EQ(reply->present_count, 2u);
  EXPECT_FALSE(reply->present(0));
  EXPECT_TRUE(reply->present(1) && reply->present(2));
  EXPECT_EQ(0, std::memcmp(reply->data, data.data(), 2 * kPageSize));
  // The writer goes on from the installed epoch.
  c.set_prev_term(2);
  c.ShipEpoch(2, 7, {3}, 8);
  m = c.Hello();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->epoch, 7u);
  // A replica not behind is not installed over.
  EXPECT_EQ(
      Client::ErrCode(c.Call(wire::EncodeInstallBegin(ch.NextRequestId(), c.id(), 2, c.who(), 7, {kBase, kSize, 2}))),
      static_cast<int>(ErrorCode::kEpochMismatch));
}

// An install never takes away the image a replica holds before the new one
// is durable: while it runs, and after the installer or the peer dies
// mid-way, the replica serves its last durable image (HELLO and FETCH),
// also after a restart. Only the install's closing record switches it.
TEST_F(PeerTest, InterruptedInstallKeepsTheReplicasImage) {
  StartPeer();
  {
    Client a(endpoint_, "keep");
    ASSERT_TRUE(a.Hello());
    ASSERT_EQ(Client::As<wire::TermReplyBody>(a.Claim(1, kWriterA))->granted, 1u);
    a.ShipEpoch(1, 1, Range(0, 40), 64);
    a.ShipEpoch(1, 2, {5, 6, 7}, 64);
  }
  auto expect_old = [&](const char* when) {
    Client r(endpoint_, "keep");
    auto m = r.Hello();
    ASSERT_TRUE(m) << when;
    EXPECT_EQ(m->epoch, 2u) << when;
    EXPECT_EQ(m->image_term, 1u) << when;
    auto got = r.Call(wire::EncodeFetch(r.ch().NextRequestId(), r.id(), 2, 0, 8));
    auto fr = Client::As<wire::FetchReply>(got);
    ASSERT_TRUE(fr) << when;
    ASSERT_EQ(fr->present_count, 8u) << when;
    std::vector<uint8_t> want(kPageSize);
    FillPage(want.data(), 6, 2);
    EXPECT_EQ(0, std::memcmp(fr->data + 6 * kPageSize, want.data(), kPageSize)) << when << ": page 6";
  };
  // Another writer (term 2) begins installing its image of epoch 3 and sends
  // part of it; then it dies.
  std::vector<uint8_t> data(2 * kPageSize);
  const std::vector<Pgno> pgnos = {6, 9};
  for (size_t i = 0; i < 2; ++i) FillPage(data.data() + i * kPageSize, pgnos[i], 3);
  {
    Client b(endpoint_, "keep");
    ASSERT_TRUE(b.Hello());
    ASSERT_EQ(Client::As<wire::TermReplyBody>(b.Claim(2, kWriterB))->granted, 1u);
    auto& ch = b.ch();
    ASSERT_TRUE(Client::As<wire::InstallAckBody>(
        b.Call(wire::EncodeInstallBegin(ch.NextRequestId(), b.id(), 2, b.who(), 3, {kBase, kSize, 2}))));
    ASSERT_TRUE(Client::As<wire::InstallAckBody>(
        b.Call(wire::EncodeInstallPages(ch.NextRequestId(), b.id(), 2, b.who(), 3, pgnos, data.data(), {}))));
    expect_old("while an install runs");
  }
  expect_old("after the installer died");
  ASSERT_TRUE(WIFSIGNALED(peer_->Signal(SIGKILL)));
  StartPeer();
  expect_old("after the peer was killed mid-install and restarted");

  // The installer comes back, installs the whole image and closes it: from
  // then on, and across a restart, the replica holds it.
  Client b(endpoint_, "keep");
  ASSERT_TRUE(b.Hello());
  ASSERT_EQ(Client::As<wire::TermReplyBody>(b.Claim(3, kWriterB))->granted, 1u);
  auto& ch = b.ch();
  ASSERT_TRUE(Client::As<wire::InstallAckBody>(
      b.Call(wire::EncodeInstallBegin(ch.NextRequestId(), b.id(), 3, b.who(), 3, {kBase, kSize, 2}))));
  ASSERT_TRUE(Client::As<wire::InstallAckBody>(
      b.Call(wire::EncodeInstallPages(ch.NextRequestId(), b.id(), 3, b.who(), 3, pgnos, data.data(), {}))));
  ASSERT_TRUE(Client::As<wire::InstallAckBody>(
      b.Call(wire::EncodeInstallCommit(ch.NextRequestId(), b.id(), 3, b.who(), 3, {kBase, kSize, 16, 2}))));
  StopPeer();
  StartPeer();
  Client r(endpoint_, "keep");
  auto m = r.Hello();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->epoch, 3u);
  EXPECT_EQ(m->image_term, 2u);
  auto got = r.Call(wire::EncodeFetch(r.ch().NextRequestId(), r.id(), 3, 0, 16));
  auto fr = Client::As<wire::FetchReply>(got);
  ASSERT_TRUE(fr);
  EXPECT_EQ(fr->present_count, 2u) << "only the installed image's pages";
  EXPECT_TRUE(fr->present(6) && fr->present(9));
  EXPECT_EQ(0, std::memcmp(fr->data, data.data(), 2 * kPageSize));
  for (const auto& f : std::filesystem::directory_iterator(dir_))
    EXPECT_EQ(f.path().filename().string().find("stale-epoch"), std::string::npos) << f.path();
  StopPeer();
}

TEST_F(PeerTest, StoredPageDamageIsNamedOnFetch) {
  StartPeer();
  Client c(endpoint_, "rot");
  ASSERT_TRUE(c.Hello());
  c.ShipEpoch(1, 1, {0, 1, 2}, 4);
  StopPeer();
  // Flip one byte of page 1's data in the log file.
  std::vector<uint8_t> page(kPageSize);
  FillPage(page.data(), 1, 1);
  bool flipped = false;
  for (const auto& de : std::filesystem::directory_iterator(dir_ + "/rot")) {
    std::fstream f(de.path(), std::ios::in | std::ios::out | std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    size_t at = bytes.find(std::string(reinterpret_cast<char*>(page.data()), 64));
    if (at == std::string::npos) continue;
    f.seekp(static_cast<std::streamoff>(at + 100));
    f.put(static_cast<char>(bytes[at + 100] ^ 1));
    flipped = true;
  }
  ASSERT_TRUE(flipped);
  StartPeer();
  ASSERT_TRUE(c.Hello());
  uint64_t detail = 0;
  EXPECT_EQ(Client::ErrCode(c.Call(wire::EncodeFetch(c.ch().NextRequestId(), c.id(), 0, 0, 3)), &detail),
            static_cast<int>(ErrorCode::kCorruptPage));
  EXPECT_EQ(detail, 1u);
  auto ok = Client::As<wire::FetchReply>(c.Call(wire::EncodeFetch(c.ch().NextRequestId(), c.id(), 0, 2, 1)));
  ASSERT_TRUE(ok);  // the pages around it are still served
  EXPECT_EQ(ok->present_count, 1u);
  StopPeer();
}

// Raw frames: each gets an ERROR naming the fault, and the peer stays up.
TEST_F(PeerTest, MalformedAndOversizedMessagesAreAnsweredAndSurvived) {
  StartPeer();
  Client c(endpoint_, "m");
  ASSERT_TRUE(c.Hello());
  auto header = [](const wire::OutMessage& m) {
    auto h = m.header_bytes();
    return std::string(reinterpret_cast<const char*>(h.data()), h.size());
  };
  wire::OutMessage status = wire::EncodeStatus(77);
  std::string good = header(status);
  auto expect_error = [&](const std::vector<std::string>& frames, ErrorCode want) {
    ASSERT_TRUE(c.ch().SendFrames(frames).ok());
    auto r = c.ch().Receive(kWait);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    const auto* e = std::get_if<wire::Error>(&(*r)->msg.body);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->code, want) << e->message;
    EXPECT_FALSE(e->message.empty());
  };
  std::string bad_magic = good;
  bad_magic[0] = 'X';
  expect_error({bad_magic}, ErrorCode::kBadMagic);
  expect_error({good.substr(0, 10)}, ErrorCode::kTruncated);
  expect_error({""}, ErrorCode::kTruncated);
  std::string bad_sum = good;
  bad_sum[60] ^= 1;
  expect_error({bad_sum}, ErrorCode::kBadChecksum);
  std::string bad_version = good;
  bad_version[4] = 9;
  expect_error({bad_version}, ErrorCode::kBadVersion);
  expect_error({good, "unexpected body"}, ErrorCode::kLengthMismatch);
  expect_error({good, "a", "b", "c", "d"}, ErrorCode::kLengthMismatch);
  expect_error({header(wire::EncodeCommitAck({1, 1}, 1, 1, 1)), std::string(16, '\0')}, ErrorCode::kUnknownType);
  // A PAGES frame declaring more pages than a message may hold.
  std::vector<uint8_t> one(kPageSize);
  wire::OutMessage pages = wire::EncodePages(5, c.id(), 1, c.who(), 1, std::vector<Pgno>{1}, one.data());
  uint32_t huge = wire::kMaxPagesPerMessage + 1;
  std::memcpy(pages.body.data(), &huge, 4);
  expect_error({header(pages), std::string(pages.body.begin(), pages.body.end()), std::string(kPageSize, '\0')},
               ErrorCode::kOversized);
  // Request ids are echoed where the header is readable.
  {
    std::string h = header(wire::EncodeFetch(4242, c.id(), 0, 0, 0));
    ASSERT_TRUE(c.ch().SendFrames({h, std::string(16, '\0')}).ok());
    auto r = c.ch().Receive(kWait);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ((*r)->msg.header.request_id, 4242u);
  }
  // Beyond ZMQ_MAXMSGSIZE the transport drops the connection: no reply, peer up.
  ASSERT_TRUE(c.ch().SendFrames({good, std::string(wire::kMaxFrameBytes + 1, 'x')}).ok());
  EXPECT_FALSE(c.ch().Receive(1s).ok());
  Client fresh(endpoint_, "m");
  auto m = fresh.Hello();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->max_message_bytes, wire::kMaxMessageBytes);
  StopPeer();
}

// One message with a field out of bounds must not be stored, not even in
// part: a term or epoch that leaves no successor would brick the heap for
// every later writer, a region no heap can have would be created as its
// store. Each is refused naming the field; a writer then claims a term and
// commits as if nothing had happened.
TEST_F(PeerTest, FieldsOutOfBoundsAreRefusedAndTheHeapStaysWritable) {
  StartPeer();
  Client c(endpoint_, "hostile");
  ASSERT_TRUE(c.Hello());
  auto& ch = c.ch();
  constexpr uint64_t kHuge = ~uint64_t{0};
  auto refused = [&](const wire::OutMessage& m, const std::string& names) {
    auto r = c.Call(m);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    const auto* e = std::get_if<wire::Error>(&(*r)->msg.body);
    ASSERT_NE(e, nullptr) << wire::TypeName(m.header.type) << " was accepted; it should name " << names;
    EXPECT_EQ(e->code, ErrorCode::kMalformed) << e->message;
    EXPECT_NE(e->message.find(names), std::string::npos) << "'" << e->message << "' does not name " << names;
  };
  std::vector<uint8_t> page(kPageSize);
  FillPage(page.data(), 1, 1);
  const std::vector<Pgno> one = {1};
  auto commit = [&](Term t, Epoch e, wire::CommitBody b) {
    return wire::EncodeCommit(ch.NextRequestId(), c.id(), t, c.who(), e, b, {});
  };
  const wire::CommitBody good{kBase, kSize, 8, 0, 0, 0, 0};

  // Terms and epochs beyond the limit, or too far beyond the promise.
  refused(wire::EncodeClaimTerm(ch.NextRequestId(), c.id(), kHuge, kWriterB), "CLAIM_TERM term 18446744073709551615");
  refused(wire::EncodeClaimTerm(ch.NextRequestId(), c.id(), kMaxTerm, kWriterB), "CLAIM_TERM term 4611686018427387903");
  refused(wire::EncodeClaimTerm(ch.NextRequestId(), c.id(), kMaxTermStep + 1, kWriterB), "term 4294967297 is more than");
  refused(wire::EncodePages(ch.NextRequestId(), c.id(), kHuge, c.who(), 1, one, page.data()), "PAGES term");
  refused(wire::EncodePages(ch.NextRequestId(), c.id(), kMaxTermStep + 1, c.who(), 1, one, page.data()),
          "PAGES term 4294967297");
  refused(wire::EncodePages(ch.NextRequestId(), c.id(), 1, c.who(), uint64_t{1} << 63, one, page.data()),
          "PAGES epoch");
  refused(commit(1, kHuge, good), "COMMIT epoch");
  wire::CommitBody b = good;
  b.prev_term = kHuge;
  refused(commit(1, 1, b), "COMMIT prev_term");
  // Regions no heap can have.
  b = good;
  b.base = 0;
  refused(commit(1, 1, b), "COMMIT region base 0x0");
  b.base = kBase + 100;
  refused(commit(1, 1, b), "not page aligned");
  b = good;
  b.size = kPageSize;
  refused(commit(1, 1, b), "COMMIT region size 0x1000");
  b = good;
  b.base = kUserAddressLimit - kSize + kPageSize;
  refused(commit(1, 1, b), "outside the user address space");
  b = good;
  b.hwm = kRegionPages + 1;
  refused(commit(1, 1, b), "COMMIT hwm 257");
  refused(wire::EncodeInstallBegin(ch.NextRequestId(), c.id(), 1, c.who(), uint64_t{1} << 63, {kBase, kSize, 1}),
          "INSTALL_BEGIN epoch");
  refused(wire::EncodeInstallBegin(ch.NextRequestId(), c.id(), 1, c.who(), 1, {0, kPageSize, 1}),
          "INSTALL_BEGIN region");
  refused(wire::EncodeInstallBegin(ch.NextRequestId(), c.id(), 1, c.who(), 1, {kBase, kSize, kHuge}),
          "INSTALL_BEGIN image_term");
  refused(wire::EncodeInstallBegin(ch.NextRequestId(), c.id(), 1, c.who(), 1, {kBase, kSize, 0}),
          "INSTALL_BEGIN from epoch 1 with image_term 0");
  refused(wire::EncodeInstallCommit(ch.NextRequestId(), c.id(), 1, c.who(), 1, {kBase, kSize, 8, 0}),
          "INSTALL_COMMIT of epoch 1 with image_term 0");
  refused(wire::EncodeInstallCommit(ch.NextRequestId(), c.id(), 1, c.who(), 1, {kBase, kSize, 8, kHuge}),
          "INSTALL_COMMIT image_term");
  refused(wire::EncodeInstallCommit(ch.NextRequestId(), c.id(), 1, c.who(), 1, {kBase, kSize, kRegionPages + 1, 1}),
          "INSTALL_COMMIT hwm");

  // Nothing of them was stored: no promise, no store.
  auto m = c.Hello();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->promised_term, 0u);
  EXPECT_EQ(m->flags & wire::kManifestHeld, 0u);

  // A writer claims term 1 and commits; what it sends out of bounds later is
  // refused the same way, and its store keeps its region.
  ASSERT_EQ(Client::As<wire::TermReplyBody>(c.Claim(1, kWriterA))->granted, 1u);
  c.ShipEpoch(1, 1, {1, 2}, 8);
  ASSERT_TRUE(Client::As<wire::PagesAckBody>(c.SendPages(1, 2, {3, 100})));
  b = good;
  b.base = kBase + kSize;
  b.total_pages = 2;
  b.prev_term = 1;
  refused(commit(1, 2, b), "disagrees with the region recorded here");
  b.base = kBase;
  b.size = kSize / 2;  // a region grows, never shrinks
  refused(commit(1, 2, b), "disagrees with the region recorded here");
  refused(commit(1, 2, {kBase, kSize, 50, 2, 0, 0, 1}), "page 100 is in the inbox");
  uint64_t detail = 0;
  constexpr Pgno kBeyond = kMaxRegionSize / kPageSize;  // past any region this heap may grow to
  EXPECT_EQ(Client::ErrCode(c.SendPages(1, 2, {kBeyond}), &detail), static_cast<int>(ErrorCode::kMalformed));
  refused(wire::EncodePages(ch.NextRequestId(), c.id(), 1 + kMaxTermStep + 1, c.who(), 2, one, page.data()),
          "more than");
  auto ack = Client::As<wire::CommitAckBody>(c.Call(commit(1, 2, {kBase, kSize, 128, 2, 0, 0, 1})));
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->durable_epoch, 2u);
  // The next writer takes over as usual.
  Client next(endpoint_, "hostile");
  m = next.Hello();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->promised_term, 1u);
  EXPECT_EQ(m->epoch, 2u);
  EXPECT_EQ(m->base, kBase);
  EXPECT_EQ(m->size, kSize);
  ASSERT_EQ(Client::As<wire::TermReplyBody>(next.Claim(2, kWriterB))->granted, 1u);
  next.set_prev_term(1);
  next.ShipEpoch(2, 3, {4}, 128);
  StopPeer();
}

TEST_F(PeerTest, CurveAllowListEnforced) {
  const std::string skeys = tmp_.path() + "/server", akeys = tmp_.path() + "/alice", mkeys = tmp_.path() + "/mallory";
  ASSERT_TRUE(GenerateKeyPair(skeys).ok());
  ASSERT_TRUE(GenerateKeyPair(akeys).ok());
  ASSERT_TRUE(GenerateKeyPair(mkeys).ok());
  std::filesystem::copy_file(akeys + "/peer.pub", skeys + "/authorized/alice.pub");
  std::filesystem::copy_file(skeys + "/peer.pub", akeys + "/server.pub");
  std::filesystem::copy_file(skeys + "/peer.pub", mkeys + "/server.pub");
  StartPeer({"--keys", skeys});

  auto alice_keys = LoadClientKeys(akeys);
  ASSERT_TRUE(alice_keys.ok());
  Client alice(endpoint_, "secret", &*alice_keys);
  ASSERT_TRUE(alice.Hello());
  ASSERT_EQ(Client::As<wire::TermReplyBody>(alice.Claim(1, kWriterA))->granted, 1u);
  alice.ShipEpoch(1, 1, {1, 2}, 4);

  auto mallory_keys = LoadClientKeys(mkeys);
  ASSERT_TRUE(mallory_keys.ok());
  Client mallory(endpoint_, "secret", &*mallory_keys);
  EXPECT_EQ(mallory.Call(wire::EncodeHello(1, "secret"), 1500ms).status().code(), Status::Code::kTimeout);
  EXPECT_EQ(mallory.Call(wire::EncodeClaimTerm(2, mallory.id(), 9, kWriterB), 1500ms).status().code(), Status::Code::kTimeout);
  std::vector<uint8_t> page(kPageSize, 0x5a);
  EXPECT_EQ(
      mallory.Call(wire::EncodePages(3, mallory.id(), 9, mallory.who(), 2, std::vector<Pgno>{1}, page.data()), 1500ms)
          .status()
          .code(),
      Status::Code::kTimeout);
  EXPECT_EQ(mallory.Call(wire::EncodeFetch(2, mallory.id(), 0, 0, 4), 1500ms).status().code(), Status::Code::kTimeout);
  Client plain(endpoint_, "secret");  // no CURVE at all
  EXPECT_EQ(plain.Call(wire::EncodeHello(1, "secret"), 1500ms).status().code(), Status::Code::kTimeout);

  auto m = alice.Hello();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->epoch, 1u);
  EXPECT_EQ(m->promised_term, 1u);  // mallory's claim never arrived
  alice.FetchAndVerify(0, 4, 1);
  StopPeer();
}

TEST_F(PeerTest, NonLoopbackWithoutKeysRefusesToStart) {
  testing::PeerProcess p;
  p.Start({"--listen", "tcp://0.0.0.0:0", "--dir", dir_});
  int status = p.Wait();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);

  PeerOptions o;
  o.endpoint = "tcp://0.0.0.0:*";
  o.dir = dir_;
  auto refused = PeerServer::Start(o);
  EXPECT_EQ(refused.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("--insecure"), std::string::npos);
  o.insecure = true;
  auto started = PeerServer::Start(o);
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  EXPECT_EQ((*started)->endpoint().rfind("tcp://0.0.0.0:", 0), 0u);
  (*started)->Stop();
}

}  // namespace
}  // namespace pheap
