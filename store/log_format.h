// On-disk format of a page store log file. Described byte by byte in
// docs/store-format.md; any change here changes kFormatVersion.
//
// A log file is a sequence of 4 KiB blocks, so every stored page is 4 KiB
// aligned in the file:
//
//   FileHeader
//   per epoch:   (EntryBlock kPages + its data pages)*  (EntryBlock kTrims)*
//                CommitBlock kEpoch
//   compaction:  (EntryBlock kPages + data)* (EntryBlock kTrims)*
//                (EntryBlock kSources)* CommitBlock kCompaction
//
// Every block ends with the XXH3-64 of its bytes before the checksum field;
// every page's XXH3-64 sits in the entry that names it. All integers are
// little-endian (the only byte order pheap runs on; checked below).
#pragma once

#include <xxhash.h>

#include <bit>
#include <cstddef>
#include <cstdint>

#include "base/page_hash.h"
#include "base/types.h"

namespace pheap::logfmt {

static_assert(std::endian::native == std::endian::little, "the log format is little-endian");

inline constexpr size_t kBlockSize = kPageSize;
// 2: commit records carry time_ns, pause_ns and reclaimed_bytes. A reader
// takes version 1 files too; their reserved zeros read as "not recorded".
inline constexpr uint32_t kFormatVersion = 2;

inline constexpr uint64_t kFileMagic = 0x474f4c5041454850ull;    // "PHEAPLOG"
inline constexpr uint64_t kEntryMagic = 0x5952544e45485000ull;   // "\0PHENTRY"
inline constexpr uint64_t kCommitMagic = 0x54494d4d4f434850ull;  // "PHCOMMIT"
inline constexpr uint64_t kTailMagic = 0x4c494154474f4c50ull;    // "PLOGTAIL"

enum class FileKind : uint32_t {
  kWriter = 1,      // appended by a writer session, epoch after epoch
  kCompaction = 2,  // live pages copied out of older files, closed once
  kInstall = 3,     // a whole image fetched from elsewhere into an empty
                    // store (recovery from replicas), closed once
};

// Any block, as raw bytes.
struct Block {
  uint8_t bytes[kBlockSize];
};

struct FileHeader {
  uint64_t magic;          // kFileMagic
  uint32_t version;        // kFormatVersion of the writer
  uint32_t kind;           // FileKind
  uint64_t heap_id;        // XXH3_64bits(name)
  uint64_t file_number;    // the NNNNNNNN of log-NNNNNNNN.pheap
  uint64_t base;           // region base address
  uint64_t size;           // region size in bytes
  uint64_t base_epoch;     // durable epoch when the file was begun
  uint64_t base_term;      //   and that image's term
  uint64_t base_hwm;       //   and its hwm
  uint32_t name_length;    // bytes of name used
  uint32_t reserved0;
  char name[256];          // heap name, zero padded
  uint8_t reserved[kBlockSize - 80 - 256 - 8];
  uint64_t checksum;       // XXH3_64bits of bytes [0, 4088)
};

enum class EntryKind : uint32_t {
  kPages = 1,    // entries are PageEntry; `count` data pages follow the block
  kTrims = 2,    // entries are TrimEntry
  kSources = 3,  // entries are SourceEntry (compaction files only)
};

struct PageEntry {
  uint64_t pgno;
  uint64_t epoch;     // the epoch that wrote this version
  uint64_t checksum;  // XXH3_64bits of the page's 4096 bytes
};
struct TrimEntry {
  uint64_t first;     // run of pages that read as zeros from `epoch` on
  uint64_t count;
  uint64_t epoch;
};
// A log file a compaction replaced: enough of it to keep the recovery rules
// (base-epoch gaps, rollbacks) working after it is deleted.
struct SourceEntry {
  uint64_t file_number;
  uint64_t base_epoch;
  uint64_t last_epoch;  // last epoch committed in it (base_epoch if none)
};
static_assert(sizeof(PageEntry) == 24 && sizeof(TrimEntry) == 24 && sizeof(SourceEntry) == 24);

inline constexpr uint32_t kEntriesPerBlock = (kBlockSize - 32) / 24;  // 169

struct EntryBlock {
  uint64_t magic;     // kEntryMagic
  uint32_t kind;      // EntryKind
  uint32_t count;     // entries used, 1..kEntriesPerBlock
  uint64_t epoch;     // epoch being committed (compaction: its base epoch)
  union {
    PageEntry pages[kEntriesPerBlock];
    TrimEntry trims[kEntriesPerBlock];
    SourceEntry sources[kEntriesPerBlock];
  };
  uint8_t reserved[kBlockSize - 24 - 24 * kEntriesPerBlock - 8];
  uint64_t checksum;  // XXH3_64bits of bytes [0, 4088)
};

enum class CommitKind : uint32_t {
  kEpoch = 1,       // makes `epoch` durable
  kCompaction = 2,  // closes a compaction file; image is the one it preserved
  kInstall = 3,     // closes an install file; makes its image durable
};

struct CommitBlock {
  uint64_t magic;          // kCommitMagic
  uint32_t kind;           // CommitKind
  uint32_t reserved0;
  uint64_t epoch;          // image after this commit
  uint64_t term;
  uint64_t base;
  uint64_t size;
  uint64_t hwm;
  uint64_t page_count;     // pages in this group's kPages blocks
  uint64_t trim_count;     // trim entries in its kTrims blocks
  uint64_t source_count;   // source entries in its kSources blocks
  uint64_t first_offset;   // file offset of the group's first block
  // Since version 2 (zeros in a version 1 file: not recorded).
  uint64_t time_ns;          // wall clock when written, ns since 1970
  uint64_t pause_ns;         // kEpoch: how long its cut held the program still
  uint64_t reclaimed_bytes;  // kCompaction: its sources' bytes less its own
  uint8_t reserved[kBlockSize - 112 - 8];
  uint64_t checksum;       // XXH3_64bits of bytes [0, 4088)
};

// The TAIL file beside the log files: where the log reached when last
// recorded, so that an open notices when the newest log file lost its tail
// or vanished (a loss the files left behind cannot show). Rewritten in
// place, unsynced, after each durable epoch: it never claims more than the
// log held, and a crash may only leave it behind the log.
struct TailRecord {
  uint64_t magic;        // kTailMagic
  uint32_t version;      // kFormatVersion of the writer
  uint32_t reserved0;
  uint64_t heap_id;
  uint64_t file_number;  // the log file holding `epoch`
  uint64_t epoch;        // a durable epoch
  uint64_t term;         //   and its term
  uint64_t end;          // where that file's intact log ended then
  uint64_t checksum;     // XXH3_64bits of bytes [0, 56)
};
static_assert(sizeof(TailRecord) == 64 && offsetof(TailRecord, checksum) == 56);

static_assert(sizeof(FileHeader) == kBlockSize);
static_assert(sizeof(EntryBlock) == kBlockSize);
static_assert(sizeof(CommitBlock) == kBlockSize);
static_assert(offsetof(FileHeader, checksum) == kBlockSize - 8);
static_assert(offsetof(EntryBlock, checksum) == kBlockSize - 8);
static_assert(offsetof(CommitBlock, checksum) == kBlockSize - 8);
static_assert(offsetof(FileHeader, name) == 80);
static_assert(offsetof(EntryBlock, pages) == 24);
static_assert(offsetof(CommitBlock, time_ns) == 88 && offsetof(CommitBlock, reserved) == 112);

// Checksum of a block: everything before its trailing checksum field.
inline uint64_t BlockChecksum(const void* block) {
  return XXH3_64bits(block, kBlockSize - sizeof(uint64_t));
}
inline uint64_t PageChecksum(const void* page) { return PageHash(page); }  // XXH3-64 (base/page_hash.h)

template <typename Block>
void Seal(Block* b) { b->checksum = BlockChecksum(b); }
template <typename Block>
bool Intact(const Block& b) { return b.checksum == BlockChecksum(&b); }

inline HeapId HeapIdOf(const char* name, size_t len) { return XXH3_64bits(name, len); }

}  // namespace pheap::logfmt
