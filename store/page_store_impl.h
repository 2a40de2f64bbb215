// PageStore's insides, shared by page_store.cc (open, read, persist),
// store_recover.cc (rebuilding the index) and store_compact.cc (compaction,
// verification). Not installed.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "base/os.h"
#include "store/log_file.h"
#include "store/log_format.h"
#include "store/page_store.h"

namespace pheap {

// A log file the store keeps open.
struct LogFile {
  LogFile() = default;
  ~LogFile();
  LogFile(const LogFile&) = delete;
  LogFile& operator=(const LogFile&) = delete;

  std::string path;
  int fd = -1;
  LogFileInfo info;
  Epoch last_epoch = 0;                        // writer files: last committed
  std::vector<logfmt::SourceEntry> sources;    // compaction files: what they replaced
  uint64_t end = 0;                            // bytes of intact log
  uint64_t padded_to = 0;                      // writer files: zeros durable up to here (see Persist)
  uint64_t size_at_open = 0;                   // files found at open: their size then (padding included)
  // Damaged before later epochs (salvage passed it over): the writer files
  // after it that began from its intact part are what lets it be opened.
  bool damaged = false;
  uint64_t live_pages = 0;                     // index slots holding a page here
  // Its epochs count up to here (Recovery's rollback rule): a later session
  // that began from an earlier epoch superseded the rest.
  Epoch ceiling = UINT64_MAX;
  CommitFacts closing;  // compaction files: their closing record's
  bool synced = true;  // header and directory entry durable (see CreateLogFile)
  int direct_fd = -1;         // the file opened O_DIRECT (WriteGroup), once used
  bool direct_failed = false; // O_DIRECT refused here: write through `fd` only
  // The file opened O_RDONLY | O_DIRECT (ReadPages), once used. Readers
  // share it: set once, under direct_read_mu.
  std::mutex direct_read_mu;
  std::atomic<int> direct_read_fd{-1};
  // The open refused O_DIRECT, or a read through it failed with EINVAL
  // (the device wants another alignment): reads go through `fd` only.
  std::atomic<bool> direct_read_refused{false};
  // LocateRun (store_map.cc): the file mapped shared and read-only, made
  // on first use, to check pages where they lie before they are mapped.
  std::mutex view_mu;
  std::atomic<const uint8_t*> view{nullptr};
  uint64_t view_bytes = 0;  // set before `view` is published
  std::atomic<uint64_t> view_resident{0};  // bytes populated since the view was last zapped

  // Bytes the file takes on disk: its log, and the zeros padding it.
  uint64_t footprint() const { return std::max({end, padded_to, size_at_open}); }
};

// Where the newest durable version of one page lies.
struct Slot {
  enum State : uint8_t { kAbsent = 0, kPage, kTrim };
  Epoch epoch = 0;
  uint64_t offset = 0;    // of the data in `file`
  uint64_t checksum = 0;  // XXH3 of the data
  uint32_t file = 0;      // log file number (trims: the file recording it)
  State state = kAbsent;
};
static_assert(sizeof(Slot) == 32);

class PageStore::Impl {
 public:
  Impl(std::string dir, std::string name, const PageStoreOptions& options, CorruptionReporter* reporter);
  ~Impl();

  Status Open();
  ImageInfo image() const;
  std::vector<Epoch> PageEpochs(Pgno first, uint64_t count) const;
  const std::string& path() const { return path_; }
  bool created() const { return created_; }
  Status ReadRun(Pgno first, uint32_t count, uint8_t* out, uint64_t* present);
  // `bytes` of f from `off` into dst, with O_DIRECT where
  // options_.direct_read_bytes says so; ReadFull's result.
  ssize_t ReadPages(LogFile& f, uint8_t* dst, uint64_t bytes, uint64_t off);
  // f's O_DIRECT read descriptor, opened on first use; -1 if the open is
  // refused (the file is then marked refused).
  int DirectReadFd(LogFile& f);
  StoredRun LocateRun(Pgno first, uint64_t count);  // store_map.cc
  void WillNeed(Pgno first, uint64_t count);
  // How many pages from `first`, at most `max`, lie back to back in the
  // file that holds `first`. REQUIRES: mu_ held; index_[first] is a page.
  uint32_t ExtentPages(Pgno first, uint32_t max) const;
  Status Persist(const SealedEpoch& e);
  Status Write(const SealedEpoch& e);
  Status Sync(uint64_t pause_ns);
  Status InstallPages(const SealedEpoch& part);  // store_install.cc
  Status InstallCommit(const ImageInfo& image);
  void AbandonInstall();
  Status RepairPage(Pgno pgno, const uint8_t* data);  // store_repair.cc
  Status Compact();
  bool CompactionDue() const;
  Status Verify(CorruptionReporter* reporter);
  PageStoreStats stats() const;
  // store_history.cc
  struct History;
  Result<std::unique_ptr<History>> ReadHistory() const;
  // Takes the store's LOCK for writing (Busy, naming the holder, if taken).
  Status Lock();
  Result<bool> RemoveIfCreated();
  // Renames the heap's directory aside (.NAME.removed-PID) in one step,
  // syncs its parent, then deletes it. REQUIRES: the lock is held.
  Status RemoveDirectory();

