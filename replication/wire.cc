#include "replication/wire.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <bit>
#include <cstring>

#include "base/page_hash.h"

namespace pheap::wire {
namespace {

// What each type looks like on the wire: payload frames, the fixed part of
// its body, and whether it is a reply.
struct Layout {
  uint8_t frames;
  uint32_t fixed;
  bool reply;
  bool fenced = false;  // fenced by the writer's term: names its claimant
};
constexpr Layout kLayouts[kMaxType + 1] = {
    {0, 0, false},                                // 0: not a type
    {1, sizeof(HelloBody), false},                // kHello
    {1, sizeof(ManifestBody), true},              // kManifest
    {1, sizeof(ClaimBody), false},                // kClaimTerm
    {1, sizeof(TermReplyBody), true},             // kTermReply
    {2, sizeof(PagesBody), false, true},          // kPages
    {1, sizeof(PagesAckBody), true},              // kPagesAck
    {1, sizeof(CommitBody), false, true},         // kCommit
    {1, sizeof(CommitAckBody), true},             // kCommitAck
    {1, sizeof(FetchBody), false},                // kFetch
    {2, sizeof(FetchReplyBody), true},            // kFetchReply
    {0, 0, false},                                // kStatus
    {1, sizeof(StatusReplyBody), true},           // kStatusReply
    {1, sizeof(ErrorBody), true},                 // kError
    {1, sizeof(InstallBeginBody), false, true},   // kInstallBegin
    {2, sizeof(InstallPagesBody), false, true},   // kInstallPages
    {1, sizeof(InstallCommitBody), false, true},  // kInstallCommit
    {1, sizeof(InstallAckBody), true},            // kInstallAck
    {2, sizeof(PagesBody), false},                // kRepair
    {1, sizeof(RepairAckBody), true},             // kRepairAck
    {0, 0, false, true},                          // kDrop
    {0, 0, true},                                 // kDropAck
};

constexpr const char* kTypeNames[kMaxType + 1] = {"?",
                                                  "HELLO",
                                                  "MANIFEST",
                                                  "CLAIM_TERM",
                                                  "TERM_REPLY",
                                                  "PAGES",
                                                  "PAGES_ACK",
                                                  "COMMIT",
                                                  "COMMIT_ACK",
                                                  "FETCH",
                                                  "FETCH_REPLY",
                                                  "STATUS",
                                                  "STATUS_REPLY",
                                                  "ERROR",
                                                  "INSTALL_BEGIN",
                                                  "INSTALL_PAGES",
                                                  "INSTALL_COMMIT",
                                                  "INSTALL_ACK",
                                                  "REPAIR",
                                                  "REPAIR_ACK",
                                                  "DROP",
                                                  "DROP_ACK"};
constexpr const char* kErrorNames[kMaxErrorCode + 1] = {"?",
                                                        "BAD_MAGIC",
                                                        "BAD_VERSION",
                                                        "BAD_CHECKSUM",
                                                        "TRUNCATED",
                                                        "LENGTH_MISMATCH",
                                                        "UNKNOWN_TYPE",
                                                        "OVERSIZED",
                                                        "MALFORMED",
                                                        "UNKNOWN_HEAP",
                                                        "SUPERSEDED",
                                                        "EPOCH_GAP",
                                                        "MISSING_PAGES",
                                                        "PAGE_CHECKSUM",
                                                        "CORRUPT_PAGE",
                                                        "EPOCH_MISMATCH",
                                                        "INBOX_FULL",
                                                        "STORE_ERROR",
                                                        "BUSY",
                                                        "NO_INSTALL",
                                                        "DIVERGED"};

constexpr uint64_t kMaxRegionPages = kMaxRegionSize / kPageSize;

uint64_t HeaderChecksum(const Header& h) { return XXH3_64bits(&h, offsetof(Header, checksum)); }

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <typename T>
void Append(std::vector<uint8_t>* out, const T& v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out->insert(out->end(), p, p + sizeof(T));
}

void AppendBytes(std::vector<uint8_t>* out, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  out->insert(out->end(), b, b + n);
}

// Appends a PageRef (with the page's XXH3) per page and points the data
// frame at `data`.
void AppendPageRefs(OutMessage* m, std::span<const Pgno> pgnos, const uint8_t* data) {
  m->body.reserve(m->body.size() + pgnos.size() * sizeof(PageRef));
  for (size_t i = 0; i < pgnos.size(); ++i)
    Append(&m->body, PageRef{pgnos[i], PageHash(data + i * kPageSize)});
  m->data = data;
  m->data_bytes = pgnos.size() * kPageSize;
}

// Fills and seals the header once body and data are in place; `claimant`
// for fenced requests only.
OutMessage Seal(OutMessage m, Type type, uint64_t request_id, HeapId heap, Term term, Epoch epoch,
                const uint64_t* claimant = nullptr) {
  const Layout& l = kLayouts[static_cast<uint8_t>(type)];
  Header& h = m.header;
  h.magic = kMagic;
  h.version = kVersion;
  h.type = static_cast<uint8_t>(type);
  h.flags = l.reply ? kFlagReply : 0;
  h.request_id = request_id;
  h.heap_id = heap;
  h.term = term;
  h.epoch = epoch;
  h.payload_bytes = m.body.size() + m.data_bytes;
  h.payload_frames = l.frames;
  h.reserved = 0;
  h.claimant[0] = claimant != nullptr ? claimant[0] : 0;
  h.claimant[1] = claimant != nullptr ? claimant[1] : 0;
  h.checksum = HeaderChecksum(h);
  return m;
}

template <typename Body>
OutMessage WithBody(const Body& b) {
  OutMessage m;
  m.body.reserve(sizeof(Body));
  Append(&m.body, b);
  return m;
}

// A failed decode: the Status for the caller, the code for the wire.
Status Fail(ErrorCode* code, ErrorCode c, std::string what) {
  *code = c;
  return Status::InvalidArgument(fmt::format("{}: {}", ErrorCodeName(static_cast<uint16_t>(c)), what));
}

// Why `what`'s region [base, base + size) with `hwm` cannot be a heap's
// (the field it names first), or an empty string.
std::string RegionProblem(const Header& h, uint64_t base, uint64_t size, uint64_t hwm) {
  const char* what = TypeName(h.type);
  if (base % kPageSize != 0 || size % kPageSize != 0)
    return fmt::format("{} region base {:#x} size {:#x} is not page aligned", what, base, size);
  if (size < kMinRegionSize || size > kMaxRegionSize)
    return fmt::format("{} region size {:#x} is outside [{:#x}, {:#x}]: no heap has that size", what, size,
                       kMinRegionSize, kMaxRegionSize);
  if (base < kMinRegionBase || base > kUserAddressLimit - size)
    return fmt::format("{} region base {:#x} size {:#x} lies outside the user address space [{:#x}, {:#x})", what,
                       base, size, kMinRegionBase, kUserAddressLimit);
  if (hwm > size / kPageSize)
    return fmt::format("{} hwm {} lies beyond the region's {} pages", what, hwm, size / kPageSize);
  return {};
}

// A request's terms and epochs: one at or above the limit could never be
// exceeded, and its successor would wrap.
Status CheckTermEpoch(const Header& h, std::string_view field, uint64_t v, uint64_t limit, ErrorCode* code) {
  if (v <= limit) return Status::Ok();
  return Fail(code, ErrorCode::kMalformed,
              fmt::format("{} {} {} exceeds the limit {} (docs/wire-protocol.md, Limits)", TypeName(h.type), field, v, limit));
}

Status DecodeRuns(const uint8_t* p, uint32_t n, std::vector<Run>* out) {
  out->resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    RunRef r = Load<RunRef>(p + uint64_t{i} * sizeof(RunRef));
    (*out)[i] = Run{r.first, r.count};
  }
  return Status::Ok();
}

using Frames = std::span<const std::span<const uint8_t>>;

// A list of `count` PageRef at `refs` with its data frame: pages strictly
// ascending, inside any region, and data for each.
Status DecodePageList(const Header& h, uint32_t count, const uint8_t* refs, std::span<const uint8_t> data, Pages* out,
                      ErrorCode* code) {
  if (count > kMaxPagesPerMessage)
    return Fail(code, ErrorCode::kOversized, fmt::format("{} of {} pages (at most {} per message)", TypeName(h.type), count, kMaxPagesPerMessage));
  if (data.size() != uint64_t{count} * kPageSize)
    return Fail(code, ErrorCode::kLengthMismatch, fmt::format("{} lists {} pages but its data frame holds {} bytes", TypeName(h.type), count, data.size()));
  *out = Pages{count, refs, data.data()};
  for (uint32_t i = 0; i < count; ++i) {
    Pgno pg = out->ref(i).pgno;
    if (pg >= kMaxRegionPages || (i > 0 && pg <= out->ref(i - 1).pgno))
      return Fail(code, ErrorCode::kMalformed, fmt::format("{} entry {}: page {} is out of order or beyond any region", TypeName(h.type), i, pg));
  }
  return Status::Ok();
}

Status CheckRuns(const Header& h, const std::vector<Run>& runs, uint64_t pages, ErrorCode* code) {
  for (const Run& r : runs)
    if (r.count == 0 || r.first > pages || r.count > pages - r.first)
      return Fail(code, ErrorCode::kMalformed, fmt::format("{} run {}+{} lies outside the region", TypeName(h.type), r.first, r.count));
  return Status::Ok();
}

Status DecodeBody(const Header& h, Frames frames, Message* out, ErrorCode* code) {
  const Type type = static_cast<Type>(h.type);
  const Layout& l = kLayouts[h.type];
  if (l.frames == 0) {
    out->body = std::monostate{};
    return Status::Ok();
  }
  std::span<const uint8_t> body = frames[1];
  if (body.size() < l.fixed)
    return Fail(code, ErrorCode::kTruncated, fmt::format("{} body is {} bytes, its fixed part alone is {}", TypeName(h.type), body.size(), l.fixed));
  const uint8_t* p = body.data();
  const uint64_t rest = body.size() - l.fixed;  // bytes after the fixed part
  auto exact = [&](uint64_t want) -> Status {
    if (rest == want) return Status::Ok();
    return Fail(code, ErrorCode::kLengthMismatch,
                fmt::format("{} body has {} bytes after its fixed part, its fields say {}", TypeName(h.type), rest, want));
  };
  switch (type) {
    case Type::kHello: {
      auto b = Load<HelloBody>(p);
      PHEAP_RETURN_IF_ERROR(exact(b.name_length));
      if (b.reserved != 0) return Fail(code, ErrorCode::kMalformed, "HELLO reserved field is not zero");
      if (b.name_length == 0 || b.name_length > kMaxHeapNameLength)
        return Fail(code, ErrorCode::kMalformed, fmt::format("heap name of {} bytes (1..{} allowed)", b.name_length, kMaxHeapNameLength));
      Hello hello{std::string_view(reinterpret_cast<const char*>(p + l.fixed), b.name_length)};
      if (XXH3_64bits(hello.name.data(), hello.name.size()) != h.heap_id)
        return Fail(code, ErrorCode::kMalformed, fmt::format("heap id {:016x} is not the XXH3-64 of the heap name", h.heap_id));
      out->body = hello;
      return Status::Ok();
    }
    case Type::kManifest: {
      PHEAP_RETURN_IF_ERROR(exact(0));
      out->body = Load<ManifestBody>(p);
      return Status::Ok();
    }
    case Type::kClaimTerm: {
      PHEAP_RETURN_IF_ERROR(exact(0));
      if (h.term == 0) return Fail(code, ErrorCode::kMalformed, "CLAIM_TERM of term 0: terms start at 1");
      auto b = Load<ClaimBody>(p);
      out->body = ClaimTerm{{b.claimant[0], b.claimant[1]}};
      return Status::Ok();
    }
    case Type::kTermReply: {
      PHEAP_RETURN_IF_ERROR(exact(0));
      auto b = Load<TermReplyBody>(p);
      if (b.granted > 1 || b.reserved != 0) return Fail(code, ErrorCode::kMalformed, "TERM_REPLY granted is not 0 or 1");
      out->body = b;
      return Status::Ok();
    }
    case Type::kPages:
    case Type::kRepair: {
      auto b = Load<PagesBody>(p);
      if (b.count == 0 || b.reserved != 0)
        return Fail(code, ErrorCode::kMalformed, fmt::format("{} with no pages or a nonzero reserved field", TypeName(h.type)));
      if (b.count <= kMaxPagesPerMessage) PHEAP_RETURN_IF_ERROR(exact(uint64_t{b.count} * sizeof(PageRef)));
      Pages pages;
      PHEAP_RETURN_IF_ERROR(DecodePageList(h, b.count, p + l.fixed, frames[2], &pages, code));
      if (type == Type::kPages && (h.epoch == 0 || h.term == 0)) return Fail(code, ErrorCode::kMalformed, "PAGES for epoch 0 or term 0");
      out->body = pages;
      return Status::Ok();
    }
    case Type::kInstallBegin: {
      PHEAP_RETURN_IF_ERROR(exact(0));
      auto b = Load<InstallBeginBody>(p);
      if (h.epoch == 0 || h.term == 0) return Fail(code, ErrorCode::kMalformed, "INSTALL_BEGIN from epoch 0 or term 0");
      if (b.image_term == 0)
        return Fail(
            code, ErrorCode::kMalformed,
            fmt::format("INSTALL_BEGIN from epoch {} with image_term 0: an image is named by the term that wrote it",
                        h.epoch));
      PHEAP_RETURN_IF_ERROR(CheckTermEpoch(h, "image_term", b.image_term, kMaxTerm, code));
      if (std::string why = RegionProblem(h, b.base, b.size, 0); !why.empty())
        return Fail(code, ErrorCode::kMalformed, why);
      out->body = b;
      return Status::Ok();
    }
    case Type::kInstallPages: {
      auto b = Load<InstallPagesBody>(p);
      if (h.epoch == 0 || h.term == 0) return Fail(code, ErrorCode::kMalformed, "INSTALL_PAGES labelled epoch 0 or term 0");
      if (b.count > kMaxPagesPerMessage)
        return Fail(code, ErrorCode::kOversized, fmt::format("INSTALL_PAGES of {} pages (at most {} per message)", b.count, kMaxPagesPerMessage));
      PHEAP_RETURN_IF_ERROR(exact(uint64_t{b.count} * sizeof(PageRef) + uint64_t{b.discarded_count} * sizeof(RunRef)));
      InstallPages ip;
      PHEAP_RETURN_IF_ERROR(DecodePageList(h, b.count, p + l.fixed, frames[2], &ip.pages, code));
      PHEAP_RETURN_IF_ERROR(DecodeRuns(p + l.fixed + uint64_t{b.count} * sizeof(PageRef), b.discarded_count, &ip.discarded));
      PHEAP_RETURN_IF_ERROR(CheckRuns(h, ip.discarded, kMaxRegionPages, code));
      out->body = std::move(ip);
      return Status::Ok();
    }
    case Type::kInstallCommit: {
      PHEAP_RETURN_IF_ERROR(exact(0));
      auto b = Load<InstallCommitBody>(p);
      if (h.epoch == 0 || h.term == 0)
        return Fail(code, ErrorCode::kMalformed,
                    fmt::format("INSTALL_COMMIT of epoch {} in term {}: neither may be 0", h.epoch, h.term));
      if (b.image_term == 0)
        return Fail(
            code, ErrorCode::kMalformed,
            fmt::format("INSTALL_COMMIT of epoch {} with image_term 0: an image is named by the term that wrote it",
                        h.epoch));
      PHEAP_RETURN_IF_ERROR(CheckTermEpoch(h, "image_term", b.image_term, kMaxTerm, code));
      if (std::string why = RegionProblem(h, b.base, b.size, b.hwm); !why.empty())
        return Fail(code, ErrorCode::kMalformed, why);
      out->body = b;
      return Status::Ok();
    }
    case Type::kInstallAck: {
      PHEAP_RETURN_IF_ERROR(exact(0));
      out->body = Load<InstallAckBody>(p);
      return Status::Ok();
    }
    case Type::kRepairAck: {
      PHEAP_RETURN_IF_ERROR(exact(0));
      out->body = Load<RepairAckBody>(p);
      return Status::Ok();
    }
    case Type::kPagesAck: {
      PHEAP_RETURN_IF_ERROR(exact(0));
      out->body = Load<PagesAckBody>(p);
      return Status::Ok();
    }
    case Type::kCommit: {
      Commit c{Load<CommitBody>(p), {}};
      const CommitBody& b = c.body;
      PHEAP_RETURN_IF_ERROR(exact(uint64_t{b.discarded_count} * sizeof(RunRef)));
      if (h.epoch == 0 || h.term == 0 || b.reserved != 0) return Fail(code, ErrorCode::kMalformed, "COMMIT of epoch 0 or term 0, or a nonzero reserved field");
      PHEAP_RETURN_IF_ERROR(CheckTermEpoch(h, "prev_term", b.prev_term, kMaxTerm, code));
      if (std::string why = RegionProblem(h, b.base, b.size, b.hwm); !why.empty())
        return Fail(code, ErrorCode::kMalformed, why);
      const uint64_t pages = b.size / kPageSize;
      if (b.total_pages > b.hwm)
        return Fail(code, ErrorCode::kMalformed, fmt::format("COMMIT total_pages {} exceeds its hwm {}", b.total_pages, b.hwm));
      PHEAP_RETURN_IF_ERROR(DecodeRuns(p + l.fixed, b.discarded_count, &c.discarded));
      PHEAP_RETURN_IF_ERROR(CheckRuns(h, c.discarded, pages, code));
      out->body = std::move(c);
      return Status::Ok();
    }
    case Type::kCommitAck: {
      PHEAP_RETURN_IF_ERROR(exact(0));
      out->body = Load<CommitAckBody>(p);
      return Status::Ok();
    }
    case Type::kFetch: {
      PHEAP_RETURN_IF_ERROR(exact(0));
      auto b = Load<FetchBody>(p);
      if (b.count == 0 || b.reserved != 0) return Fail(code, ErrorCode::kMalformed, "FETCH of no pages or a nonzero reserved field");
      if (b.count > kMaxFetchPages)
        return Fail(code, ErrorCode::kOversized, fmt::format("FETCH of {} pages (at most {})", b.count, kMaxFetchPages));
      if (b.first >= kMaxRegionPages || b.count > kMaxRegionPages - b.first)
        return Fail(code, ErrorCode::kMalformed, fmt::format("FETCH run {}+{} lies beyond any region", b.first, b.count));
      out->body = Fetch{b.first, b.count};
      return Status::Ok();
    }
    case Type::kFetchReply: {
      auto b = Load<FetchReplyBody>(p);
      if (b.count == 0 || b.count > kMaxFetchPages || b.present_count > b.count)
        return Fail(code, ErrorCode::kMalformed, fmt::format("FETCH_REPLY of {} pages, {} present", b.count, b.present_count));
      const uint64_t words = (uint64_t{b.count} + 63) / 64;
      PHEAP_RETURN_IF_ERROR(exact(words * 8 + uint64_t{b.present_count} * 8));
      if (frames[2].size() != uint64_t{b.present_count} * kPageSize)
        return Fail(code, ErrorCode::kLengthMismatch, fmt::format("FETCH_REPLY has {} present pages but {} data bytes", b.present_count, frames[2].size()));
      FetchReply r{b.first, b.count, b.present_count, b.image_term, p + l.fixed, p + l.fixed + words * 8,
                   frames[2].data()};
      uint64_t bits = 0;
      for (uint64_t w = 0; w < words; ++w) {
        uint64_t word = Load<uint64_t>(r.bitmap + w * 8);
        if (w == words - 1 && b.count % 64 != 0 && (word >> (b.count % 64)) != 0)
          return Fail(code, ErrorCode::kMalformed, "FETCH_REPLY bitmap has bits past its count");
        bits += static_cast<uint64_t>(std::popcount(word));
      }
      if (bits != b.present_count)
        return Fail(code, ErrorCode::kMalformed, fmt::format("FETCH_REPLY bitmap marks {} pages, present_count says {}", bits, b.present_count));
      out->body = r;
      return Status::Ok();
    }
    case Type::kStatusReply: {
      StatusReply r{Load<StatusReplyBody>(p), {}};
      uint64_t at = l.fixed;
      for (uint32_t i = 0; i < r.body.heap_count; ++i) {
        if (body.size() - at < sizeof(HeapStatus))
          return Fail(code, ErrorCode::kTruncated, fmt::format("STATUS_REPLY ends inside heap entry {} of {}", i, r.body.heap_count));
        HeapStatusEntry e{Load<HeapStatus>(p + at), {}};
        at += sizeof(HeapStatus);
        if (e.status.name_length > kMaxHeapNameLength || body.size() - at < e.status.name_length)
          return Fail(code, ErrorCode::kMalformed, fmt::format("STATUS_REPLY heap entry {}: bad name length {}", i, e.status.name_length));
        e.name.assign(reinterpret_cast<const char*>(p + at), e.status.name_length);
        at += e.status.name_length;
        if (e.status.error_length > kMaxErrorMessage || body.size() - at < e.status.error_length)
          return Fail(code, ErrorCode::kMalformed, fmt::format("STATUS_REPLY heap entry {}: bad error length {}", i, e.status.error_length));
        e.error.assign(reinterpret_cast<const char*>(p + at), e.status.error_length);
        at += e.status.error_length;
        r.heaps.push_back(std::move(e));
      }
      if (at != body.size()) return Fail(code, ErrorCode::kLengthMismatch, "STATUS_REPLY has bytes after its last heap entry");
      out->body = std::move(r);
      return Status::Ok();
    }
    case Type::kError: {
      auto b = Load<ErrorBody>(p);
      if (b.code == 0 || b.code > kMaxErrorCode || b.reserved != 0 || b.reserved2 != 0)
        return Fail(code, ErrorCode::kMalformed, fmt::format("ERROR with unknown code {}", b.code));
      if (b.message_length > kMaxErrorMessage || b.run_count > kMaxErrorRuns)
        return Fail(code, ErrorCode::kOversized, fmt::format("ERROR message of {} bytes / {} runs", b.message_length, b.run_count));
      PHEAP_RETURN_IF_ERROR(exact(uint64_t{b.message_length} + uint64_t{b.run_count} * sizeof(RunRef)));
      Error e{static_cast<ErrorCode>(b.code), b.detail,
              std::string_view(reinterpret_cast<const char*>(p + l.fixed), b.message_length), {}};
      PHEAP_RETURN_IF_ERROR(DecodeRuns(p + l.fixed + b.message_length, b.run_count, &e.runs));
      out->body = std::move(e);
      return Status::Ok();
    }
    case Type::kStatus:
    case Type::kDrop:
    case Type::kDropAck: break;
  }
  return Fail(code, ErrorCode::kUnknownType, fmt::format("type {}", h.type));
}

}  // namespace

