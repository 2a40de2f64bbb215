// Encoding and decoding of peer protocol messages (format: wire_format.h,
// docs/wire-protocol.md). Nothing here touches a socket: a message is a list
// of frames, so the same code serves the peer, the replica client, tests and
// the fuzzer.
//
// Decode accepts any bytes: it never reads out of bounds, never aborts, and
// says what is wrong through a Status plus the ErrorCode a peer puts in its
// kError reply. Decoded views point into the frames, which the caller keeps
// alive (and unmoved: a small ZeroMQ message holds its bytes inline).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/status.h"
#include "base/types.h"
#include "replication/wire_format.h"

namespace pheap::wire {

const char* TypeName(uint8_t type);        // "HELLO", ...; "?" if unknown
const char* ErrorCodeName(uint16_t code);  // "BAD_MAGIC", ...; "?" if unknown
bool IsRequest(Type t);
// A request fenced by the writer's term (PAGES, COMMIT, the install
// messages, DROP): its header names the claimant that holds the term.
bool IsFenced(Type t);

// ---- encoding ----

// A message ready to send as frames: header, then body (every type but
// kStatus), then page data (kPages, kFetchReply, kInstallPages, kRepair). The data is referenced,
// not copied: it must stay valid until the message is sent (or, sent with
// zero copy, until the transport releases it).
struct OutMessage {
  Header header{};
  std::vector<uint8_t> body;
  const uint8_t* data = nullptr;
  size_t data_bytes = 0;
  // The header frame's bytes.
  std::span<const uint8_t> header_bytes() const {
    return {reinterpret_cast<const uint8_t*>(&header), sizeof(header)};
  }
};

// The fields a reply copies from its request.
struct ReplyTo {
  uint64_t request_id = 0;
  HeapId heap_id = 0;
};

OutMessage EncodeHello(uint64_t request_id, std::string_view heap_name);
OutMessage EncodeManifest(ReplyTo to, const ManifestBody& m);
OutMessage EncodeClaimTerm(uint64_t request_id, HeapId heap, Term term, const uint64_t claimant[2]);
OutMessage EncodeTermReply(ReplyTo to, const TermReplyBody& r);
// Pages `pgnos[i]` with data at data + i * kPageSize; computes each XXH3.
// REQUIRES: 1 <= pgnos.size() <= kMaxPagesPerMessage.
// The fenced requests take the writer's term with the claimant it claimed
// the term as (CLAIM_TERM); a peer refuses them at the term it promised
// to another claimant.
OutMessage EncodePages(uint64_t request_id, HeapId heap, Term term, const uint64_t claimant[2], Epoch epoch,
                       std::span<const Pgno> pgnos, const uint8_t* data);
OutMessage EncodePagesAck(ReplyTo to, Epoch epoch, Term promised, uint32_t accepted, uint64_t inbox_pages);
OutMessage EncodeCommit(uint64_t request_id, HeapId heap, Term term, const uint64_t claimant[2], Epoch epoch,
                        const CommitBody& c, std::span<const Run> discarded);
OutMessage EncodeCommitAck(ReplyTo to, Term promised, Epoch durable, Term image_term);
OutMessage EncodeFetch(uint64_t request_id, HeapId heap, Epoch epoch, Pgno first, uint32_t count);
// `present` has (count + 63) / 64 words; `checksums` and `data` hold the
// present pages only, in page order (data: popcount * kPageSize bytes).
OutMessage EncodeFetchReply(ReplyTo to, Term promised, Epoch durable, Term image_term, Pgno first, uint32_t count,
                            std::span<const uint64_t> present, std::span<const uint64_t> checksums,
                            const uint8_t* data);
OutMessage EncodeInstallBegin(uint64_t request_id, HeapId heap, Term term, const uint64_t claimant[2], Epoch from,
                              const InstallBeginBody& b);
// REQUIRES: pgnos.size() <= kMaxPagesPerMessage (0 allowed: discards only).
OutMessage EncodeInstallPages(uint64_t request_id, HeapId heap, Term term, const uint64_t claimant[2], Epoch label,
                              std::span<const Pgno> pgnos, const uint8_t* data, std::span<const Run> discarded);
OutMessage EncodeInstallCommit(uint64_t request_id, HeapId heap, Term term, const uint64_t claimant[2], Epoch epoch,
                               const InstallCommitBody& b);
OutMessage EncodeInstallAck(ReplyTo to, Term promised, const InstallAckBody& b);
// REQUIRES: 1 <= pgnos.size() <= kMaxPagesPerMessage.
OutMessage EncodeRepair(uint64_t request_id, HeapId heap, Epoch epoch, std::span<const Pgno> pgnos, const uint8_t* data);
OutMessage EncodeRepairAck(ReplyTo to, Term promised, Epoch durable, const RepairAckBody& b);
// Removes heap `heap` from the peer, fenced: `term` is a term the sender
// claimed, at least the peer's promise (which the peer keeps).
OutMessage EncodeDrop(uint64_t request_id, HeapId heap, Term term, const uint64_t claimant[2]);
OutMessage EncodeDropAck(ReplyTo to, Term promised);
OutMessage EncodeStatus(uint64_t request_id);
struct HeapStatusEntry {
  HeapStatus status{};
  std::string name;
  std::string error;  // why the heap is failed or in trouble ("" when healthy)
};
OutMessage EncodeStatusReply(ReplyTo to, uint32_t clients, uint64_t uptime_ms,
                             std::span<const HeapStatusEntry> heaps);
// `message` is cut to kMaxErrorMessage bytes and `runs` to kMaxErrorRuns.
OutMessage EncodeError(ReplyTo to, Term promised, Epoch epoch, ErrorCode code, uint64_t detail,
                       std::string_view message, std::span<const Run> runs = {});

// ---- decoding ----

struct Hello { std::string_view name; };
struct ClaimTerm { uint64_t claimant[2]; };
struct Pages {  // kPages, kRepair
  uint32_t count = 0;
  const uint8_t* refs = nullptr;  // count PageRef, unaligned
  const uint8_t* data = nullptr;  // count pages
  PageRef ref(uint32_t i) const;
  const uint8_t* page(uint32_t i) const { return data + uint64_t{i} * kPageSize; }
};
struct Commit {
  CommitBody body{};
  std::vector<Run> discarded;
};
struct Fetch { Pgno first = 0; uint32_t count = 0; };
struct FetchReply {
  Pgno first = 0;
  uint32_t count = 0;
  uint32_t present_count = 0;
  Term image_term = 0;                 // term that wrote the epoch served
  const uint8_t* bitmap = nullptr;     // (count + 63) / 64 words, unaligned
  const uint8_t* checksums = nullptr;  // present_count words, unaligned
  const uint8_t* data = nullptr;       // present_count pages
  bool present(uint32_t i) const;
  uint64_t checksum(uint32_t k) const;  // k-th present page
};
struct StatusReply {
  StatusReplyBody body{};
  std::vector<HeapStatusEntry> heaps;
};
struct InstallPages {
  Pages pages;               // may list no pages
  std::vector<Run> discarded;
};
struct Error {
  ErrorCode code{};
  uint64_t detail = 0;
  std::string_view message;
  std::vector<Run> runs;
};

struct Message {
  Header header{};
  Type type{};
  std::variant<std::monostate, Hello, ManifestBody, ClaimTerm, TermReplyBody, Pages, PagesAckBody,
               Commit, CommitAckBody, Fetch, FetchReply, StatusReply, Error, InstallBeginBody, InstallPages,
               InstallCommitBody, InstallAckBody, RepairAckBody>
      body;
};

// Checks the header frame alone: size, magic, version, checksum, type,
// flags, reserved bits, a claimant exactly on fenced requests. On failure sets *code.
Status DecodeHeader(std::span<const uint8_t> frame, Header* out, ErrorCode* code);

// Decodes a whole message: frames[0] is the header. Checks the frame count
// and sizes against the header and the type's layout, every count against
// its bound and every field it can judge alone (not page checksums: see
// VerifyPages). On failure sets *code; out->header is valid if the header was.
Status Decode(std::span<const std::span<const uint8_t>> frames, Message* out, ErrorCode* code);

// Checks every page of `p` against its XXH3. On a mismatch returns
// kCorruption naming the page and sets *bad_pgno.
Status VerifyPages(const Pages& p, Pgno* bad_pgno);

}  // namespace pheap::wire