 private:
  Status AppendInstall(const SealedEpoch& part);  // InstallPages with install_mu_ held
  // Gives back what a session's file holds beyond its log: the padding
  // zeros, or the whole file if no epoch went into it.
  void CloseActive();
  Status MakeDirs();
  Status Recover();
  // Creates the next log file through a temporary name, its header synced
  // before the rename and the directory after, so it always has a whole
  // header. With `defer` both syncs wait for the first Persist, which makes
  // the file durable with its epoch. Only for a file that holds no image of
  // its own (the writer file begun at open, from an image already durable):
  // lost to a crash before any epoch in it is durable, it held nothing, and
  // a torn header is ignored.
  Result<std::unique_ptr<LogFile>> CreateLogFile(logfmt::FileKind kind, const ImageInfo& base, bool defer = false);
  // Syncs the heap's directory, and the parents of the directories this
  // store created (MakeDirs) until each has been synced once.
  Status SyncDir();
  Status CheckEpoch(const SealedEpoch& e) const;
  // Persist's steps (page_store.cc): lay out an epoch's group at the active
  // file's end, and, once written and synced with result r (0 or -errno),
  // publish it into the index or blank its commit record.
  struct Group;
  Result<std::unique_ptr<Group>> LayOut(const SealedEpoch& e);
  Status Publish(const Group& g, const std::vector<Pgno>& pages, const std::vector<Run>& discarded, int r);
  // Writes a laid-out group at its place in the active file, and with `sync`
  // fdatasyncs it; through O_DIRECT when options_.direct_write_bytes allows.
  // 0 or -errno.
  int WriteGroup(const Group& g, bool sync);
  std::string NotSynced(Epoch epoch) const;
  std::string InstallInProgress(Epoch epoch) const;
  // Sets slot `pgno` if `epoch` is newer than what it holds. REQUIRES: mu_ held
  // exclusively (or no reader yet).
  void Apply(Pgno pgno, const Slot& s);
  void ApplyTrim(const logfmt::TrimEntry& t, uint32_t file);
  std::string PageError(Pgno pgno, const Slot& s, uint64_t got) const;
  void Remove(const std::string& file, const char* why);
  // Records in TAIL (TailRecord) that log file `file` holds the durable
  // image `im`, its log ending at `end`. Unsynced unless `sync` (needed only
  // when TAIL moves back, after a salvage). A failure is logged, never
  // returned: TAIL guards the log, it holds no data.
  void RecordTail(uint64_t file, const ImageInfo& im, uint64_t end, bool sync = false);

  // compaction steps (store_compact.cc)
  // REQUIRES: mu_ held (shared is enough).
  std::vector<uint32_t> CompactionSourcesLocked() const;
  std::vector<uint32_t> CompactionSources() const;
  // The pages and trims of `sources` the index holds, and the durable image
  // they are live in, read under one lock.
  struct LiveSet;
  ImageInfo CollectLive(const std::vector<uint32_t>& sources, LiveSet* out) const;
  // With past epochs retained: the page versions and trims of `sources`
  // live at epoch `floor` (or the newest compaction's epoch, if later),
  // read from the log, and that epoch's image. Drops from *sources the
  // files whose versions live then are not below the live ratio; none
  // left: nothing to gain, and *sources is empty.
  Result<ImageInfo> CollectRetained(Epoch floor, std::vector<uint32_t>* sources, LiveSet* out);
  // The oldest epoch compaction keeps readable: the durable epoch, or an
  // earlier one options_.retain_* asks for. REQUIRES: mu_ held.
  Epoch RetainFloorLocked() const;
  Status CopyLive(const LiveSet& live, LogFile* to, GroupWriter* w, std::vector<std::pair<Pgno, uint64_t>>* moved);

