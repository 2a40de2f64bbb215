// Recovery: rebuilding the durable image and the index from the log files.
// The rules are in docs/store-format.md, "Recovery across files"; each step
// below is one of them.
#include <fcntl.h>
#include <sys/stat.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include "base/log.h"
#include "base/os.h"
#include "store/page_store_impl.h"

namespace pheap {

using namespace logfmt;

namespace {

// A writer file as the epoch chain sees it: present, or known only from the
// sources list of the compaction that replaced it.
struct ChainLink {
  Epoch base;
  Epoch last;
  std::string where;  // where its log ends, for messages
};

// The files found and what has been decided about them so far. Owns the fds
// until they move into the store's LogFile objects.
class Recovery {
 public:
  Recovery(const std::string& path, const PageStoreOptions& o, CorruptionReporter* reporter)
      : path_(path), options_(o), reporter_(reporter), writable_(!o.read_only) {}
  ~Recovery() {
    for (auto& [n, fd] : fds_) os().close(fd);
  }
  Recovery(const Recovery&) = delete;
  Recovery& operator=(const Recovery&) = delete;

  void ReadTail(HeapId heap_id);
  Status Scan(HeapId heap_id, uint64_t* next_number);
  Status CheckDamage();
  void SettleCompactions();
  Status WalkChain();
  void ComputeCeilings();
  Status ChooseImage(bool* found, ImageInfo* image);
  Status CheckTail(Epoch recovered);
  bool any_files() const { return any_files_; }
  bool tail_ahead() const { return tail_ahead_; }
  // The chain's last link: the file holding the image, and where its log ends
  // (0 if it was compacted).
  uint64_t reached_file() const { return reached_file_; }
  uint64_t reached_end() const { return reached_end_; }

  std::map<uint64_t, ScannedFile>& scanned() { return scanned_; }
  Epoch ceiling(uint64_t number) const { return ceiling_.at(number); }
  int TakeFd(uint64_t number) {
    int fd = fds_.at(number);
    fds_.erase(number);
    return fd;
  }

 private:
  void Drop(uint64_t number, const char* why, bool unlink);
  void Report(const std::string& file, uint64_t offset, const std::string& what) {
    if (reporter_ != nullptr) reporter_->Corruption(file, offset, what);
  }