const char* TypeName(uint8_t type) { return type <= kMaxType ? kTypeNames[type] : "?"; }
const char* ErrorCodeName(uint16_t code) { return code <= kMaxErrorCode ? kErrorNames[code] : "?"; }
bool IsRequest(Type t) {
  auto v = static_cast<uint8_t>(t);
  return v >= 1 && v <= kMaxType && !kLayouts[v].reply;
}
bool IsFenced(Type t) {
  auto v = static_cast<uint8_t>(t);
  return v >= 1 && v <= kMaxType && kLayouts[v].fenced;
}

PageRef Pages::ref(uint32_t i) const { return Load<PageRef>(refs + uint64_t{i} * sizeof(PageRef)); }
bool FetchReply::present(uint32_t i) const { return (Load<uint64_t>(bitmap + (i / 64) * 8) >> (i % 64)) & 1; }
uint64_t FetchReply::checksum(uint32_t k) const { return Load<uint64_t>(checksums + uint64_t{k} * 8); }

// ---- encoding ----

OutMessage EncodeHello(uint64_t request_id, std::string_view heap_name) {
  OutMessage m = WithBody(HelloBody{static_cast<uint32_t>(heap_name.size()), 0});
  AppendBytes(&m.body, heap_name.data(), heap_name.size());
  return Seal(std::move(m), Type::kHello, request_id, XXH3_64bits(heap_name.data(), heap_name.size()), 0, 0);
}

