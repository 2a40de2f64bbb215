#include "store/log_file.h"

#include <fcntl.h>
#include <time.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "base/log.h"
#include "base/os.h"

namespace pheap {

using namespace logfmt;

std::string LogFileName(uint64_t number) { return fmt::format("log-{:08}.pheap", number); }

std::optional<uint64_t> ParseLogFileName(const std::string& name) {
  constexpr std::string_view kPrefix = "log-", kSuffix = ".pheap";
  if (name.size() < kPrefix.size() + 8 + kSuffix.size() || name.size() > kPrefix.size() + 19 + kSuffix.size())
    return std::nullopt;
  if (name.compare(0, kPrefix.size(), kPrefix) != 0) return std::nullopt;
  if (name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0) return std::nullopt;
  uint64_t n = 0;
  for (size_t i = kPrefix.size(); i < name.size() - kSuffix.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(name[i] - '0');
  }
  return n;
}

ssize_t ReadFull(int fd, void* buf, size_t n, uint64_t off) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = os().pread(fd, static_cast<char*>(buf) + got, n - got, static_cast<off_t>(off + got));
    if (r == -EINTR) continue;
    if (r < 0) return r;
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return static_cast<ssize_t>(got);
}

int WriteFull(int fd, const void* buf, size_t n, uint64_t off) {
  size_t put = 0;
  while (put < n) {
    ssize_t r = os().pwrite(fd, static_cast<const char*>(buf) + put, n - put, static_cast<off_t>(off + put));
    if (r == -EINTR) continue;
    if (r < 0) return static_cast<int>(r);
    if (r == 0) return -EIO;
    put += static_cast<size_t>(r);
  }
  return 0;
}

int WritevFull(int fd, const struct iovec* iov, size_t iovcnt, uint64_t off) {
  constexpr size_t kMaxIov = 1024;  // IOV_MAX
  size_t i = 0;
  while (i < iovcnt) {
    const int n = static_cast<int>(std::min(iovcnt - i, kMaxIov));
    ssize_t r = os().pwritev(fd, iov + i, n, static_cast<off_t>(off));
    if (r == -EINTR) continue;
    if (r < 0) return static_cast<int>(r);
    if (r == 0) return -EIO;
    off += static_cast<uint64_t>(r);
    for (size_t left = static_cast<size_t>(r); left > 0; ++i) {  // skip what went out
      if (left < iov[i].iov_len) {  // a short write ended inside iov[i]
        const size_t rest = iov[i].iov_len - left;
        int w = WriteFull(fd, static_cast<const char*>(iov[i].iov_base) + left, rest, off);
        if (w < 0) return w;
        off += rest;
        left = iov[i].iov_len;
      }
      left -= iov[i].iov_len;
    }
  }
  return 0;
}

Status SyncDirectory(const std::string& dir) {
  int fd = os().open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno("opening directory " + dir + " to sync it", -fd);
  int r = os().fsync(fd);
  os().close(fd);
  return r < 0 ? Status::FromErrno("syncing directory " + dir, -r) : Status::Ok();
}

namespace {

bool AllZero(const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  return b[0] == 0 && std::memcmp(b, b + 1, n - 1) == 0;
}

// Walks the blocks after the header. Keeps the pending (uncommitted) group
// apart so a torn group never reaches `out`.
class Scanner {
 public:
  Scanner(int fd, const std::string& path, CorruptionReporter* reporter, ScannedFile* out, uint64_t limit)
      : fd_(fd), path_(path), reporter_(reporter), out_(out), limit_(limit) {}