  const std::string& path_;
  const PageStoreOptions& options_;
  CorruptionReporter* reporter_;
  const bool writable_;
  bool any_files_ = false;
  std::map<uint64_t, ScannedFile> scanned_;
  std::map<uint64_t, int> fds_;
  std::map<uint64_t, ChainLink> chain_;
  Epoch reached_ = 0;
  uint64_t reached_file_ = 0, reached_end_ = 0;
  std::string reached_where_ = "the start of the log";
  std::optional<TailRecord> tail_;  // TAIL, if whole
  bool tail_ahead_ = false;         // TAIL named an epoch the log no longer reaches
  bool loss_reported_ = false;      // a salvage already reported lost epochs
  uint64_t gap_at_ = UINT64_MAX;  // salvage: writer files from here on are set aside
  std::map<uint64_t, Epoch> ceiling_;
};

void Recovery::Drop(uint64_t number, const char* why, bool unlink) {
  std::string p = scanned_.at(number).path;
  os().close(TakeFd(number));
  scanned_.erase(number);
  if (unlink && writable_) {
    PHEAP_LOG_INFO("heap store {}: removing {} ({})", path_, p, why);
    int r = os().unlink(p.c_str());
    if (r < 0 && r != -ENOENT) PHEAP_LOG_WARN("heap store {}: cannot remove {}: {}", path_, p, std::strerror(-r));
  }
}

// True for a file of at most one block whose header is not whole: what a
// machine's crash can leave of a log file begun at open (see Scan).
bool UnfinishedNewFile(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size > static_cast<off_t>(kBlockSize)) return false;
  auto h = std::make_unique<FileHeader>();
  ssize_t r = ReadFull(fd, h.get(), kBlockSize, 0);
  return r >= 0 && (static_cast<size_t>(r) < kBlockSize || h->magic != kFileMagic || !Intact(*h));
}

Status Recovery::Scan(HeapId heap_id, uint64_t* next_number) {
  std::vector<std::pair<uint64_t, std::string>> names;
  std::error_code ec;
  for (const auto& de : std::filesystem::directory_iterator(path_, ec)) {
    std::string fname = de.path().filename().string();
    if (auto n = ParseLogFileName(fname)) {
      names.emplace_back(*n, de.path().string());
      *next_number = std::max(*next_number, *n + 1);
    } else if (writable_ && fname.starts_with("log-") && fname.ends_with(".pheap.tmp")) {
      PHEAP_LOG_INFO("heap store {}: removing unfinished new log file {}", path_, fname);
      os().unlink(de.path().c_str());
    }
  }
  if (ec) return Status::FromErrno("listing heap store directory " + path_, ec.value());
  for (const auto& [number, fpath] : names) {
    int fd = os().open(fpath.c_str(), O_RDONLY, 0);
    if (fd < 0) return Status::FromErrno("opening log file " + fpath, -fd);
    if (UnfinishedNewFile(fd)) {
      // A writer session begins its file at open and syncs it with its
      // first epoch: a crash of the machine before that may leave the
      // directory entry durable and the header not. No epoch can lie in a
      // file of one block, so it held nothing.
      os().close(fd);
      if (writable_) {
        PHEAP_LOG_INFO("heap store {}: removing {}, a log file begun but never written", path_, fpath);
        os().unlink(fpath.c_str());
      }
      continue;
    }
    any_files_ = true;
    fds_[number] = fd;
    ScannedFile sf;
    PHEAP_RETURN_IF_ERROR(
        ScanLogFile(fd, fpath, number, heap_id, reporter_, &sf).Annotate("opening heap store " + path_));
    if (sf.header_ok) {
      scanned_.emplace(number, std::move(sf));
    } else {
      os().close(TakeFd(number));
    }
  }
  return Status::Ok();
}

// Damage inside a file's durable log is fatal unless a later writer session
// already began from the intact part (a salvage done before), or a finished
// install replaced it.
Status Recovery::CheckDamage() {
  for (const auto& [number, sf] : scanned_) {
    if (sf.damage.empty()) continue;
    bool settled = std::any_of(scanned_.upper_bound(number), scanned_.end(), [&](const auto& later) {
      return (later.second.info.kind == FileKind::kWriter && later.second.info.base_image.epoch <= sf.last_epoch()) ||
             (later.second.info.kind == FileKind::kInstall && later.second.closed);
    });
    if (settled) continue;
    if (!options_.salvage)
      return Status::Corruption(
          fmt::format("heap store {}: {}. Restore the store, or open with salvage to fall back to epoch {} "
                      "(later epochs are lost)",
                      path_, sf.damage, sf.last_epoch()));
    PHEAP_LOG_WARN("heap store {}: salvage: {}", path_, sf.damage);
    loss_reported_ = true;
  }
  return Status::Ok();
}

// An unclosed compaction or install never happened; a closed compaction
// replaces its sources, which a crash may have left behind. Builds the chain
// of writer and install files.
void Recovery::SettleCompactions() {
  // A finished install holds a whole image: the chain starts over there, and
  // the files before it (which a crash after its closing record may have
  // left) are superseded.
  uint64_t installed_at = 0;
  for (const auto& [number, sf] : scanned_)
    if (sf.info.kind == FileKind::kInstall && sf.closed) installed_at = number;
  for (auto it = scanned_.begin(); it != scanned_.end();) {
    const auto& [number, sf] = *it++;
    if (number < installed_at) {
      Drop(number, "replaced by an installed image", true);
      continue;
    }
    if (sf.info.kind == FileKind::kInstall) {
      if (!sf.closed) Drop(number, "install of an image that did not finish", true);
      continue;
    }
    if (sf.info.kind != FileKind::kCompaction) continue;
    if (!sf.closed) {
      Drop(number, "compaction that did not finish", true);
      continue;
    }
    for (const SourceEntry& src : sf.groups.back().sources)
      chain_[src.file_number] = {src.base_epoch, src.last_epoch,
                                 fmt::format("{} (compacted)", LogFileName(src.file_number))};
  }
  for (const auto& [number, link] : chain_)
    if (scanned_.count(number) != 0) Drop(number, "already compacted", true);
  for (const auto& [number, sf] : scanned_)
    if (sf.info.kind == FileKind::kWriter || sf.info.kind == FileKind::kInstall)
      chain_[number] = {sf.info.base_image.epoch, sf.last_epoch(), fmt::format("{} offset {}", sf.path, sf.end)};
}

// Each writer file continues from its base epoch, which the files before it
// must have reached.
Status Recovery::WalkChain() {
  for (const auto& [number, link] : chain_) {
    if (link.base <= reached_) {
      reached_ = link.last;
      reached_where_ = link.where;
      reached_file_ = number;
      auto present = scanned_.find(number);
      reached_end_ = present != scanned_.end() ? present->second.end : 0;
      continue;
    }
    std::string what = fmt::format(
        "log file {} begins from epoch {}, but the log before it ends at epoch {} ({}): a log file was "
        "truncated or lost; the last intact epoch is {}",
        LogFileName(number), link.base, reached_, reached_where_, reached_);
    Report(path_ + "/" + LogFileName(number), 0, what);
    if (!options_.salvage)
      return Status::Corruption(
          fmt::format("heap store {}: {}. Restore the missing log, or open with salvage to fall back to epoch {} "
                      "(later epochs are lost)",
                      path_, what, reached_));
    PHEAP_LOG_WARN("heap store {}: {}; salvage: falling back to epoch {}", path_, what, reached_);
    loss_reported_ = true;
    gap_at_ = number;
    break;
  }
  for (auto it = scanned_.lower_bound(gap_at_); it != scanned_.end();) {
    const auto& [number, sf] = *it++;
    if (sf.info.kind != FileKind::kWriter) continue;
    std::string p = sf.path;
    Drop(number, "", false);
    if (writable_ && os().rename(p.c_str(), (p + ".salvaged").c_str()) == 0)
      PHEAP_LOG_WARN("heap store {}: set {} aside as {}.salvaged", path_, p, p);
  }
  return Status::Ok();
}

// An epoch file f holds stays valid only up to the base epoch of every
// writer file after f: a later session that began from an earlier epoch
// superseded the rest.
void Recovery::ComputeCeilings() {
  Epoch low = reached_;
  auto link = chain_.rbegin();
  for (auto it = scanned_.rbegin(); it != scanned_.rend(); ++it) {
    for (; link != chain_.rend() && link->first > it->first; ++link)
      if (link->first < gap_at_) low = std::min(low, link->second.base);
    ceiling_[it->first] = low;
  }
}

// The image is the valid commit (or writer file header) with the highest
// epoch; the chain must have reached exactly that epoch.
Status Recovery::ChooseImage(bool* found, ImageInfo* best) {
  *found = false;
  auto consider = [&](const ImageInfo& im, Epoch limit) {
    if (im.epoch <= limit && (!*found || im.epoch >= best->epoch)) {
      *best = im;
      *found = true;
    }
  };
  for (const auto& [number, sf] : scanned_) {
    if (sf.info.kind == FileKind::kWriter) consider(sf.info.base_image, ceiling_[number]);
    for (const ScannedGroup& g : sf.groups) consider(g.image, ceiling_[number]);
  }
  if (!*found || best->epoch == reached_) return Status::Ok();
  std::string what =
      fmt::format("the log reaches epoch {} but the newest image found is epoch {}", reached_, best->epoch);
  if (!options_.salvage)
    return Status::Corruption(fmt::format("heap store {}: {}: open with salvage to fall back", path_, what));
  PHEAP_LOG_WARN("heap store {}: {}; salvage: falling back to epoch {}", path_, what, best->epoch);
  Report(path_, 0, what);
  loss_reported_ = true;
  for (auto& [number, limit] : ceiling_) limit = std::min(limit, best->epoch);
  return Status::Ok();
}

// Read before the log files, so that a writer committing meanwhile can only
// leave TAIL behind what the scan finds. A TAIL that is not whole (torn by a
// crash) or not ours checks nothing.
void Recovery::ReadTail(HeapId heap_id) {
  const std::string p = path_ + "/" + kTailFileName;
  int fd = os().open(p.c_str(), O_RDONLY, 0);
  if (fd < 0) {
    if (fd != -ENOENT) PHEAP_LOG_WARN("heap store {}: cannot open {}: {}; not checked", path_, p, std::strerror(-fd));
    return;
  }
  TailRecord t{};
  ssize_t r = ReadFull(fd, &t, sizeof(t), 0);
  os().close(fd);
  if (r != static_cast<ssize_t>(sizeof(t)) || !TailRecordIntact(t) || t.heap_id != heap_id) {
    PHEAP_LOG_WARN("heap store {}: {} is not whole or names another heap; not checked (a writable open rewrites it)", path_, p);
    return;
  }
  if (t.version > kFormatVersion) {
    PHEAP_LOG_WARN("heap store {}: {} was written by format version {}; not checked", path_, p, t.version);
    return;
  }
  tail_ = t;
}

// The chain shows a file that lost epochs only through the file after it,
// so the newest file could be cut at a group boundary or deleted unseen:
// TAIL, written after each durable epoch, says where the log had reached.
// A closed install numbered after the file TAIL names supersedes it.
Status Recovery::CheckTail(Epoch recovered) {
  if (!tail_ || recovered >= tail_->epoch) return Status::Ok();
  for (const auto& [number, sf] : scanned_)
    if (sf.info.kind == FileKind::kInstall && sf.closed && number > tail_->file_number) return Status::Ok();
  tail_ahead_ = true;
  if (loss_reported_) return Status::Ok();
  std::string what = fmt::format(
      "{} records that log file {} held epoch {} (its log reaching offset {}), but the log ends at epoch {} ({}): "
      "the newest log file was truncated or deleted; {} lost",
      kTailFileName, LogFileName(tail_->file_number), tail_->epoch, tail_->end, recovered, reached_where_,
      tail_->epoch == recovered + 1 ? fmt::format("epoch {} is", tail_->epoch)
                                    : fmt::format("epochs {} to {} are", recovered + 1, tail_->epoch));
  Report(path_ + "/" + LogFileName(tail_->file_number), tail_->end, what);
  if (!options_.salvage)
    return Status::Corruption(
        fmt::format("heap store {}: {}. Restore the missing log, or open with salvage to continue from epoch {} "
                    "(later epochs are lost)",
                    path_, what, recovered));
  PHEAP_LOG_WARN("heap store {}: {}; salvage: continuing from epoch {}", path_, what, recovered);
  return Status::Ok();
}

}  // namespace