OutMessage EncodeManifest(ReplyTo to, const ManifestBody& b) {
  return Seal(WithBody(b), Type::kManifest, to.request_id, to.heap_id, b.promised_term, b.epoch);
}

OutMessage EncodeClaimTerm(uint64_t request_id, HeapId heap, Term term, const uint64_t claimant[2]) {
  return Seal(WithBody(ClaimBody{{claimant[0], claimant[1]}}), Type::kClaimTerm, request_id, heap, term, 0);
}

OutMessage EncodeTermReply(ReplyTo to, const TermReplyBody& b) {
  return Seal(WithBody(b), Type::kTermReply, to.request_id, to.heap_id, b.promised_term, b.durable_epoch);
}

OutMessage EncodePages(uint64_t request_id, HeapId heap, Term term, const uint64_t claimant[2], Epoch epoch,
                       std::span<const Pgno> pgnos, const uint8_t* data) {
  OutMessage m = WithBody(PagesBody{static_cast<uint32_t>(pgnos.size()), 0});
  AppendPageRefs(&m, pgnos, data);
  return Seal(std::move(m), Type::kPages, request_id, heap, term, epoch, claimant);
}

OutMessage EncodePagesAck(ReplyTo to, Epoch epoch, Term promised, uint32_t accepted, uint64_t inbox_pages) {
  return Seal(WithBody(PagesAckBody{accepted, 0, inbox_pages}), Type::kPagesAck, to.request_id, to.heap_id, promised,
              epoch);
}

