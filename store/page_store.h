// PageStore: the log-structured page store of one heap. The local store and
// every peer run this same engine (a peer keeps one PageStore per heap).
//
// On disk (format in store/log_format.h, described byte by byte in
// docs/store-format.md): a directory per heap holding LOCK and log files
// log-NNNNNNNN.pheap. A log file is a header, then per epoch a group of page
// records closed by a commit record. Only a commit record makes an epoch
// visible; anything after the last intact commit record is a torn tail and
// is ignored, never trusted. Each writer session appends to a new log file.
//
// Thread safety: ReadRun may be called from any number of threads at once,
// also while Persist or Compact runs. Persist (and Write, Sync) are called
// by one thread at a time, Compact by one thread at a time, and the two may
// run at once (see Compact).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/page_io.h"
#include "base/status.h"

namespace pheap {

struct PageStoreOptions {
  bool create_if_missing = true;
  // Inspection: no lock, no new log file, Persist and Compact refused.
  bool read_only = false;
  // A log file is closed and a new one begun once it grows past this.
  uint64_t log_file_bytes = uint64_t{256} << 20;
  // Compact() rewrites sealed log files when live bytes fall below this
  // fraction of their total.
  double compact_live_ratio = 0.5;
  // Past epochs that compaction keeps readable (ImageAt): the newest
  // retain_epochs epochs, and every epoch committed in the last retain_ns
  // nanoseconds (by the wall clock its commit record holds). 0 and 0: the
  // durable epoch only. A file holding a version that a retained epoch
  // needs is compacted only once each of its epochs is at most the oldest
  // retained one, and the compaction keeps the versions live at that epoch.
  uint64_t retain_epochs = 0;
  uint64_t retain_ns = 0;
  // The region a new store records. A store holding no durable epoch (its
  // creator never committed) takes it too, when size is not 0: nothing
  // durable depends on the region it recorded. Ignored after.
  uint64_t base = 0;
  uint64_t size = 0;
  // When the log is damaged before its last durable epoch (a log file
  // truncated or lost), open at the last intact epoch instead of failing;
  // the damage is reported and logged, later epochs are lost.
  bool salvage = false;
  // An epoch whose group (pages, entries and commit record) is at least
  // this many bytes is written with O_DIRECT, from the caller's pages
  // straight to the device, where the filesystem allows it; smaller ones,
  // and any on a filesystem that refuses, go through the page cache. A large
  // epoch then skips the page cache's copy of its data, and the image is not
  // cached twice (PHEAP_DIRECT_WRITE=0 in the benchmarks measures without).
  // 0: never.
  uint64_t direct_write_bytes = uint64_t{1} << 20;
  // A run of pages read back (ReadRun) of at least this many bytes that the
  // page cache does not hold whole is read with O_DIRECT, where the
  // filesystem allows it: the device's large reads instead of the page
  // cache's read-ahead, and no second copy of pages that were given back
  // to keep under a memory limit charged for the cache as well. Runs the
  // cache holds whole are copied from it. 0: never.
  uint64_t direct_read_bytes = uint64_t{64} << 10;
  // Called on the persisting thread each time a log file is sealed and the
  // next begun (a background compactor's cue); must return at once.
  std::function<void()> on_log_file_sealed;
};

// The newest compaction whose file the log still holds.
struct CompactionRecord {
  uint64_t file = 0;             // its log file's number; 0: none in the log
  Epoch epoch = 0;               // the image it preserved
  uint64_t time_ns = 0;          // wall clock when it closed; 0: not recorded
  uint64_t reclaimed_bytes = 0;  // its sources' bytes less its own (0: not recorded)
  uint64_t replaced_files = 0;   // writer files it stands for
};

struct PageStoreStats {
  Epoch epoch = 0;            // last durable epoch
  uint64_t log_files = 0;
  uint64_t bytes_on_disk = 0; // all log files' intact logs
  uint64_t file_bytes = 0;    // all log files' sizes, with the zeros padding them
  uint64_t live_pages = 0;    // pages with stored data in the durable image
  uint64_t compactions = 0;   // by this PageStore object
  CompactionRecord last_compaction;
};

// One epoch whose commit record the log files still hold ("retained"):
// compaction drops the records of the files it replaces.
struct EpochRecord {
  Epoch epoch = 0;
  Term term = 0;
  uint64_t time_ns = 0;    // wall clock when the store wrote it, ns since 1970; 0: not recorded
  uint64_t pause_ns = 0;   // how long its cut held the program still; 0: not recorded
  uint64_t pages = 0;      // pages it wrote
  uint64_t discarded = 0;  // pages it discarded (they read as zeros from it on)
  uint64_t bytes = 0;      // bytes of log its group takes, commit record included
  uint64_t file = 0;       // number of the log file holding it
};

// What the epochs after `from`, up to `to`, changed.
struct EpochDiff {
  Epoch from = 0, to = 0;
  std::vector<Pgno> pages;     // written by at least one of them, ascending
  std::vector<Run> discarded;  // discarded by at least one of them, ascending
                               // and merged (may overlap `pages`)
};

// The image as of an earlier epoch, read from the page versions the log
// still holds. Owns descriptors of the log files it reads, so a compaction
// that deletes them meanwhile does not disturb it.
class EpochImage final : public PageSource {
 public:
  ~EpochImage() override;
  EpochImage(const EpochImage&) = delete;
  EpochImage& operator=(const EpochImage&) = delete;
  // The image as of its epoch, as that epoch's commit record states it.
  const ImageInfo& image() const { return image_; }
  Status ReadRun(Pgno first, uint32_t count, uint8_t* out, uint64_t* present) override;