Status PageStore::Impl::Recover() {
  Recovery rec(path_, options_, reporter_);
  rec.ReadTail(heap_id_);
  PHEAP_RETURN_IF_ERROR(rec.Scan(heap_id_, &next_file_number_));
  PHEAP_RETURN_IF_ERROR(rec.CheckDamage());
  rec.SettleCompactions();
  PHEAP_RETURN_IF_ERROR(rec.WalkChain());
  rec.ComputeCeilings();
  bool found = false;
  ImageInfo im;
  PHEAP_RETURN_IF_ERROR(rec.ChooseImage(&found, &im));
  PHEAP_RETURN_IF_ERROR(rec.CheckTail(found ? im.epoch : 0));
  // No epoch became durable: nothing depends on the recorded region, so
  // the opener's is taken (a create that failed part way, or a crash
  // before the first commit, does not fix the next open's region).
  const bool adopt = found && im.epoch == 0 && !options_.read_only && options_.size != 0 &&
                     (im.base != options_.base || im.size != options_.size);
  if (!found || adopt) {
    if (!rec.any_files() && (options_.read_only || !options_.create_if_missing))
      return Status::NotFound(fmt::format("no heap store at {}: check the dir and the heap name", path_));
    if (!adopt && rec.any_files() && !options_.salvage)
      return Status::Corruption(
          fmt::format("heap store {} holds log files but none is readable: restore it, or open with salvage "
                      "to start it empty",
                      path_));
    if (options_.base % kPageSize != 0 || options_.size % kPageSize != 0 || options_.size == 0 ||
        options_.size > kMaxRegionSize || options_.base > kUserAddressLimit - options_.size)
      return Status::InvalidArgument(
          fmt::format("creating heap store {}: region base {:#x} size {:#x} is not valid: both must be "
                      "multiples of {}, 0 < size <= {:#x} and base + size <= {:#x}",
                      path_, options_.base, options_.size, kPageSize, kMaxRegionSize, kUserAddressLimit));
    if (adopt)
      PHEAP_LOG_INFO("heap store {}: holds no durable epoch; taking region {:#x}+{:#x} in place of {:#x}+{:#x}", path_,
                     options_.base, options_.size, im.base, im.size);
    im = ImageInfo{heap_id_, 0, im.term, options_.base, options_.size, 0};
  }
  im.heap_id = heap_id_;
  image_ = im;
  recovered_tail_ = MakeTailRecord(rec.reached_file(), im, rec.reached_end());
  tail_ahead_ = rec.tail_ahead();

  index_.assign(image_.hwm, Slot{});
  for (auto& [number, sf] : rec.scanned()) {
    const Epoch limit = rec.ceiling(number);
    const auto file = static_cast<uint32_t>(number);
    for (const ScannedGroup& g : sf.groups) {
      if (g.kind == CommitKind::kEpoch && g.image.epoch > limit) break;
      if (options_.retain_ns != 0 && g.kind == CommitKind::kEpoch && sf.info.kind == FileKind::kWriter)
        epoch_times_[g.image.epoch] = g.facts.time_ns;
      for (const ScannedPage& p : g.pages)
        if (p.epoch <= limit) Apply(p.pgno, Slot{p.epoch, p.offset, p.checksum, file, Slot::kPage});
      for (const TrimEntry& t : g.trims)
        if (t.epoch <= limit) ApplyTrim(t, file);
    }
    auto lf = std::make_unique<LogFile>();
    lf->path = sf.path;
    lf->fd = rec.TakeFd(number);
    lf->info = sf.info;
    lf->last_epoch = sf.last_epoch();
    lf->end = sf.end;
    lf->damaged = !sf.damage.empty();
    lf->ceiling = limit;
    if (sf.closed) {
      lf->sources = sf.groups.back().sources;
      lf->closing = sf.groups.back().facts;
    }
    files_.emplace(file, std::move(lf));
  }
  for (const Slot& s : index_)
    if (s.state == Slot::kPage) ++files_.at(s.file)->live_pages;
  PHEAP_LOG_DEBUG("heap store {}: opened at epoch {} ({} log files)", path_, image_.epoch, files_.size());
  return Status::Ok();
}

void PageStore::Impl::Apply(Pgno pgno, const Slot& s) {
  if (pgno >= index_.size()) return;  // at or above hwm: reads as never stored
  Slot& cur = index_[pgno];
  if (cur.state != Slot::kAbsent && cur.epoch > s.epoch) return;
  cur = s;
}

void PageStore::Impl::ApplyTrim(const TrimEntry& t, uint32_t file) {
  // Beyond the index nothing is stored, so nothing needs hiding.
  Pgno end = std::min<Pgno>(t.first + t.count, index_.size());
  for (Pgno p = t.first; p < end; ++p) Apply(p, Slot{t.epoch, 0, 0, file, Slot::kTrim});
}

}  // namespace pheap