OutMessage EncodeCommit(uint64_t request_id, HeapId heap, Term term, const uint64_t claimant[2], Epoch epoch,
                        const CommitBody& c, std::span<const Run> discarded) {
  CommitBody b = c;
  b.discarded_count = static_cast<uint32_t>(discarded.size());
  b.reserved = 0;
  OutMessage m = WithBody(b);
  for (const Run& r : discarded) Append(&m.body, RunRef{r.first, r.count});
  return Seal(std::move(m), Type::kCommit, request_id, heap, term, epoch, claimant);
}

OutMessage EncodeCommitAck(ReplyTo to, Term promised, Epoch durable, Term image_term) {
  return Seal(WithBody(CommitAckBody{durable, image_term}), Type::kCommitAck, to.request_id, to.heap_id, promised, durable);
}

OutMessage EncodeFetch(uint64_t request_id, HeapId heap, Epoch epoch, Pgno first, uint32_t count) {
  return Seal(WithBody(FetchBody{first, count, 0}), Type::kFetch, request_id, heap, 0, epoch);
}

OutMessage EncodeFetchReply(ReplyTo to, Term promised, Epoch durable, Term image_term, Pgno first, uint32_t count,
                            std::span<const uint64_t> present, std::span<const uint64_t> checksums,
                            const uint8_t* data) {
  const auto n = static_cast<uint32_t>(checksums.size());
  OutMessage m = WithBody(FetchReplyBody{first, count, n, image_term});
  AppendBytes(&m.body, present.data(), present.size_bytes());
  AppendBytes(&m.body, checksums.data(), checksums.size_bytes());
  m.data = data;
  m.data_bytes = uint64_t{n} * kPageSize;
  return Seal(std::move(m), Type::kFetchReply, to.request_id, to.heap_id, promised, durable);
}

