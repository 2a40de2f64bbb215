// The wire codec: every type survives encode -> decode, and every way a
// message can be malformed is rejected with the matching error code.
#include "replication/wire.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "peer_test_util.h"

namespace pheap::wire {
namespace {

using Frames = std::vector<std::string>;

const uint64_t kWho[2] = {0x77, 0x88};  // the claimant fenced requests name

Frames ToFrames(const OutMessage& m) {
  Frames f;
  auto h = m.header_bytes();
  f.emplace_back(reinterpret_cast<const char*>(h.data()), h.size());
  if (m.header.payload_frames >= 1) f.emplace_back(m.body.begin(), m.body.end());
  if (m.header.payload_frames == 2) f.emplace_back(reinterpret_cast<const char*>(m.data), m.data_bytes);
  return f;
}

Status DecodeFrames(const Frames& f, Message* out, ErrorCode* code) {
  std::vector<std::span<const uint8_t>> spans;
  for (const auto& s : f) spans.emplace_back(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  return Decode(spans, out, code);
}

// Decodes `f`, which must succeed, into *out (views point into f).
void MustDecode(const Frames& f, Message* out) {
  ErrorCode code{};
  Status s = DecodeFrames(f, out, &code);
  ASSERT_TRUE(s.ok()) << s.ToString();
}

ErrorCode MustFail(const Frames& f) {
  Message m;
  ErrorCode code{};
  Status s = DecodeFrames(f, &m, &code);
  EXPECT_FALSE(s.ok());
  return code;
}

// Rewrites the header of frame 0 through `edit`, then reseals its checksum.
void EditHeader(Frames* f, const std::function<void(Header*)>& edit) {
  Header h;
  std::memcpy(&h, (*f)[0].data(), sizeof(h));
  edit(&h);
  h.checksum = XXH3_64bits(&h, offsetof(Header, checksum));
  std::memcpy((*f)[0].data(), &h, sizeof(h));
}

std::vector<uint8_t> MakePages(const std::vector<Pgno>& pgnos, Epoch e) {
  std::vector<uint8_t> data(pgnos.size() * kPageSize);
  for (size_t i = 0; i < pgnos.size(); ++i) testing::FillPage(data.data() + i * kPageSize, pgnos[i], e);
  return data;
}

TEST(Wire, HelloRoundTrip) {
  Frames f = ToFrames(EncodeHello(7, "orders"));
  Message m;
  MustDecode(f, &m);
  EXPECT_EQ(m.type, Type::kHello);
  EXPECT_EQ(m.header.request_id, 7u);
  EXPECT_EQ(m.header.heap_id, XXH3_64bits("orders", 6));
  EXPECT_EQ(m.header.flags, 0);
  EXPECT_EQ(std::get<Hello>(m.body).name, "orders");
}

TEST(Wire, ManifestAndTermReplyRoundTrip) {
  ManifestBody mb{kManifestHeld, 0, 12, 3, 4, 0x300000000000, 1 << 20, 77, kMaxMessageBytes};
  Message m;
  Frames f = ToFrames(EncodeManifest({9, 55}, mb));
  MustDecode(f, &m);
  EXPECT_EQ(m.header.flags, kFlagReply);
  EXPECT_EQ(m.header.request_id, 9u);
  EXPECT_EQ(m.header.heap_id, 55u);
  EXPECT_EQ(m.header.epoch, 12u);
  EXPECT_EQ(m.header.term, 4u);
  EXPECT_EQ(0, std::memcmp(&std::get<ManifestBody>(m.body), &mb, sizeof(mb)));

  TermReplyBody tb{1, 0, 5, 12, 3};
  Frames f2 = ToFrames(EncodeTermReply({10, 55}, tb));
  MustDecode(f2, &m);
  EXPECT_EQ(0, std::memcmp(&std::get<TermReplyBody>(m.body), &tb, sizeof(tb)));
}

TEST(Wire, ClaimTermRoundTrip) {
  uint64_t claimant[2] = {0x1234, 0x5678};
  Frames f = ToFrames(EncodeClaimTerm(3, 99, 6, claimant));
  Message m;
  MustDecode(f, &m);
  EXPECT_EQ(m.header.term, 6u);
  EXPECT_EQ(std::get<ClaimTerm>(m.body).claimant[0], 0x1234u);
  EXPECT_EQ(std::get<ClaimTerm>(m.body).claimant[1], 0x5678u);
}

TEST(Wire, PagesRoundTripCarriesDataAndChecksums) {
  std::vector<Pgno> pgnos = {1, 5, 6, 900};
  auto data = MakePages(pgnos, 4);
  Frames f = ToFrames(EncodePages(11, 99, 2, kWho, 4, pgnos, data.data()));
  Message m;
  MustDecode(f, &m);
  const auto& p = std::get<Pages>(m.body);
  ASSERT_EQ(p.count, pgnos.size());
  EXPECT_EQ(m.header.epoch, 4u);
  EXPECT_EQ(m.header.term, 2u);
  EXPECT_EQ(m.header.claimant[0], 0x77u);
  EXPECT_EQ(m.header.claimant[1], 0x88u);
  for (uint32_t i = 0; i < p.count; ++i) {
    EXPECT_EQ(p.ref(i).pgno, pgnos[i]);
    EXPECT_EQ(0, std::memcmp(p.page(i), data.data() + i * kPageSize, kPageSize));
  }
  Pgno bad = 0;
  EXPECT_TRUE(VerifyPages(p, &bad).ok());
}

TEST(Wire, VerifyPagesNamesTheCorruptPage) {
  std::vector<Pgno> pgnos = {3, 4};
  auto data = MakePages(pgnos, 1);
  Frames f = ToFrames(EncodePages(1, 99, 1, kWho, 1, pgnos, data.data()));
  f[2][kPageSize + 100] ^= 1;  // page 4's data
  Message m;
  MustDecode(f, &m);
  Pgno bad = 0;
  Status s = VerifyPages(std::get<Pages>(m.body), &bad);
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_EQ(bad, 4u);
}

TEST(Wire, CommitRoundTrip) {
  CommitBody c{0x300000000000, 1 << 20, 200, 3, 0, 0, 7};
  std::vector<pheap::Run> runs = {{10, 2}, {50, 5}};
  Frames f = ToFrames(EncodeCommit(4, 99, 2, kWho, 8, c, runs));
  Message m;
  MustDecode(f, &m);
  const auto& got = std::get<Commit>(m.body);
  EXPECT_EQ(got.body.base, c.base);
  EXPECT_EQ(got.body.hwm, 200u);
  EXPECT_EQ(got.body.total_pages, 3u);
  EXPECT_EQ(got.body.prev_term, 7u);
  ASSERT_EQ(got.discarded.size(), 2u);
  EXPECT_EQ(got.discarded[1].first, 50u);
  EXPECT_EQ(got.discarded[1].count, 5u);
}

TEST(Wire, AcksRoundTrip) {
  Message m;
  Frames f = ToFrames(EncodePagesAck({5, 99}, 8, 2, 16, 40));
  MustDecode(f, &m);
  EXPECT_EQ(std::get<PagesAckBody>(m.body).accepted, 16u);
  EXPECT_EQ(std::get<PagesAckBody>(m.body).inbox_pages, 40u);
  Frames f2 = ToFrames(EncodeCommitAck({6, 99}, 2, 8, 2));
  MustDecode(f2, &m);
  EXPECT_EQ(std::get<CommitAckBody>(m.body).durable_epoch, 8u);
  EXPECT_EQ(m.header.epoch, 8u);
}

TEST(Wire, FetchAndReplyRoundTrip) {
  Message m;
  Frames f = ToFrames(EncodeFetch(12, 99, 8, 64, 70));
  MustDecode(f, &m);
  EXPECT_EQ(std::get<Fetch>(m.body).first, 64u);
  EXPECT_EQ(std::get<Fetch>(m.body).count, 70u);

  // Pages 64+0 and 64+69 present.
  std::vector<uint64_t> present = {1, uint64_t{1} << 5};
  auto data = MakePages({64, 133}, 8);
  std::vector<uint64_t> sums = {XXH3_64bits(data.data(), kPageSize), XXH3_64bits(data.data() + kPageSize, kPageSize)};
  Frames f2 = ToFrames(EncodeFetchReply({12, 99}, 2, 8, 3, 64, 70, present, sums, data.data()));
  MustDecode(f2, &m);
  const auto& r = std::get<FetchReply>(m.body);
  EXPECT_EQ(r.present_count, 2u);
  EXPECT_EQ(r.image_term, 3u);
  EXPECT_TRUE(r.present(0));
  EXPECT_FALSE(r.present(1));
  EXPECT_TRUE(r.present(69));
  EXPECT_EQ(r.checksum(1), sums[1]);
  EXPECT_EQ(0, std::memcmp(r.data + kPageSize, data.data() + kPageSize, kPageSize));
}

TEST(Wire, StatusAndReplyRoundTrip) {
  Message m;
  Frames f = ToFrames(EncodeStatus(13));
  MustDecode(f, &m);
  EXPECT_EQ(m.type, Type::kStatus);
  std::vector<HeapStatusEntry> heaps(2);
  heaps[0].name = "a";
  heaps[0].status.epoch = 3;
  heaps[1].name = "second-heap";
  heaps[1].status.bytes_on_disk = 1 << 20;
  Frames f2 = ToFrames(EncodeStatusReply({13, 0}, 4, 1000, heaps));
  MustDecode(f2, &m);
  const auto& r = std::get<StatusReply>(m.body);
  EXPECT_EQ(r.body.clients, 4u);
  ASSERT_EQ(r.heaps.size(), 2u);
  EXPECT_EQ(r.heaps[0].name, "a");
  EXPECT_EQ(r.heaps[0].status.epoch, 3u);
  EXPECT_EQ(r.heaps[1].name, "second-heap");
  EXPECT_EQ(r.heaps[1].status.bytes_on_disk, 1u << 20);
}

TEST(Wire, ErrorRoundTrip) {
  std::vector<pheap::Run> runs = {{0, 4}};
  Frames f = ToFrames(EncodeError({14, 99}, 3, 7, ErrorCode::kMissingPages, 4, "four of five", runs));
  Message m;
  MustDecode(f, &m);
  const auto& e = std::get<Error>(m.body);
  EXPECT_EQ(e.code, ErrorCode::kMissingPages);
  EXPECT_EQ(e.detail, 4u);
  EXPECT_EQ(e.message, "four of five");
  ASSERT_EQ(e.runs.size(), 1u);
  EXPECT_EQ(e.runs[0].count, 4u);
}

TEST(Wire, InstallMessagesRoundTrip) {
  Frames f = ToFrames(EncodeInstallBegin(20, 99, 3, kWho, 12, {0x10000, 0x800000, 2}));
  Message m;
  MustDecode(f, &m);
  EXPECT_EQ(m.type, Type::kInstallBegin);
  EXPECT_EQ(m.header.epoch, 12u);
  EXPECT_EQ(m.header.term, 3u);
  EXPECT_EQ(std::get<InstallBeginBody>(m.body).size, 0x800000u);

  std::vector<Pgno> pgnos = {4, 9};
  auto data = MakePages(pgnos, 11);
  std::vector<pheap::Run> absent = {{5, 4}, {10, 6}};
  Frames f2 = ToFrames(EncodeInstallPages(21, 99, 3, kWho, 11, pgnos, data.data(), absent));
  Message m2;
  MustDecode(f2, &m2);
  const auto& ip = std::get<InstallPages>(m2.body);
  EXPECT_EQ(m2.header.epoch, 11u);  // the label
  ASSERT_EQ(ip.pages.count, 2u);
  EXPECT_EQ(ip.pages.ref(1).pgno, 9u);
  EXPECT_EQ(0, std::memcmp(ip.pages.page(1), data.data() + kPageSize, kPageSize));
  Pgno bad = 0;
  EXPECT_TRUE(VerifyPages(ip.pages, &bad).ok());
  ASSERT_EQ(ip.discarded.size(), 2u);
  EXPECT_EQ(ip.discarded[1].first, 10u);
  EXPECT_EQ(ip.discarded[1].count, 6u);

  // Discards alone: no pages, an empty data frame.
  Frames f3 = ToFrames(EncodeInstallPages(22, 99, 3, kWho, 11, {}, nullptr, absent));
  Message m3;
  MustDecode(f3, &m3);
  EXPECT_EQ(std::get<InstallPages>(m3.body).pages.count, 0u);

  Frames f4 = ToFrames(EncodeInstallCommit(23, 99, 3, kWho, 14, {0x10000, 0x800000, 100, 2}));
  Message m4;
  MustDecode(f4, &m4);
  EXPECT_EQ(m4.header.epoch, 14u);
  EXPECT_EQ(std::get<InstallCommitBody>(m4.body).image_term, 2u);

  Frames f5 = ToFrames(EncodeInstallAck({23, 99}, 3, {14, 2, 0}));
  Message m5;
  MustDecode(f5, &m5);
  EXPECT_EQ(m5.header.flags, kFlagReply);
  EXPECT_EQ(std::get<InstallAckBody>(m5.body).durable_epoch, 14u);
}

TEST(Wire, RepairRoundTrip) {
  std::vector<Pgno> pgnos = {599};
  auto data = MakePages(pgnos, 2);
  Frames f = ToFrames(EncodeRepair(30, 99, 3, pgnos, data.data()));
  Message m;
  MustDecode(f, &m);
  EXPECT_EQ(m.type, Type::kRepair);
  EXPECT_TRUE(IsRequest(m.type));
  const auto& p = std::get<Pages>(m.body);
  ASSERT_EQ(p.count, 1u);
  EXPECT_EQ(p.ref(0).pgno, 599u);
  Frames f2 = ToFrames(EncodeRepairAck({30, 99}, 1, 3, {1, 0}));
  Message m2;
  MustDecode(f2, &m2);
  EXPECT_FALSE(IsRequest(m2.type));
  EXPECT_EQ(std::get<RepairAckBody>(m2.body).repaired, 1u);
  EXPECT_STREQ(TypeName(static_cast<uint8_t>(Type::kRepairAck)), "REPAIR_ACK");
  EXPECT_STREQ(ErrorCodeName(static_cast<uint16_t>(ErrorCode::kNoInstall)), "NO_INSTALL");
}

TEST(WireRoundTrip, DropAndItsAck) {
  Frames f = ToFrames(EncodeDrop(31, 99, 4, kWho));
  Message m;
  MustDecode(f, &m);
  EXPECT_EQ(m.type, Type::kDrop);
  EXPECT_TRUE(IsRequest(m.type));
  EXPECT_EQ(m.header.heap_id, 99u);
  EXPECT_EQ(m.header.term, 4u);
  EXPECT_EQ(m.header.claimant[0], 0x77u);
  EXPECT_EQ(m.header.claimant[1], 0x88u);
  EXPECT_TRUE(IsFenced(m.type));
  Message m2;
  MustDecode(ToFrames(EncodeDropAck({31, 99}, 4)), &m2);
  EXPECT_EQ(m2.type, Type::kDropAck);
  EXPECT_FALSE(IsRequest(m2.type));
  EXPECT_EQ(m2.header.request_id, 31u);
  EXPECT_STREQ(TypeName(static_cast<uint8_t>(Type::kDrop)), "DROP");
  EXPECT_STREQ(TypeName(static_cast<uint8_t>(Type::kDropAck)), "DROP_ACK");
}

TEST(WireMalformed, InstallMessages) {
  // Epoch 0 (no label), a bad region, a discard beyond any region, pages out of order.
  EXPECT_EQ(MustFail(ToFrames(EncodeInstallBegin(1, 99, 3, kWho, 0, {0x10000, 0x800000, 2}))), ErrorCode::kMalformed);
  EXPECT_EQ(MustFail(ToFrames(EncodeInstallBegin(1, 99, 3, kWho, 5, {0x10001, 0x800000, 2}))), ErrorCode::kMalformed);
  EXPECT_EQ(MustFail(ToFrames(EncodeInstallCommit(1, 99, 3, kWho, 5, {0x10000, 0x800000, 0x801, 2}))),
            ErrorCode::kMalformed);
  std::vector<pheap::Run> far = {{~uint64_t{0} - 1, 4}};
  EXPECT_EQ(MustFail(ToFrames(EncodeInstallPages(1, 99, 3, kWho, 5, {}, nullptr, far))), ErrorCode::kMalformed);
  std::vector<Pgno> unordered = {9, 4};
  auto data = MakePages(unordered, 5);
  EXPECT_EQ(MustFail(ToFrames(EncodeInstallPages(1, 99, 3, kWho, 5, unordered, data.data(), {}))),
            ErrorCode::kMalformed);
  // Data frame short of its pages.
  std::vector<Pgno> one = {4};
  Frames f = ToFrames(EncodeInstallPages(1, 99, 3, kWho, 5, one, data.data(), {}));
  f[2].resize(kPageSize - 1);
  EditHeader(&f, [](Header* h) { h->payload_bytes -= 1; });
  EXPECT_EQ(MustFail(f), ErrorCode::kLengthMismatch);
}

// ---- malformed input: one test per way to be wrong ----

Frames ValidPages() {
  static auto data = MakePages({1, 2}, 1);
  return ToFrames(EncodePages(1, 99, 1, kWho, 1, std::vector<Pgno>{1, 2}, data.data()));
}

TEST(WireMalformed, EmptyMessage) { EXPECT_EQ(MustFail({}), ErrorCode::kTruncated); }

TEST(WireMalformed, ShortOrLongHeader) {
  Frames f = ToFrames(EncodeStatus(1));
  f[0].resize(40);
  EXPECT_EQ(MustFail(f), ErrorCode::kTruncated);
  f = ToFrames(EncodeStatus(1));
  f[0].push_back('x');
  EXPECT_EQ(MustFail(f), ErrorCode::kLengthMismatch);
}

TEST(WireMalformed, BadMagicVersionChecksum) {
  Frames f = ToFrames(EncodeStatus(1));
  f[0][0] ^= 0x20;
  EXPECT_EQ(MustFail(f), ErrorCode::kBadMagic);
  f = ToFrames(EncodeStatus(1));
  EditHeader(&f, [](Header* h) { h->version = kVersion + 1; });
  EXPECT_EQ(MustFail(f), ErrorCode::kBadVersion);
  f = ToFrames(EncodeStatus(1));
  f[0][20] ^= 1;  // heap id, checksum not resealed
  EXPECT_EQ(MustFail(f), ErrorCode::kBadChecksum);
}

// A fenced request names the claimant of its term; nothing else names one.
TEST(WireMalformed, ClaimantOnlyOnFencedRequests) {
  Frames f = ValidPages();
  EditHeader(&f, [](Header* h) { h->claimant[0] = h->claimant[1] = 0; });
  EXPECT_EQ(MustFail(f), ErrorCode::kMalformed);
  f = ToFrames(EncodeDrop(1, 99, 2, kWho));
  EditHeader(&f, [](Header* h) { h->claimant[0] = h->claimant[1] = 0; });
  EXPECT_EQ(MustFail(f), ErrorCode::kMalformed);
  f = ToFrames(EncodeHello(1, "orders"));
  EditHeader(&f, [](Header* h) { h->claimant[1] = 1; });
  EXPECT_EQ(MustFail(f), ErrorCode::kMalformed);
  f = ToFrames(EncodeDropAck({1, 99}, 2));
  EditHeader(&f, [](Header* h) { h->claimant[0] = 1; });
  EXPECT_EQ(MustFail(f), ErrorCode::kMalformed);
  // One word of it set is a claimant.
  f = ValidPages();
  EditHeader(&f, [](Header* h) { h->claimant[0] = 0; });
  Message m;
  MustDecode(f, &m);
  EXPECT_FALSE(IsFenced(Type::kHello));
  EXPECT_FALSE(IsFenced(Type::kClaimTerm));  // its body names the claimant
  EXPECT_TRUE(IsFenced(Type::kInstallCommit));
}

TEST(WireMalformed, UnknownTypeAndBadFlags) {
  Frames f = ToFrames(EncodeStatus(1));
  EditHeader(&f, [](Header* h) { h->type = 0; });
  EXPECT_EQ(MustFail(f), ErrorCode::kUnknownType);
  EditHeader(&f, [](Header* h) { h->type = kMaxType + 1; });
  EXPECT_EQ(MustFail(f), ErrorCode::kUnknownType);
  f = ToFrames(EncodeStatus(1));
  EditHeader(&f, [](Header* h) { h->flags = 0x80; });
  EXPECT_EQ(MustFail(f), ErrorCode::kMalformed);
  f = ToFrames(EncodeStatus(1));
  EditHeader(&f, [](Header* h) { h->flags = kFlagReply; });  // a request marked as reply
  EXPECT_EQ(MustFail(f), ErrorCode::kMalformed);
  f = ToFrames(EncodeStatus(1));
  EditHeader(&f, [](Header* h) { h->reserved = 1; });
  EXPECT_EQ(MustFail(f), ErrorCode::kMalformed);
}

TEST(WireMalformed, FrameCountAndLengthMismatch) {
  Frames f = ValidPages();
  f.pop_back();
  EXPECT_EQ(MustFail(f), ErrorCode::kLengthMismatch);
  f = ValidPages();
  f.push_back("extra");
  EXPECT_EQ(MustFail(f), ErrorCode::kLengthMismatch);
  f = ValidPages();
  f[2].pop_back();  // payload_bytes no longer matches
  EXPECT_EQ(MustFail(f), ErrorCode::kLengthMismatch);
  f = ValidPages();
  EditHeader(&f, [](Header* h) { h->payload_frames = 3; });
  EXPECT_EQ(MustFail(f), ErrorCode::kLengthMismatch);
}

TEST(WireMalformed, OversizedPayloadDeclared) {
  Frames f = ValidPages();
  EditHeader(&f, [](Header* h) { h->payload_bytes = kMaxMessageBytes + 1; });
  EXPECT_EQ(MustFail(f), ErrorCode::kOversized);
}

TEST(WireMalformed, PagesBodyVariants) {
  // Data frame shorter than the pages listed (header kept consistent).
  Frames f = ValidPages();
  f[2].resize(kPageSize);
  EditHeader(&f, [](Header* h) { h->payload_bytes -= kPageSize; });
  EXPECT_EQ(MustFail(f), ErrorCode::kLengthMismatch);
  // Count says more than the refs present.
  f = ValidPages();
  f[1][0] = 3;
  EXPECT_EQ(MustFail(f), ErrorCode::kLengthMismatch);
  // Count zero, and count over the bound.
  f = ValidPages();
  std::memset(f[1].data(), 0, 4);
  EXPECT_EQ(MustFail(f), ErrorCode::kMalformed);
  f = ValidPages();
  uint32_t huge = kMaxPagesPerMessage + 1;
  std::memcpy(f[1].data(), &huge, 4);
  EXPECT_EQ(MustFail(f), ErrorCode::kOversized);
  // Pages out of order.
  f = ValidPages();
  std::swap(f[1][8], f[1][8 + 16]);
  EXPECT_EQ(MustFail(f), ErrorCode::kMalformed);
  // Epoch 0.
  f = ValidPages();
  EditHeader(&f, [](Header* h) { h->epoch = 0; });
  EXPECT_EQ(MustFail(f), ErrorCode::kMalformed);
  // Body shorter than its fixed part.
  f = ValidPages();
  size_t cut = f[1].size() - 4;
  f[1].resize(4);
  EditHeader(&f, [cut](Header* h) { h->payload_bytes -= cut; });
  EXPECT_EQ(MustFail(f), ErrorCode::kTruncated);
}

TEST(WireMalformed, HelloVariants) {
  Frames f = ToFrames(EncodeHello(1, "orders"));
  EditHeader(&f, [](Header* h) { h->heap_id ^= 1; });
  EXPECT_EQ(MustFail(f), ErrorCode::kMalformed);  // id is not the name's hash
  f = ToFrames(EncodeHello(1, "orders"));
  f[1][0] = 5;  // name length disagrees with the frame
  EXPECT_EQ(MustFail(f), ErrorCode::kLengthMismatch);
}

TEST(WireMalformed, CommitVariants) {
  auto commit = [](CommitBody c, std::vector<pheap::Run> runs = {}) {
    return ToFrames(EncodeCommit(1, 99, 1, kWho, 1, c, runs));
  };
  const CommitBody ok{0x300000000000, 1 << 20, 10, 2, 0, 0};
  Message m;
  Frames good = commit(ok);
  MustDecode(good, &m);
  CommitBody c = ok;
  c.base += 1;
  EXPECT_EQ(MustFail(commit(c)), ErrorCode::kMalformed);
  c = ok;
  c.size = 0;
  EXPECT_EQ(MustFail(commit(c)), ErrorCode::kMalformed);
  c = ok;
  c.hwm = 257;  // region has 256 pages
  EXPECT_EQ(MustFail(commit(c)), ErrorCode::kMalformed);
  c = ok;
  c.total_pages = 11;  // more than hwm
  EXPECT_EQ(MustFail(commit(c)), ErrorCode::kMalformed);
  EXPECT_EQ(MustFail(commit(ok, {{250, 10}})), ErrorCode::kMalformed);  // run past the region
  Frames f = commit(ok, {{1, 1}});
  f[1][32] = 2;  // discarded_count says 2 runs, one is there
  EXPECT_EQ(MustFail(f), ErrorCode::kLengthMismatch);
}

TEST(WireMalformed, FetchVariants) {
  EXPECT_EQ(MustFail(ToFrames(EncodeFetch(1, 99, 0, 0, 0))), ErrorCode::kMalformed);
  EXPECT_EQ(MustFail(ToFrames(EncodeFetch(1, 99, 0, 0, kMaxFetchPages + 1))), ErrorCode::kOversized);
  EXPECT_EQ(MustFail(ToFrames(EncodeFetch(1, 99, 0, ~uint64_t{0} - 2, 8))), ErrorCode::kMalformed);
}

TEST(WireMalformed, FetchReplyBitmapMustMatchCount) {
  std::vector<uint64_t> present = {0x3};
  auto data = MakePages({0, 1}, 1);
  std::vector<uint64_t> sums = {1, 2};
  Frames f = ToFrames(EncodeFetchReply({1, 99}, 1, 1, 1, 0, 8, present, sums, data.data()));
  Message m;
  MustDecode(f, &m);
  const size_t bitmap = sizeof(FetchReplyBody);
  f[1][bitmap] = 0x7;  // three bits set, present_count says two
  EXPECT_EQ(MustFail(f), ErrorCode::kMalformed);
  f[1][bitmap] = 0x3;
  f[1][bitmap + 1] = 0x1;  // bit 8 lies past count 8
  EXPECT_EQ(MustFail(f), ErrorCode::kMalformed);
}

TEST(WireMalformed, ErrorAndStatusReplyVariants) {
  Frames f = ToFrames(EncodeError({1, 0}, 0, 0, ErrorCode::kBusy, 0, "x"));
  f[1][0] = 0;  // code 0
  EXPECT_EQ(MustFail(f), ErrorCode::kMalformed);
  std::vector<HeapStatusEntry> heaps(1);
  heaps[0].name = "abc";
  f = ToFrames(EncodeStatusReply({1, 0}, 0, 0, heaps));
  f[1][0] = 2;  // claims a second heap entry that is not there
  EXPECT_EQ(MustFail(f), ErrorCode::kTruncated);
}

// Every truncation of every frame of a valid message fails cleanly.
TEST(WireMalformed, EveryTruncationIsRejected) {
  std::vector<Frames> all = {
      ValidPages(), ToFrames(EncodeHello(1, "h")),
      ToFrames(EncodeCommit(1, 99, 1, kWho, 1, CommitBody{0, 1 << 20, 1, 1, 0, 0}, std::vector<pheap::Run>{{0, 1}}))};
  for (const Frames& good : all) {
    for (size_t fi = 0; fi < good.size(); ++fi) {
      for (size_t len = 0; len < good[fi].size(); len += (len < 128 ? 1 : 997)) {
        Frames f = good;
        f[fi].resize(len);
        Message m;
        ErrorCode code{};
        EXPECT_FALSE(DecodeFrames(f, &m, &code).ok()) << "frame " << fi << " cut to " << len;
        EXPECT_NE(static_cast<int>(code), 0);
      }
    }
  }
}

}  // namespace
}  // namespace pheap::wire
