// Reading and writing one log file (format: log_format.h). Nothing here knows
// about other files or the index; page_store.cc combines scanned files into
// the durable image.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "base/page_io.h"
#include "base/status.h"
#include "store/log_format.h"
#include "store/page_store.h"

namespace pheap {

// The file beside the log files that records where the log reached
// (logfmt::TailRecord).
inline constexpr const char* kTailFileName = "TAIL";

// "log-00000042.pheap" <-> 42.
std::string LogFileName(uint64_t number);
std::optional<uint64_t> ParseLogFileName(const std::string& name);

// Reads exactly n bytes at off. Returns the bytes read (short only at end of
// file) or a negative errno.
ssize_t ReadFull(int fd, void* buf, size_t n, uint64_t off);
// Writes exactly n bytes at off; 0 or -errno.
int WriteFull(int fd, const void* buf, size_t n, uint64_t off);
// Writes iov[0, iovcnt) contiguously from off, IOV_MAX iovecs per pwritev,
// resuming after a short write; 0 or -errno. No sync.
int WritevFull(int fd, const struct iovec* iov, size_t iovcnt, uint64_t off);
// fsync of a directory: its entries (files created, renamed, removed) durable.
Status SyncDirectory(const std::string& dir);

// What the header of a log file says.
struct LogFileInfo {
  uint64_t number = 0;
  logfmt::FileKind kind = logfmt::FileKind::kWriter;
  ImageInfo base_image;  // the image the file was begun from
};

struct ScannedPage {
  Pgno pgno;
  Epoch epoch;
  uint64_t checksum;
  uint64_t offset;  // of its data in the file
};

// What a commit record says beside the image (format version 2; zeros,
// "not recorded", in a version 1 file).
struct CommitFacts {
  uint64_t time_ns = 0;          // wall clock when written, ns since 1970
  uint64_t pause_ns = 0;         // epochs: how long the cut held the program still
  uint64_t reclaimed_bytes = 0;  // compactions: the sources' bytes less the file's own
};

// One group closed by an intact commit record.
struct ScannedGroup {
  logfmt::CommitKind kind = logfmt::CommitKind::kEpoch;
  ImageInfo image;  // as the commit record states it
  CommitFacts facts;
  uint64_t start = 0, end = 0;  // the group's bytes in the file, commit record included
  std::vector<ScannedPage> pages;
  std::vector<logfmt::TrimEntry> trims;
  std::vector<logfmt::SourceEntry> sources;
};

struct ScannedFile {
  std::string path;
  LogFileInfo info;
  bool header_ok = false;     // false: unreadable header; nothing else is set
  std::vector<ScannedGroup> groups;
  bool closed = false;        // compaction file with its closing record
  uint64_t end = 0;           // byte after the last intact commit record
  std::string damage;         // set when the damage is not a torn tail
  Epoch last_epoch() const {  // writer files: last committed epoch
    return groups.empty() ? info.base_image.epoch : groups.back().image.epoch;
  }
};

// Scans the log file open at `fd`: reads its header and every entry and
// commit block, never page data. Stops at the first block that is torn,
// fails its checksum or breaks the epoch sequence; what follows the last
// intact commit record is ignored. Bad blocks that are not plain zeros go to
// `reporter` (may be null) and the log. When an intact commit record of a
// later epoch follows the damage, it was not a torn tail: out->damage says
// so and the caller decides (fail, or salvage the intact prefix).
// Errors: kUnsupported for a newer format version, kInvalidArgument for a
// file of another heap, kIoError when a read fails. With `limit` it reads
// no block at or past that offset (a log another process is appending to,
// read as far as it was known to be durable).
Status ScanLogFile(int fd, const std::string& path, uint64_t number, HeapId heap_id, CorruptionReporter* reporter,
                   ScannedFile* out, uint64_t limit = UINT64_MAX);

// Builds the blocks of one group (an epoch, or a compaction) as iovecs ready
// for one vectored write at `start`. Add pages first, then trims, then
// sources, then Commit(). Page data is referenced, not copied: it must stay
// valid until the iovecs are written.
class GroupWriter {
 public:
  GroupWriter(uint64_t start, Epoch block_epoch) : start_(start), pos_(start), epoch_(block_epoch) {}
  GroupWriter(const GroupWriter&) = delete;
  GroupWriter& operator=(const GroupWriter&) = delete;

  // Returns the file offset the page's data will have.
  uint64_t AddPage(Pgno pgno, Epoch epoch, uint64_t checksum, const uint8_t* data);
  void AddTrim(const logfmt::TrimEntry& t);
  void AddSource(const logfmt::SourceEntry& s);
  // Closes the open entry block, so the data it references may be reused
  // once the iovecs so far are written (see Drain).
  void CloseBlock();
  // Closes the group with its commit record. `image` is the image after it.
  void Commit(logfmt::CommitKind kind, const ImageInfo& image, const CommitFacts& facts = {});
  // Records the epoch's pause in its commit record, once known (after the
  // group's blocks were built, even written): the record to write again.
  // REQUIRES: Commit was called.
  const logfmt::CommitBlock& SetPause(uint64_t pause_ns);

  const std::vector<iovec>& iov() const { return iov_; }
  // Writes and forgets the iovecs built so far (plain pwrite, no sync).
  // REQUIRES: no entry block open (CloseBlock).
  int Drain(int fd);
  uint64_t end() const { return pos_; }  // offset after everything added

 private:
  logfmt::EntryBlock* Open(logfmt::EntryKind kind);
  void Push(const void* p, size_t n);

  uint64_t start_;
  uint64_t pos_;
  uint64_t written_ = 0;  // bytes of iov_ already drained
  Epoch epoch_;
  logfmt::EntryBlock* open_ = nullptr;
  uint64_t pages_ = 0, trims_ = 0, sources_ = 0;
  // Blocks are 4 KiB aligned in memory, like the pages they describe, so a
  // group can be written with O_DIRECT (PageStoreOptions::direct_write_bytes).
  struct alignas(logfmt::kBlockSize) AlignedEntryBlock {
    logfmt::EntryBlock b;
  };
  std::deque<AlignedEntryBlock> blocks_;  // deque: pointers stay valid
  alignas(logfmt::kBlockSize) logfmt::CommitBlock commit_{};
  std::vector<iovec> iov_;
};

// A sealed commit record closing the group that began at `first_offset`
// with the given entry counts.
logfmt::CommitBlock MakeCommitBlock(logfmt::CommitKind kind, const ImageInfo& image, uint64_t first_offset,
                                    uint64_t pages, uint64_t trims, uint64_t sources, const CommitFacts& facts = {});
// The wall clock now, as commit records keep it (CommitFacts::time_ns).
uint64_t WallClockNs();

// The header block of a new log file.
logfmt::FileHeader MakeFileHeader(const std::string& name, const LogFileInfo& info);

// A sealed TAIL record: log file `file_number` held `image` (durable), its
// intact log ending at `end`.
logfmt::TailRecord MakeTailRecord(uint64_t file_number, const ImageInfo& image, uint64_t end);
// True if `t` is whole: its magic and checksum agree.
bool TailRecordIntact(const logfmt::TailRecord& t);

}  // namespace pheap