OutMessage EncodeInstallBegin(uint64_t request_id, HeapId heap, Term term, const uint64_t claimant[2], Epoch from,
                              const InstallBeginBody& b) {
  return Seal(WithBody(b), Type::kInstallBegin, request_id, heap, term, from, claimant);
}

OutMessage EncodeInstallPages(uint64_t request_id, HeapId heap, Term term, const uint64_t claimant[2], Epoch label,
                              std::span<const Pgno> pgnos, const uint8_t* data, std::span<const Run> discarded) {
  const auto n = static_cast<uint32_t>(pgnos.size());
  OutMessage m = WithBody(InstallPagesBody{n, static_cast<uint32_t>(discarded.size())});
  AppendPageRefs(&m, pgnos, data);
  for (const Run& r : discarded) Append(&m.body, RunRef{r.first, r.count});
  return Seal(std::move(m), Type::kInstallPages, request_id, heap, term, label, claimant);
}

OutMessage EncodeInstallCommit(uint64_t request_id, HeapId heap, Term term, const uint64_t claimant[2], Epoch epoch,
                               const InstallCommitBody& b) {
  return Seal(WithBody(b), Type::kInstallCommit, request_id, heap, term, epoch, claimant);
}

OutMessage EncodeInstallAck(ReplyTo to, Term promised, const InstallAckBody& b) {
  return Seal(WithBody(b), Type::kInstallAck, to.request_id, to.heap_id, promised, b.durable_epoch);
}