  struct Version;  // where one page's version lies

 private:
  friend class PageStore;
  EpochImage();
  ImageInfo image_;
  std::vector<Version> index_;   // by pgno, below image_.hwm
  std::map<uint64_t, int> fds_;  // by log file number
};

// Receives what a store finds wrong while opening or verifying. Never aborts.
class CorruptionReporter {
 public:
  virtual ~CorruptionReporter() = default;
  virtual void Corruption(const std::string& file, uint64_t offset, const std::string& what) = 0;
  // Verify: page `pgno`'s stored copy at `offset` of `file` fails its
  // checksum. By default reported as any other corruption.
  virtual void DamagedPage(Pgno pgno, const std::string& file, uint64_t offset, const std::string& what) {
    (void)pgno;
    Corruption(file, offset, what);
  }
  // Verify: `done` of the `total` stored pages below hwm are checked.
  virtual void Progress(Pgno done, Pgno total) {
    (void)done;
    (void)total;
  }
};

class PageStore final : public PageSource, public EpochSink {
 public:
  // Checks that `name` can name a heap: 1..kMaxHeapNameLength bytes of
  // [A-Za-z0-9._-], not "." or "..". The error says which rule it broke.
  static Status ValidateHeapName(const std::string& name);

  // Opens (or creates) the store of heap `name` under `dir` (the heap's
  // files live in dir/name/; dir is created if missing). Rebuilds the index
  // from the log. Errors, each naming the path and what to do: dir not
  // writable; a store written by a newer format version; a store held by
  // another process (names its pid); a store of another heap in that place;
  // corruption before the last durable epoch that cannot be passed over.
  static Result<std::unique_ptr<PageStore>> Open(const std::string& dir, const std::string& name,
                                                 const PageStoreOptions& options,
                                                 CorruptionReporter* reporter = nullptr);
  // The pid of the process holding the store of heap `name` under `dir`
  // open for writing, 0 if none. Reads /proc/locks: it never takes the lock,
  // so it cannot make a writer's open fail.
  static long Holder(const std::string& dir, const std::string& name);
  // Removes the store of heap `name` under `dir`: takes its lock (Busy,
  // naming the holder, if a process has it open), renames the directory
  // aside in one step, then deletes it. A crash part way leaves either the
  // whole store or a `.NAME.removed-PID` directory, never a damaged heap.
  static Status Remove(const std::string& dir, const std::string& name);

  // A store that must not be served is set aside, never deleted: its
  // directory is renamed to PATH + a mark + a detail. The marks say why:
  // damaged before its last durable epoch (kDamagedMark), or holding epochs
  // outside the replicas' lineage or removed by DROP (kStaleEpochMark, whose
  // TERM a peer keeps honouring).
  static constexpr std::string_view kDamagedMark = ".damaged";
  static constexpr std::string_view kStaleEpochMark = ".stale-epoch-";
  // The first of PATH+mark+detail, then PATH+mark+detail.2, .3, ... that
  // does not exist yet.
  static std::string SetAsideName(const std::string& path, std::string_view mark, const std::string& detail);
  // Whether the directory named `name` is a store set aside.
  static bool IsSetAside(const std::string& name);
  // A create that failed: removes the heap's directory, as Remove does, if
  // this open created it and no epoch became durable in it (nor is an
  // install under way); otherwise leaves everything as it is. The store
  // must not be used after it removed the directory; it may be destroyed.
  // Returns whether it removed it. A crash part way leaves at most a
  // `.NAME.removed-PID` directory, which no open looks at.
  // REQUIRES: no Persist, Write, Compact or install runs.
  Result<bool> RemoveIfCreated();

  ~PageStore() override;
  PageStore(const PageStore&) = delete;
  PageStore& operator=(const PageStore&) = delete;

  // The last durable image (epoch 0 with the options' base/size when new).
  ImageInfo image() const;
  // The directory holding this heap's files.
  const std::string& path() const;
  // Whether this open made that directory (the heap did not exist before).
  bool created() const;

