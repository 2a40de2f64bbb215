// The peer wire protocol: what travels between a replica client (DEALER)
// and a peer (ROUTER). Described byte by byte in docs/wire-protocol.md; any
// change here changes kVersion.
//
// A message is one ZeroMQ multipart message: an 80-byte Header frame, then
// `payload_frames` payload frames whose sizes add up to `payload_bytes`.
// Frame 1 (the body) starts with the fixed struct of its type, followed by
// that type's variable part; frame 2, for kPages, kFetchReply,
// kInstallPages and kRepair only, holds
// page data, 4096 bytes per page. (The ROUTER prepends the routing id frame
// on the peer's side; clients never see or send it, nor an empty delimiter.)
//
// All integers are little-endian (the only byte order pheap runs on; the
// structs are copied to and from the wire with memcpy, checked below).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

#include "base/types.h"

namespace pheap::wire {

static_assert(std::endian::native == std::endian::little, "the wire format is little-endian");

inline constexpr uint32_t kMagic = 0x50574850;  // bytes "PHWP"
// 2: COMMIT names the term of the epoch before it, INSTALL_BEGIN the term
//    of the image it installs, FETCH_REPLY the term of the image it serves,
//    and kDiverged refuses to extend an image another writer wrote.
// 3: HeapStatus reports the last failure of a heap's store (its errno and
//    text); kStoreError's detail is the errno of the store's failure.
// 4: the header names the claimant of a fenced request's term, so a peer
//    refuses another writer's requests at the term it promised.
inline constexpr uint16_t kVersion = 4;

// Largest page data one kPages message carries, and the bound on any one
// frame and on a whole message (ZMQ_MAXMSGSIZE is set to kMaxFrameBytes; a
// peer drops the connection of a sender that exceeds it).
inline constexpr uint32_t kMaxPagesPerMessage = 16384;                    // 64 MiB
inline constexpr uint64_t kMaxFrameBytes = (uint64_t{64} << 20) + (uint64_t{1} << 20);
inline constexpr uint64_t kMaxMessageBytes = kMaxFrameBytes;
// Largest run one kFetch asks for (PageSource::kMaxReadRun).
inline constexpr uint32_t kMaxFetchPages = 1024;
// A writer's kPages messages should carry at least this much page data
// where the epoch has it: smaller frames cap throughput (DESIGN.md).
inline constexpr uint64_t kPreferredPagesBytes = uint64_t{1} << 20;
// Bound on the runs listed in a kMissingPages error.
inline constexpr uint32_t kMaxErrorRuns = 4096;
inline constexpr uint32_t kMaxErrorMessage = 4096;

enum class Type : uint8_t {
  kHello = 1,  // -> kManifest
  kManifest = 2,
  kClaimTerm = 3,  // -> kTermReply
  kTermReply = 4,
  kPages = 5,  // -> kPagesAck
  kPagesAck = 6,
  kCommit = 7,  // -> kCommitAck
  kCommitAck = 8,
  kFetch = 9,  // -> kFetchReply
  kFetchReply = 10,
  kStatus = 11,  // -> kStatusReply
  kStatusReply = 12,
  kError = 13,  // reply to any request that failed
  // Installing a whole image into a replica the writer cannot catch up
  // epoch by epoch (added in version 1: a peer without them answers
  // kUnknownType).
  kInstallBegin = 14,   // -> kInstallAck
  kInstallPages = 15,   // -> kInstallAck
  kInstallCommit = 16,  // -> kInstallAck
  kInstallAck = 17,
  kRepair = 18,  // -> kRepairAck
  kRepairAck = 19,
  // Removing a heap from a peer (pheap rm); header only, fenced by term.
  kDrop = 20,  // -> kDropAck
  kDropAck = 21,
};
inline constexpr uint8_t kMaxType = 21;

// Header.flags. Every reply carries kFlagReply, no request does; other bits
// are reserved and must be zero.
inline constexpr uint8_t kFlagReply = 0x01;

struct Header {
  uint32_t magic;           // kMagic
  uint16_t version;         // kVersion
  uint8_t type;             // Type
  uint8_t flags;            // kFlagReply on replies
  uint64_t request_id;      // chosen by the client; replies echo it
  uint64_t heap_id;         // XXH3-64 of the heap name; 0 for kStatus
  uint64_t term;            // the writer's term (requests), promised term (replies)
  uint64_t epoch;           // the epoch the message is about (per type)
  uint64_t payload_bytes;   // sum of the payload frames' sizes
  uint32_t payload_frames;  // frames after this one
  uint32_t reserved;        // zero
  // Fenced requests (IsFenced): the writer session that claimed `term`
  // (ClaimBody's claimant), never 0,0. Zero on every other message.
  uint64_t claimant[2];
  uint64_t checksum;  // XXH3-64 of bytes [0, 72)
};
static_assert(sizeof(Header) == 80);
static_assert(offsetof(Header, request_id) == 8 && offsetof(Header, heap_id) == 16);
static_assert(offsetof(Header, payload_bytes) == 40 && offsetof(Header, claimant) == 56);
static_assert(offsetof(Header, checksum) == 72);

// kHello body: then `name_length` bytes of heap name (no terminator).
struct HelloBody {
  uint32_t name_length;
  uint32_t reserved;
};

// kManifest body. Header: epoch = durable epoch, term = promised term.
inline constexpr uint32_t kManifestHeld = 0x1;  // the peer has a store for the heap
struct ManifestBody {
  uint32_t flags;              // kManifestHeld
  uint32_t reserved;
  uint64_t epoch;              // durable epoch (0: none)
  uint64_t image_term;         // term that wrote the durable epoch
  uint64_t promised_term;      // highest term promised (0: none)
  uint64_t base;               // region of the durable image (0 if not held)
  uint64_t size;
  uint64_t hwm;
  uint64_t max_message_bytes;  // the peer's bound on one message
};
static_assert(sizeof(ManifestBody) == 64);

// kClaimTerm body. Header: term = the term claimed (>= 1).
// `claimant` identifies the writer session (random, chosen once per open),
// so a resent claim of the same term by the same writer is granted again.
struct ClaimBody {
  uint64_t claimant[2];
};

// kTermReply body. Header: term = promised term after the claim.
struct TermReplyBody {
  uint32_t granted;            // 1 granted, 0 refused
  uint32_t reserved;
  uint64_t promised_term;
  uint64_t durable_epoch;
  uint64_t image_term;
};

// kPages body: then `count` PageRef; frame 2 holds count * 4096 bytes, the
// pages in PageRef order. Header: epoch, term of the epoch being shipped.
struct PagesBody {
  uint32_t count;              // 1..kMaxPagesPerMessage
  uint32_t reserved;
};
struct PageRef {
  uint64_t pgno;
  uint64_t checksum;           // XXH3-64 of the page's 4096 bytes
};
static_assert(sizeof(PageRef) == 16);

// kPagesAck body. Header: epoch as in the request.
struct PagesAckBody {
  uint32_t accepted;  // pages of the request now in the inbox (or durable)
  uint32_t reserved;
  uint64_t inbox_pages;  // distinct pages of the epoch in the inbox so far
};

// kCommit body: then `discarded_count` RunRef. Header: epoch, term.
struct CommitBody {
  uint64_t base;
  uint64_t size;
  uint64_t hwm;
  uint64_t total_pages;        // distinct pages the epoch shipped in kPages
  uint32_t discarded_count;
  uint32_t reserved;
  uint64_t prev_term;          // term that wrote epoch - 1 (0 for epoch 1)
};
struct RunRef {
  uint64_t first;
  uint64_t count;
};
static_assert(sizeof(CommitBody) == 48 && sizeof(RunRef) == 16);

// kCommitAck body. Header: epoch = durable epoch (>= the committed one).
struct CommitAckBody {
  uint64_t durable_epoch;
  uint64_t image_term;
};

// kFetch body. Header: epoch = the epoch wanted (an older one than the
// durable epoch is read from its past image while the peer's log holds
// it), or 0 for whatever is durable.
struct FetchBody {
  uint64_t first;
  uint32_t count;              // 1..kMaxFetchPages
  uint32_t reserved;
};

// kFetchReply body: then (count + 63) / 64 bitmap words (bit i: page
// first + i has stored data), then present_count checksums (XXH3-64, in
// page order); frame 2 holds the present pages' data in page order. A page
// not present reads as zeros. Header: epoch = the epoch served.
struct FetchReplyBody {
  uint64_t first;
  uint32_t count;
  uint32_t present_count;
  uint64_t image_term;         // term that wrote the epoch served (0: none)
};
static_assert(sizeof(FetchReplyBody) == 24);

// kStatusReply body: then heap_count HeapStatus, each followed by its name
// and then its error text.
struct StatusReplyBody {
  uint32_t heap_count;
  uint32_t clients;            // connections open now
  uint64_t uptime_ms;
};
inline constexpr uint32_t kHeapOpen = 0x1;     // a store is open for it
inline constexpr uint32_t kHeapFailed = 0x2;   // its store failed to open
inline constexpr uint32_t kHeapTrouble = 0x4;  // the last write to its store failed
struct HeapStatus {
  uint64_t heap_id;
  uint64_t epoch;
  uint64_t promised_term;
  uint64_t bytes_on_disk;
  uint64_t live_pages;
  uint64_t inbox_pages;
  uint32_t flags;              // kHeapOpen, kHeapFailed, kHeapTrouble
  uint32_t name_length;        // <= kMaxHeapNameLength
  uint32_t error_errno;        // kHeapFailed or kHeapTrouble: the failure's errno (0: none)
  uint32_t error_length;       // <= kMaxErrorMessage: the failure's text
};
static_assert(sizeof(HeapStatus) == 64);

// kInstallBegin body. Header: epoch = the writer's durable epoch (the
// install reaches at least this far), term = the writer's term. The peer
// sets aside a store that holds an epoch below it and begins an install
// into an empty store of this region.
struct InstallBeginBody {
  uint64_t base;
  uint64_t size;
  uint64_t image_term;         // term that wrote the writer's durable epoch
};

// kInstallPages body: then `count` PageRef, then `discarded_count` RunRef
// (pages that read as zeros at the label); frame 2 holds count * 4096 bytes.
// Header: epoch = the label (the epoch the pages were read at, or the epoch
// that wrote them), term = the writer's term.
struct InstallPagesBody {
  uint32_t count;              // 0..kMaxPagesPerMessage
  uint32_t discarded_count;
};

// kInstallCommit body. Header: epoch = the installed image's epoch, term =
// the writer's term.
struct InstallCommitBody {
  uint64_t base;
  uint64_t size;
  uint64_t hwm;
  uint64_t image_term;         // the term that wrote the image's epoch
};

// kInstallAck body. Header: epoch = durable epoch.
struct InstallAckBody {
  uint64_t durable_epoch;
  uint64_t image_term;
  uint64_t installed_pages;    // page copies in the unfinished install (0 when none)
};

// kRepair: a PagesBody and its PageRefs, frame 2 the pages: good copies of
// pages this peer answered kCorruptPage for. Header: epoch = the epoch the
// copies were served at (informational), term = 0.
// kRepairAck body. Header: epoch = durable epoch.
struct RepairAckBody {
  uint32_t repaired;           // pages rewritten, or found good already
  uint32_t refused;            // pages whose copy is not the stored version
};
static_assert(sizeof(InstallBeginBody) == 24 && sizeof(InstallPagesBody) == 8);
static_assert(sizeof(InstallCommitBody) == 32 && sizeof(InstallAckBody) == 24 && sizeof(RepairAckBody) == 8);

enum class ErrorCode : uint16_t {
  kBadMagic = 1,        // header magic is not kMagic
  kBadVersion = 2,      // detail: the version the peer speaks
  kBadChecksum = 3,     // header checksum fails
  kTruncated = 4,       // a frame shorter than its fixed part
  kLengthMismatch = 5,  // frames or sizes disagree with the header
  kUnknownType = 6,     // not a request type this peer serves
  kOversized = 7,       // beyond kMaxMessageBytes or a per-type bound
  kMalformed = 8,       // a body field is invalid (the message says which)
  kUnknownHeap = 9,     // heap id not known here: send kHello first
  kSuperseded = 10,     // detail: the promised term
  kEpochGap = 11,       // detail: the epoch the peer needs next
  kMissingPages = 12,   // detail: pages in the inbox; runs: those pages
  kPageChecksum = 13,   // a shipped page fails its XXH3; detail: pgno
  kCorruptPage = 14,    // a stored page fails its XXH3; detail: pgno
  kEpochMismatch = 15,  // fetch of an epoch not durable here; detail: durable epoch
  kInboxFull = 16,      // detail: the peer's inbox limit in bytes
  kStoreError = 17,     // the page store refused or failed (message says why); detail: its errno
  kBusy = 18,           // the peer is stopping, or an install holds the heap
  kNoInstall = 19,      // install pages or commit with no install begun: send kInstallBegin
  kDiverged = 20,       // commit on an image another writer wrote; detail: its term
};
inline constexpr uint16_t kMaxErrorCode = 20;

// kError body: then message_length bytes of text, then run_count RunRef.
struct ErrorBody {
  uint16_t code;               // ErrorCode
  uint16_t reserved;
  uint32_t message_length;     // <= kMaxErrorMessage
  uint64_t detail;             // per code, see above
  uint32_t run_count;          // <= kMaxErrorRuns
  uint32_t reserved2;
};
static_assert(sizeof(ErrorBody) == 24);

}  // namespace pheap::wire