OutMessage EncodeRepair(uint64_t request_id, HeapId heap, Epoch epoch, std::span<const Pgno> pgnos, const uint8_t* data) {
  OutMessage m = WithBody(PagesBody{static_cast<uint32_t>(pgnos.size()), 0});
  AppendPageRefs(&m, pgnos, data);
  return Seal(std::move(m), Type::kRepair, request_id, heap, 0, epoch);
}

OutMessage EncodeRepairAck(ReplyTo to, Term promised, Epoch durable, const RepairAckBody& b) {
  return Seal(WithBody(b), Type::kRepairAck, to.request_id, to.heap_id, promised, durable);
}

OutMessage EncodeDrop(uint64_t request_id, HeapId heap, Term term, const uint64_t claimant[2]) {
  return Seal(OutMessage{}, Type::kDrop, request_id, heap, term, 0, claimant);
}

OutMessage EncodeDropAck(ReplyTo to, Term promised) {
  return Seal(OutMessage{}, Type::kDropAck, to.request_id, to.heap_id, promised, 0);
}

OutMessage EncodeStatus(uint64_t request_id) { return Seal(OutMessage{}, Type::kStatus, request_id, 0, 0, 0); }

OutMessage EncodeStatusReply(ReplyTo to, uint32_t clients, uint64_t uptime_ms, std::span<const HeapStatusEntry> heaps) {
  OutMessage m = WithBody(StatusReplyBody{static_cast<uint32_t>(heaps.size()), clients, uptime_ms});
  for (const HeapStatusEntry& e : heaps) {
    HeapStatus s = e.status;
    const std::string_view error = std::string_view(e.error).substr(0, kMaxErrorMessage);
    s.name_length = static_cast<uint32_t>(e.name.size());
    s.error_length = static_cast<uint32_t>(error.size());
    Append(&m.body, s);
    AppendBytes(&m.body, e.name.data(), e.name.size());
    AppendBytes(&m.body, error.data(), error.size());
  }
  return Seal(std::move(m), Type::kStatusReply, to.request_id, to.heap_id, 0, 0);
}