  Status Run() {
    const ImageInfo& base = out_->info.base_image;
    compaction_ = out_->info.kind == FileKind::kCompaction;
    install_ = out_->info.kind == FileKind::kInstall;
    // A region may grow within a file (a later epoch's commit records the
    // larger size): entries are bounded by the largest region here, and
    // each group by its own commit record (TakeCommit).
    pages_limit_ = std::max<uint64_t>(base.size, kMaxRegionSize) / kPageSize;
    uint64_t off = kBlockSize;
    out_->end = off;
    Reset(off);
    for (;;) {
      if (off >= limit_) return Status::Ok();
      ssize_t r = ReadFull(fd_, &block_, kBlockSize, off);
      if (r < 0)
        return Status::FromErrno(fmt::format("reading log file {} at offset {}", path_, off), static_cast<int>(-r));
      if (r == 0) return Status::Ok();  // clean end of file
      if (static_cast<size_t>(r) < kBlockSize) return Torn(off, "partial block at end of file");
      uint64_t magic;
      std::memcpy(&magic, &block_, sizeof(magic));
      if (magic == kEntryMagic) {
        auto* b = reinterpret_cast<EntryBlock*>(&block_);
        std::string why = TakeEntries(*b, off);
        if (!why.empty()) return Torn(off, why);
        off += kBlockSize;
        if (b->kind == static_cast<uint32_t>(EntryKind::kPages)) off += uint64_t{b->count} * kPageSize;
      } else if (magic == kCommitMagic) {
        auto* c = reinterpret_cast<CommitBlock*>(&block_);
        std::string why = TakeCommit(*c, off + kBlockSize);
        if (!why.empty()) return Torn(off, why);
        off += kBlockSize;
        out_->end = off;
        Reset(off);
        if (out_->closed) return Status::Ok();  // nothing follows a closing record
      } else {
        if (AllZero(&block_, kBlockSize)) return Status::Ok();  // preallocated or never written
        return Torn(off, "block with unknown magic");
      }
    }
  }

 private:
  void Reset(uint64_t off) {
    pending_ = ScannedGroup{};
    group_start_ = off;
  }
  Epoch Expected() const { return compaction_ ? out_->info.base_image.epoch : out_->last_epoch() + 1; }

  // Empty string: block accepted; else why it ends the log.
  std::string TakeEntries(const EntryBlock& b, uint64_t off) {
    if (!Intact(b)) return "entry block fails its checksum";
    if (b.count == 0 || b.count > kEntriesPerBlock) return fmt::format("entry block holds {} entries", b.count);
    // An install file's blocks carry the epoch each page was read at, in
    // any order; its closing record must be at least as new as all of them.
    if (install_) {
      max_label_ = std::max(max_label_, b.epoch);
    } else if (b.epoch != Expected()) {
      return fmt::format("entry block of epoch {} where epoch {} was due", b.epoch, Expected());
    }
    switch (static_cast<EntryKind>(b.kind)) {
      case EntryKind::kPages:
        for (uint32_t i = 0; i < b.count; ++i) {
          const PageEntry& p = b.pages[i];
          if (p.pgno >= pages_limit_) return fmt::format("page {} lies outside the region", p.pgno);
          if (compaction_ ? p.epoch > b.epoch : p.epoch != b.epoch)
            return fmt::format("page {} of epoch {} in a group of epoch {}", p.pgno, p.epoch, b.epoch);
          pending_.pages.push_back({p.pgno, p.epoch, p.checksum, off + kBlockSize * (1 + i)});
        }
        return {};
      case EntryKind::kTrims:
        for (uint32_t i = 0; i < b.count; ++i) {
          const TrimEntry& t = b.trims[i];
          if (t.first > pages_limit_ || t.count > pages_limit_ - t.first)
            return fmt::format("trim of {}+{} lies outside the region", t.first, t.count);
          pending_.trims.push_back(t);
        }
        return {};
      case EntryKind::kSources:
        if (!compaction_) return "source entries in a writer log file";
        pending_.sources.insert(pending_.sources.end(), b.sources, b.sources + b.count);
        return {};
    }
    return fmt::format("entry block of unknown kind {}", b.kind);
  }