  Status ReadRun(Pgno first, uint32_t count, uint8_t* out, uint64_t* present) override;
  // Runs in a sealed log file (a compaction's, an install's, or an earlier
  // session's epochs), never in the file this session appends to, whose
  // blocks a later epoch may overwrite (padding, a failed epoch's record).
  StoredRun LocateRun(Pgno first, uint64_t count) override;
  void WillNeed(Pgno first, uint64_t count) override;
  Status Persist(const SealedEpoch& e) override;
  bool PersistsFromRegion() const override { return true; }
  // Write puts the epoch's group into the page cache (pwritev, no sync);
  // Sync makes it durable with one fdatasync. A failed Sync leaves the
  // epoch not durable, as a failed Persist does.
  Status Write(const SealedEpoch& e) override;
  Status Sync(uint64_t pause_ns) override;

  // Installing a whole image read from elsewhere (recovery from replicas
  // into a new directory, or a replica brought to a writer's image) while
  // the store serves the image it has. InstallPages appends part.pages,
  // labelled part.image.epoch (the epoch they were read at), and
  // part.discarded, to an install file; none of it is visible until
  // InstallCommit makes `image` the durable image, each page at its newest
  // label (a later part wins a tie), and removes every earlier log file. A
  // crash before InstallCommit's fdatasync leaves the store as it was, empty
  // or holding its previous image; after it, holding `image`. Persist and
  // Write are refused while an install is open; AbandonInstall drops it.
  // REQUIRES: every label <= the installed image's epoch; one caller at a
  // time, and not concurrently with Persist.
  Status InstallPages(const SealedEpoch& part);
  Status InstallCommit(const ImageInfo& image);
  void AbandonInstall();

  // Rewrites the stored bytes of page `pgno`'s newest version with `data`
  // (4096 bytes), in place, and fdatasyncs: for a copy found damaged, with
  // a good copy read from elsewhere. Refused (kInvalidArgument, nothing
  // written) unless the store holds a page version for `pgno` whose recorded
  // XXH3 `data` matches; a copy that already reads back good is left alone.
  // A crash mid-rewrite leaves a copy that is still detected as bad.
  // Thread-safe: may run beside ReadRun, Persist and Compact.
  Status RepairPage(Pgno pgno, const uint8_t* data);

  // Rewrites the live pages of sealed log files whose live fraction is below
  // options.compact_live_ratio into a new log file, syncs it, then deletes
  // them. A crash at any instant leaves the newest durable image whole.
  // May run on another thread beside ReadRun, Persist, Write and Sync (it
  // holds mu_ exclusively only to publish; a page rewritten meanwhile keeps
  // its newer version); one Compact at a time. While an install is open it
  // returns at once, and an install step waits for a Compact to finish.
  Status Compact();
  // Whether Compact is worth running: the sealed log files take more than
  // the live image / options.compact_live_ratio (the active file, up to a
  // log file, is allowed besides), and those below the ratio hold at least
  // kCompactMinGain bytes that are not live. Cheap: walks the file list.
  bool CompactionDue() const;
  static constexpr uint64_t kCompactMinGain = uint64_t{64} << 10;
  // Reads every live page and checks its checksum; reports each bad one
  // (DamagedPage) and the progress. Returns kCorruption if any was bad.
  Status Verify(CorruptionReporter* reporter);
  PageStoreStats stats() const;
  // The epoch that last wrote or discarded each page of [first, first +
  // count) in the durable image, 0 for a page the store never held: what
  // `pheap inspect --html` colours the page map by.
  std::vector<Epoch> PageEpochs(Pgno first, uint64_t count) const;

  // The store's history, for inspection (store_history.cc). Each reads the
  // entry and commit blocks of every log file (never page data), so its
  // cost grows with the log, and takes the store's lock only to list the
  // files: a writer, in this process or another, is never held up. It sees
  // the log as far as this store knows it durable (a read-only store: as at
  // its open), never a torn epoch.
  //
  // The retained epochs, oldest first. There may be gaps where a
  // compaction replaced a log file between two that stay.
  Result<std::vector<EpochRecord>> Epochs() const;
  // The pages the epochs from + 1 .. to wrote or discarded.
  // InvalidArgument, naming the retained epochs, unless from <= to and every
  // epoch from .. to is retained.
  Result<EpochDiff> Changes(Epoch from, Epoch to) const;
  // The image as of epoch `epoch`. Exact only from the newest compaction's
  // (or install's) epoch on: a compaction keeps just the page versions live
  // at its epoch (with options.retain_*, the oldest retained epoch).
  // kNotFound, naming `epoch`, the oldest retained epoch and the durable
  // one, outside [that epoch, the durable epoch] or when the log holds no
  // record of `epoch`'s image. The EpochImage may outlive the store.
  Result<std::unique_ptr<EpochImage>> ImageAt(Epoch epoch) const;

  class Impl;

 private:
  explicit PageStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pheap