  const std::string dir_, name_, path_;
  const HeapId heap_id_;
  const PageStoreOptions options_;
  CorruptionReporter* const reporter_;
  int lock_fd_ = -1;
  int tail_fd_ = -1;           // TAIL, open in writer sessions
  bool tail_warned_ = false;   // a failure to write TAIL was logged
  // Set by Recover: what TAIL should say of the recovered log, and whether
  // TAIL said more (a salvage fell back below it).
  logfmt::TailRecord recovered_tail_{};
  bool tail_ahead_ = false;
  // Compact runs beside Persist and Write (on another thread), so what both
  // use has its own small lock: the file numbers, the directory syncs.
  std::mutex number_mu_;
  uint64_t next_file_number_ = 1;  // guarded by number_mu_ after Open
  std::mutex dir_mu_;              // guards unsynced_parents_
  // Held through a whole Compact and through each install step: a
  // compaction never runs while an install is open or changes files_.
  std::mutex install_mu_;
  uint64_t compactions_ = 0;
  LogFile* active_ = nullptr;  // writer sessions only
  std::unique_ptr<Group> written_;  // by Write, awaiting Sync
  bool created_ = false;            // MakeDirs made path_ itself
  bool locked_ = false;             // Lock succeeded
  std::vector<std::string> unsynced_parents_;  // of directories MakeDirs created, outermost first

  // Readers (ReadRun, Verify, stats) take mu_ shared; Persist and Compact
  // take it exclusively only to publish what they have made durable.
  mutable std::shared_mutex mu_;
  ImageInfo image_;
  // options_.retain_ns: the commit time of each epoch in the window and
  // the one before it, oldest first (recovered from the log, then added by
  // Publish).
  std::map<Epoch, uint64_t> epoch_times_;
  // Sources a compaction found nothing to gain from at the retained floor,
  // and when: CompactionDue is false for the same sources for a while.
  std::vector<uint32_t> futile_sources_;
  uint64_t futile_at_ns_ = 0;
  std::vector<Slot> index_;  // by pgno; pgno >= size() is absent
  std::map<uint32_t, std::unique_ptr<LogFile>> files_;

  // An install in progress (store_install.cc): its file and the index it
  // will publish.
  std::unique_ptr<LogFile> install_;
  std::vector<Slot> install_index_;
  uint64_t install_pages_ = 0, install_trims_ = 0;
};

// The log files' entry and commit blocks as ReadHistory read them, through
// descriptors of its own (store_history.cc).
struct PageStore::Impl::History {
  struct File {
    int fd = -1;
    Epoch ceiling = 0;  // LogFile::ceiling
    ScannedFile scan;
  };
  History() = default;
  History(const History&) = delete;
  History& operator=(const History&) = delete;
  ~History() {
    for (File& f : files)
      if (f.fd >= 0) os().close(f.fd);
  }

  // Whether group g of file f records an epoch of the durable image: a
  // writer file's, neither superseded (the rollback rule) nor newer than
  // the image the store knows.
  bool Counts(const File& f, const ScannedGroup& g) const {
    return f.scan.info.kind == logfmt::FileKind::kWriter && g.kind == logfmt::CommitKind::kEpoch &&
           g.image.epoch <= std::min(f.ceiling, image.epoch);
  }

  // The image at `epoch` as the files record it: a writer file's base
  // image or counted group, or a group of a whole-image file (compaction,
  // install); nullopt if no file records it.
  std::optional<ImageInfo> RecordedImage(Epoch epoch) const {
    std::optional<ImageInfo> at;
    for (const File& f : files) {
      const bool whole_image = f.scan.info.kind != logfmt::FileKind::kWriter;
      if (!whole_image && f.scan.info.base_image.epoch == epoch && epoch <= f.ceiling) at = f.scan.info.base_image;
      for (const ScannedGroup& g : f.scan.groups)
        if (g.image.epoch == epoch && (whole_image || Counts(f, g))) at = g.image;
    }
    return at;
  }

  // Per page below `hwm`, the version that was current at `epoch`, as
  // recovery builds the index (store_recover.cc) with `epoch` as the newest
  // epoch that counts; kAbsent where no file holds one.
  std::vector<Slot> VersionsAt(Epoch epoch, Pgno hwm) const;

  ImageInfo image;
  std::vector<File> files;  // in number order
};

// An epoch's group, laid out at the active file's end and written by
// Persist, or by Write and later made durable by Sync.
struct PageStore::Impl::Group {
  Group(uint64_t at, Epoch epoch) : start(at), w(at, epoch) {}
  uint64_t start;
  GroupWriter w;
  std::vector<iovec> padded;  // a small group's iovecs and the zeros, if padded
  uint64_t padded_to = 0;
  std::vector<Slot> slots;    // per page of the epoch
  ImageInfo im;
  uint64_t time_ns = 0;  // its commit record's wall clock
  // Write only: what Sync publishes, copied from the epoch.
  std::vector<Pgno> pages;
  std::vector<Run> discarded;

  const std::vector<iovec>& iov() const { return padded.empty() ? w.iov() : padded; }
};

}  // namespace pheap