  std::string TakeCommit(const CommitBlock& c, uint64_t end) {
    if (!Intact(c)) return "commit record fails its checksum";
    CommitKind want = compaction_ ? CommitKind::kCompaction : install_ ? CommitKind::kInstall : CommitKind::kEpoch;
    if (c.kind != static_cast<uint32_t>(want)) return fmt::format("commit record of kind {} in this file", c.kind);
    if (install_ ? c.epoch < max_label_ : c.epoch != Expected())
      return fmt::format("commit record of epoch {} where epoch {} was due", c.epoch,
                         install_ ? max_label_ : Expected());
    if (c.first_offset != group_start_ || c.page_count != pending_.pages.size() ||
        c.trim_count != pending_.trims.size() || c.source_count != pending_.sources.size())
      return fmt::format("commit record of epoch {} does not match the blocks before it", c.epoch);
    if (c.hwm > c.size / kPageSize)
      return fmt::format("commit record of epoch {} has hwm {} beyond the region", c.epoch, c.hwm);
    for (const auto& p : pending_.pages)
      if (p.pgno >= c.size / kPageSize)
        return fmt::format("page {} of epoch {} lies outside its region of {} pages", p.pgno, c.epoch,
                           c.size / kPageSize);
    for (const auto& t : pending_.trims)
      if (t.first > c.size / kPageSize || t.count > c.size / kPageSize - t.first)
        return fmt::format("trim of {}+{} in epoch {} lies outside its region", t.first, t.count, c.epoch);
    pending_.kind = want;
    pending_.image = ImageInfo{out_->info.base_image.heap_id, c.epoch, c.term, c.base, c.size, c.hwm};
    pending_.facts = CommitFacts{c.time_ns, c.pause_ns, c.reclaimed_bytes};
    pending_.start = group_start_;
    pending_.end = end;
    out_->groups.push_back(std::move(pending_));
    if (compaction_ || install_) out_->closed = true;
    return {};
  }

  Status Torn(uint64_t off, const std::string& why) {
    if (AllZero(&block_, kBlockSize)) return Status::Ok();
    std::string what = fmt::format("{}; the log is read up to offset {} (epoch {}) and the rest ignored", why,
                                   out_->end, out_->last_epoch());
    if (Epoch later = LaterCommit(off + kBlockSize); later != 0) {
      out_->damage = fmt::format(
          "log file {} is damaged at offset {} ({}), yet holds the commit record of epoch {} further on: "
          "durable epochs after epoch {} are unreadable",
          path_, off, why, later, out_->last_epoch());
      what = out_->damage;
    }
    PHEAP_LOG_WARN("log file {} offset {}: {}", path_, off, what);
    if (reporter_ != nullptr) reporter_->Corruption(path_, off, what);
    return Status::Ok();
  }

  // A torn tail holds at most the one epoch being written when the writer
  // died. An intact commit record two or more epochs on means the damage is
  // inside the durable log instead. Returns that epoch, or 0.
  Epoch LaterCommit(uint64_t off) {
    if (compaction_ || install_) return 0;
    constexpr size_t kChunk = 256;  // blocks per read
    auto buf = std::make_unique<CommitBlock[]>(kChunk);
    const Epoch beyond = out_->last_epoch() + 2;
    for (;;) {
      ssize_t r = ReadFull(fd_, buf.get(), kChunk * kBlockSize, off);
      if (r <= 0) return 0;
      size_t blocks = static_cast<size_t>(r) / kBlockSize;
      for (size_t i = 0; i < blocks; ++i) {
        const CommitBlock& c = buf[i];
        if (c.magic == kCommitMagic && c.kind == static_cast<uint32_t>(CommitKind::kEpoch) && c.epoch >= beyond &&
            Intact(c))
          return c.epoch;
      }
      if (blocks < kChunk) return 0;
      off += kChunk * kBlockSize;
    }
  }