OutMessage EncodeError(ReplyTo to, Term promised, Epoch epoch, ErrorCode code, uint64_t detail, std::string_view message,
                       std::span<const Run> runs) {
  message = message.substr(0, kMaxErrorMessage);
  runs = runs.first(std::min<size_t>(runs.size(), kMaxErrorRuns));
  OutMessage m = WithBody(ErrorBody{static_cast<uint16_t>(code), 0, static_cast<uint32_t>(message.size()), detail,
                                    static_cast<uint32_t>(runs.size()), 0});
  AppendBytes(&m.body, message.data(), message.size());
  for (const Run& r : runs) Append(&m.body, RunRef{r.first, r.count});
  return Seal(std::move(m), Type::kError, to.request_id, to.heap_id, promised, epoch);
}

// ---- decoding ----

Status DecodeHeader(std::span<const uint8_t> frame, Header* out, ErrorCode* code) {
  if (frame.size() < sizeof(Header))
    return Fail(code, ErrorCode::kTruncated, fmt::format("header frame is {} bytes, a header is {}", frame.size(), sizeof(Header)));
  if (frame.size() > sizeof(Header))
    return Fail(code, ErrorCode::kLengthMismatch, fmt::format("header frame is {} bytes, a header is {}", frame.size(), sizeof(Header)));
  Header h = Load<Header>(frame.data());
  if (h.magic != kMagic) return Fail(code, ErrorCode::kBadMagic, fmt::format("magic {:#010x}, expected {:#010x}", h.magic, kMagic));
  if (h.version != kVersion)
    return Fail(code, ErrorCode::kBadVersion, fmt::format("protocol version {}, this side speaks version {}", h.version, kVersion));
  if (h.checksum != HeaderChecksum(h)) return Fail(code, ErrorCode::kBadChecksum, "header checksum does not match its bytes");
  if (h.type == 0 || h.type > kMaxType)
    return Fail(code, ErrorCode::kUnknownType, fmt::format("message type {} is not defined in version {}", h.type, kVersion));
  const Layout& l = kLayouts[h.type];
  if ((h.flags & ~kFlagReply) != 0 || h.reserved != 0)
    return Fail(code, ErrorCode::kMalformed, fmt::format("header flags {:#04x} / reserved {:#x} set undefined bits", h.flags, h.reserved));
  const bool named = h.claimant[0] != 0 || h.claimant[1] != 0;
  if (named && !l.fenced)
    return Fail(
        code, ErrorCode::kMalformed,
        fmt::format("{} names a claimant: only requests fenced by a writer's term carry one", TypeName(h.type)));
  if (!named && l.fenced)
    return Fail(code, ErrorCode::kMalformed,
                fmt::format("{} names no claimant: it must name the writer that claimed its term", TypeName(h.type)));
  if (((h.flags & kFlagReply) != 0) != l.reply)
    return Fail(code, ErrorCode::kMalformed, fmt::format("{} is a {} but its reply flag says otherwise", TypeName(h.type), l.reply ? "reply" : "request"));
  if (h.payload_bytes > kMaxMessageBytes)
    return Fail(code, ErrorCode::kOversized, fmt::format("payload of {} bytes exceeds the bound of {}", h.payload_bytes, kMaxMessageBytes));
  if (h.payload_frames != l.frames)
    return Fail(code, ErrorCode::kLengthMismatch, fmt::format("{} has {} payload frames, the header says {}", TypeName(h.type), l.frames, h.payload_frames));
  *out = h;
  return Status::Ok();
}

Status Decode(Frames frames, Message* out, ErrorCode* code) {
  if (frames.empty()) return Fail(code, ErrorCode::kTruncated, "message has no frames");
  PHEAP_RETURN_IF_ERROR(DecodeHeader(frames[0], &out->header, code));
  const Header& h = out->header;
  out->type = static_cast<Type>(h.type);
  if (frames.size() - 1 != h.payload_frames)
    return Fail(code, ErrorCode::kLengthMismatch, fmt::format("{} came with {} payload frames, its header says {}", TypeName(h.type), frames.size() - 1, h.payload_frames));
  uint64_t total = 0;
  for (size_t i = 1; i < frames.size(); ++i) total += frames[i].size();
  if (total != h.payload_bytes)
    return Fail(code, ErrorCode::kLengthMismatch, fmt::format("{} payload is {} bytes, its header says {}", TypeName(h.type), total, h.payload_bytes));
  if (!kLayouts[h.type].reply) {
    PHEAP_RETURN_IF_ERROR(CheckTermEpoch(h, "term", h.term, kMaxTerm, code));
    PHEAP_RETURN_IF_ERROR(CheckTermEpoch(h, "epoch", h.epoch, kMaxEpoch, code));
  }
  return DecodeBody(h, frames, out, code);
}

Status VerifyPages(const Pages& p, Pgno* bad_pgno) {
  for (uint32_t i = 0; i < p.count; ++i) {
    PageRef r = p.ref(i);
    uint64_t got = PageHash(p.page(i));
    if (got != r.checksum) {
      *bad_pgno = r.pgno;
      return Status::Corruption(fmt::format("page {} arrived with XXH3 {:016x} but its data hashes to {:016x}; resend it",
                                            r.pgno, r.checksum, got));
    }
  }
  return Status::Ok();
}

}  // namespace pheap::wire