  int fd_;
  const std::string& path_;
  CorruptionReporter* reporter_;
  ScannedFile* out_;
  const uint64_t limit_;
  bool compaction_ = false;
  bool install_ = false;
  Epoch max_label_ = 0;  // install files: newest page label so far
  uint64_t pages_limit_ = 0;
  uint64_t group_start_ = 0;
  ScannedGroup pending_;
  alignas(16) uint8_t block_[kBlockSize];
};

}  // namespace

Status ScanLogFile(int fd, const std::string& path, uint64_t number, HeapId heap_id, CorruptionReporter* reporter,
                   ScannedFile* out, uint64_t limit) {
  out->path = path;
  auto h = std::make_unique<FileHeader>();
  ssize_t r = ReadFull(fd, h.get(), kBlockSize, 0);
  if (r < 0) return Status::FromErrno("reading the header of log file " + path, static_cast<int>(-r));
  auto bad = [&](const std::string& why) {
    PHEAP_LOG_WARN("log file {}: {}; the file is ignored", path, why);
    if (reporter != nullptr) reporter->Corruption(path, 0, why);
    return Status::Ok();
  };
  if (static_cast<size_t>(r) < kBlockSize) return bad("header is incomplete");
  if (h->magic != kFileMagic) return bad("not a pheap log file (bad magic)");
  // magic and version sit at the same place in every format version.
  if (h->version > kFormatVersion)
    return Status::Unsupported(
        fmt::format("log file {} was written by format version {}, this pheap reads up to {}: upgrade pheap", path,
                    h->version, kFormatVersion));
  if (!Intact(*h)) return bad("header fails its checksum");
  if (h->file_number != number) return bad(fmt::format("header says file number {}", h->file_number));
  if (h->heap_id != heap_id) {
    std::string other(h->name, std::min<size_t>(h->name_length, sizeof(h->name)));
    return Status::InvalidArgument(
        fmt::format("log file {} belongs to heap '{}' (id {:016x}), not to this heap (id {:016x}): "
                    "the directory holds another heap's store; move it away or open that heap",
                    path, other, h->heap_id, heap_id));
  }
  if (h->kind != static_cast<uint32_t>(FileKind::kWriter) && h->kind != static_cast<uint32_t>(FileKind::kCompaction) &&
      h->kind != static_cast<uint32_t>(FileKind::kInstall))
    return bad(fmt::format("header has unknown file kind {}", h->kind));
  out->info.number = number;
  out->info.kind = static_cast<FileKind>(h->kind);
  out->info.base_image = ImageInfo{h->heap_id, h->base_epoch, h->base_term, h->base, h->size, h->base_hwm};
  out->header_ok = true;
  auto scanner = std::make_unique<Scanner>(fd, path, reporter, out, limit);
  return scanner->Run();
}

FileHeader MakeFileHeader(const std::string& name, const LogFileInfo& info) {
  FileHeader h{};
  h.magic = kFileMagic;
  h.version = kFormatVersion;
  h.kind = static_cast<uint32_t>(info.kind);
  h.heap_id = info.base_image.heap_id;
  h.file_number = info.number;
  h.base = info.base_image.base;
  h.size = info.base_image.size;
  h.base_epoch = info.base_image.epoch;
  h.base_term = info.base_image.term;
  h.base_hwm = info.base_image.hwm;
  h.name_length = static_cast<uint32_t>(std::min(name.size(), sizeof(h.name)));
  std::memcpy(h.name, name.data(), h.name_length);
  Seal(&h);
  return h;
}

TailRecord MakeTailRecord(uint64_t file_number, const ImageInfo& image, uint64_t end) {
  TailRecord t{};
  t.magic = kTailMagic;
  t.version = kFormatVersion;
  t.heap_id = image.heap_id;
  t.file_number = file_number;
  t.epoch = image.epoch;
  t.term = image.term;
  t.end = end;
  t.checksum = XXH3_64bits(&t, offsetof(TailRecord, checksum));
  return t;
}

bool TailRecordIntact(const TailRecord& t) {
  return t.magic == kTailMagic && t.checksum == XXH3_64bits(&t, offsetof(TailRecord, checksum));
}

// ---- GroupWriter ----

void GroupWriter::Push(const void* p, size_t n) {
  if (!iov_.empty()) {
    iovec& last = iov_.back();
    if (static_cast<const char*>(last.iov_base) + last.iov_len == p) {
      last.iov_len += n;
      pos_ += n;
      return;
    }
  }
  iov_.push_back({const_cast<void*>(p), n});
  pos_ += n;
}

EntryBlock* GroupWriter::Open(EntryKind kind) {
  if (open_ != nullptr && (open_->kind != static_cast<uint32_t>(kind) || open_->count == kEntriesPerBlock))
    CloseBlock();
  if (open_ == nullptr) {
    open_ = &blocks_.emplace_back().b;
    std::memset(open_, 0, sizeof(*open_));
    open_->magic = kEntryMagic;
    open_->kind = static_cast<uint32_t>(kind);
    open_->epoch = epoch_;
    iov_.push_back({open_, kBlockSize});
    pos_ += kBlockSize;
  }
  return open_;
}

void GroupWriter::CloseBlock() {
  if (open_ == nullptr) return;
  Seal(open_);
  open_ = nullptr;
}

uint64_t GroupWriter::AddPage(Pgno pgno, Epoch epoch, uint64_t checksum, const uint8_t* data) {
  EntryBlock* b = Open(EntryKind::kPages);
  b->pages[b->count++] = PageEntry{pgno, epoch, checksum};
  uint64_t at = pos_;
  Push(data, kPageSize);
  ++pages_;
  return at;
}

void GroupWriter::AddTrim(const TrimEntry& t) {
  EntryBlock* b = Open(EntryKind::kTrims);
  b->trims[b->count++] = t;
  ++trims_;
}

void GroupWriter::AddSource(const SourceEntry& s) {
  EntryBlock* b = Open(EntryKind::kSources);
  b->sources[b->count++] = s;
  ++sources_;
}

CommitBlock MakeCommitBlock(CommitKind kind, const ImageInfo& image, uint64_t first_offset, uint64_t pages,
                            uint64_t trims, uint64_t sources, const CommitFacts& facts) {
  CommitBlock c;
  std::memset(&c, 0, sizeof(c));
  c.magic = kCommitMagic;
  c.kind = static_cast<uint32_t>(kind);
  c.epoch = image.epoch;
  c.term = image.term;
  c.base = image.base;
  c.size = image.size;
  c.hwm = image.hwm;
  c.page_count = pages;
  c.trim_count = trims;
  c.source_count = sources;
  c.first_offset = first_offset;
  c.time_ns = facts.time_ns;
  c.pause_ns = facts.pause_ns;
  c.reclaimed_bytes = facts.reclaimed_bytes;
  Seal(&c);
  return c;
}

uint64_t WallClockNs() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000 + static_cast<uint64_t>(ts.tv_nsec);
}

void GroupWriter::Commit(CommitKind kind, const ImageInfo& image, const CommitFacts& facts) {
  CloseBlock();
  commit_ = MakeCommitBlock(kind, image, start_, pages_, trims_, sources_, facts);
  iov_.push_back({&commit_, kBlockSize});
  pos_ += kBlockSize;
}

const CommitBlock& GroupWriter::SetPause(uint64_t pause_ns) {
  commit_.pause_ns = pause_ns;
  Seal(&commit_);
  return commit_;
}

int GroupWriter::Drain(int fd) {
  uint64_t off = start_ + written_;
  int r = WritevFull(fd, iov_.data(), iov_.size(), off);
  if (r < 0) return r;
  for (const iovec& v : iov_) off += v.iov_len;
  written_ = off - start_;
  iov_.clear();
  blocks_.clear();
  return 0;
}

}  // namespace pheap
