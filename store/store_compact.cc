// Compaction and verification: the two operations that walk every live page.
#include <fcntl.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>

#include "base/log.h"
#include "base/os.h"
#include "store/page_store_impl.h"

namespace pheap {

using namespace logfmt;

namespace {

// How long CompactionDue trusts a compaction that found nothing to gain
// at the retained floor (the floor moves with every commit).
constexpr uint64_t kRetainedRecheckNs = uint64_t{10} * 1000 * 1000 * 1000;

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using PageBuffer = std::unique_ptr<uint8_t, FreeDeleter>;

PageBuffer AllocPages(size_t pages) {
  return PageBuffer(static_cast<uint8_t*>(std::aligned_alloc(kPageSize, pages * kPageSize)));
}

}  // namespace

struct PageStore::Impl::LiveSet {
  struct Page {
    Pgno pgno;
    Slot slot;
  };
  std::vector<Page> pages;
  std::vector<TrimEntry> trims;
};

Epoch PageStore::Impl::RetainFloorLocked() const {
  const Epoch durable = image_.epoch;
  Epoch floor = durable;
  if (options_.retain_epochs > 1 && durable > 1)
    floor = durable > options_.retain_epochs ? durable - options_.retain_epochs + 1 : 1;
  if (options_.retain_ns != 0) {
    const uint64_t now = WallClockNs();
    const uint64_t window = now > options_.retain_ns ? now - options_.retain_ns : 0;
    for (const auto& [epoch, time_ns] : epoch_times_)
      if (time_ns >= window) {
        floor = std::min(floor, epoch);
        break;
      }
  }
  return floor;
}

// Sealed files below the live ratio, their padding counted: among them the
// files of sessions that wrote no epoch, and compactions' files emptied
// since. With past epochs retained, only files whose epochs are all at
// most the oldest retained one: a newer file holds versions that epoch
// and the later ones need.
// A damaged file that stays keeps the writer files after it that began
// from its intact part: recovery accepts its damage only while one follows.
std::vector<uint32_t> PageStore::Impl::CompactionSourcesLocked() const {
  std::vector<uint32_t> out;
  std::vector<const LogFile*> kept_damaged;
  const Epoch floor = RetainFloorLocked();
  for (const auto& [number, f] : files_) {
    if (f.get() == active_) continue;
    if (f->last_epoch > floor) {
      if (f->damaged) kept_damaged.push_back(f.get());
      continue;
    }
    double live = static_cast<double>(f->live_pages * kPageSize);
    if (live < options_.compact_live_ratio * static_cast<double>(f->footprint()))
      out.push_back(number);
    else if (f->damaged)
      kept_damaged.push_back(f.get());
  }
  std::erase_if(out, [&](uint32_t n) {
    const LogFile& w = *files_.at(n);
    return w.info.kind == FileKind::kWriter && std::any_of(kept_damaged.begin(), kept_damaged.end(), [&](const LogFile* d) {
             return d->info.number < n && w.info.base_image.epoch <= d->last_epoch;
           });
  });
  return out;
}

std::vector<uint32_t> PageStore::Impl::CompactionSources() const {
  std::shared_lock lock(mu_);
  return CompactionSourcesLocked();
}

bool PageStore::Impl::CompactionDue() const {
  if (options_.read_only) return false;
  std::shared_lock lock(mu_);
  uint64_t sealed = 0, live = 0;
  for (const auto& [number, f] : files_) {
    live += f->live_pages * kPageSize;
    if (f.get() != active_) sealed += f->footprint();
  }
  if (static_cast<double>(sealed) <= static_cast<double>(live) / options_.compact_live_ratio) return false;
  uint64_t gain = 0;
  const std::vector<uint32_t> sources = CompactionSourcesLocked();
  // Retained epochs may keep what these hold: asked again only after a while.
  if (sources == futile_sources_ && WallClockNs() - futile_at_ns_ < kRetainedRecheckNs) return false;
  for (uint32_t n : sources) {
    const LogFile& f = *files_.at(n);
    gain += f.footprint() - std::min(f.footprint(), f.live_pages * kPageSize);
  }
  return gain >= kCompactMinGain;
}

ImageInfo PageStore::Impl::CollectLive(const std::vector<uint32_t>& sources, LiveSet* out) const {
  std::vector<LiveSet::Page>& live = out->pages;
  std::vector<TrimEntry>& trims = out->trims;
  std::shared_lock lock(mu_);
  for (Pgno p = 0; p < index_.size(); ++p) {
    const Slot& s = index_[p];
    if (s.state == Slot::kAbsent || !std::binary_search(sources.begin(), sources.end(), s.file)) continue;
    if (s.state == Slot::kPage) {
      live.push_back({p, s});
    } else if (!trims.empty() && trims.back().epoch == s.epoch && trims.back().first + trims.back().count == p) {
      ++trims.back().count;
    } else {
      trims.push_back({p, 1, s.epoch});
    }
  }
  return image_;
}

Result<ImageInfo> PageStore::Impl::CollectRetained(Epoch floor, std::vector<uint32_t>* sources, LiveSet* out) {
  auto hr = ReadHistory();
  if (!hr.ok()) return hr.status();
  const History& h = **hr;
  // A version older than the newest compaction's epoch was dropped unless
  // live then: no image before that epoch can be rebuilt anyway.
  for (const auto& f : h.files)
    if (f.scan.info.kind != FileKind::kWriter && f.scan.closed)
      floor = std::max(floor, f.scan.groups.back().image.epoch);
  if (floor >= h.image.epoch) return CollectLive(*sources, out);
  // The image at `floor` and, for each page, its version then: as
  // PageStore::ImageAt reads them.
  const std::optional<ImageInfo> recorded = h.RecordedImage(floor);
  const bool found = recorded.has_value();
  const ImageInfo at = recorded.value_or(ImageInfo{});
  std::vector<uint32_t> candidates = std::move(*sources);
  sources->clear();
  if (!found) return at;  // no record of it: keep every file
  const std::vector<Slot> then = h.VersionsAt(floor, at.hwm);
  // The files whose versions live at `floor` fall below the ratio.
  std::map<uint32_t, uint64_t> live;
  for (const Slot& s : then)
    if (s.state == Slot::kPage) ++live[s.file];
  {
    std::shared_lock lock(mu_);
    for (uint32_t n : candidates)
      if (static_cast<double>(live[n] * kPageSize) < options_.compact_live_ratio * files_.at(n)->footprint())
        sources->push_back(n);
    if (sources->empty()) return at;
    // A page at or above the floor's hwm whose current version lies in a
    // source (the hwm grew back since) is copied too, as the index holds it.
    for (Pgno p = at.hwm; p < index_.size(); ++p)
      if (index_[p].state == Slot::kPage && std::binary_search(sources->begin(), sources->end(), index_[p].file))
        out->pages.push_back({p, index_[p]});
  }
  for (Pgno p = 0; p < then.size(); ++p) {
    const Slot& s = then[p];
    if (s.state == Slot::kAbsent || !std::binary_search(sources->begin(), sources->end(), s.file)) continue;
    if (s.state == Slot::kPage) {
      out->pages.push_back({p, s});
    } else if (!out->trims.empty() && out->trims.back().epoch == s.epoch &&
               out->trims.back().first + out->trims.back().count == p) {
      ++out->trims.back().count;
    } else {
      out->trims.push_back({p, 1, s.epoch});
    }
  }
  std::sort(out->pages.begin(), out->pages.end(),
            [](const LiveSet::Page& a, const LiveSet::Page& b) { return a.pgno < b.pgno; });
  return at;
}

// Copies the live pages into `w`, a batch at a time, and writes them to
// `to`. `moved` gets each copied page's new offset.
Status PageStore::Impl::CopyLive(const LiveSet& set, LogFile* to, GroupWriter* w,
                                 std::vector<std::pair<Pgno, uint64_t>>* moved) {
  const std::vector<LiveSet::Page>& live = set.pages;
  PageBuffer buf = AllocPages(kEntriesPerBlock);
  if (!buf) return Status::IoError("compaction: out of memory for a copy buffer", ENOMEM);
  for (size_t at = 0; at < live.size(); at += kEntriesPerBlock) {
    size_t n = std::min<size_t>(kEntriesPerBlock, live.size() - at);
    for (size_t k = 0; k < n; ++k) {
      const LiveSet::Page& lp = live[at + k];
      uint8_t* dst = buf.get() + k * kPageSize;
      const LogFile* f;
      {
        std::shared_lock lock(mu_);
        f = files_.at(lp.slot.file).get();
      }
      // f stays open: only this thread (Compact) closes log files.
      ssize_t r = ReadFull(f->fd, dst, kPageSize, lp.slot.offset);
      if (r < 0)
        return Status::FromErrno(
            fmt::format("compaction: reading page {} from {} at offset {}", lp.pgno, f->path, lp.slot.offset),
            static_cast<int>(-r));
      uint64_t got = r == static_cast<ssize_t>(kPageSize) ? PageChecksum(dst) : ~lp.slot.checksum;
      if (got != lp.slot.checksum) return Status::Corruption("compaction stopped: " + PageError(lp.pgno, lp.slot, got));
      moved->emplace_back(lp.pgno, w->AddPage(lp.pgno, lp.slot.epoch, lp.slot.checksum, dst));
    }
    w->CloseBlock();
    if (int r = w->Drain(to->fd); r < 0) return Status::FromErrno("compaction: writing " + to->path, -r);
  }
  for (const TrimEntry& t : set.trims) w->AddTrim(t);
  return Status::Ok();
}

Status PageStore::Impl::Compact() {
  if (options_.read_only)
    return Status::InvalidArgument(
        fmt::format("heap store {} is open read-only: open it for writing to compact", path_));
  std::lock_guard step(install_mu_);
  // An install replaces every file when it closes; nothing to gain before.
  if (install_ != nullptr) return Status::Ok();
  std::vector<uint32_t> sources = CompactionSources();
  if (sources.empty()) return Status::Ok();
  // The file records the image its pages were live in, read with them: an
  // epoch committed since an earlier look may have moved a page out of the
  // sources, and the file would lack that page's version as of the epoch it
  // names (which PageStore::ImageAt reads from it).
  LiveSet copy;
  Epoch floor;
  {
    std::shared_lock lock(mu_);
    floor = RetainFloorLocked();
  }
  ImageInfo im;
  if (floor >= image().epoch) {
    im = CollectLive(sources, &copy);
  } else {
    // Past epochs retained: the file holds the versions live at the oldest
    // of them, and is that epoch's image.
    const std::vector<uint32_t> candidates = sources;
    auto at = CollectRetained(floor, &sources, &copy);
    if (!at.ok()) return at.status().Annotate("compacting heap store " + path_);
    std::unique_lock lock(mu_);
    futile_sources_ = sources.empty() ? candidates : std::vector<uint32_t>{};
    futile_at_ns_ = WallClockNs();
    if (sources.empty()) return Status::Ok();
    im = *at;
  }
  auto created = CreateLogFile(FileKind::kCompaction, im);
  if (!created.ok()) return created.status().Annotate("compacting heap store " + path_);
  std::unique_ptr<LogFile> to = std::move(created.value());
  auto fail = [&](const Status& s) {
    // Without its closing record the file is ignored; remove it now anyway.
    Remove(to->path, "failed compaction");
    return s;
  };
  GroupWriter w(kBlockSize, im.epoch);
  std::vector<std::pair<Pgno, uint64_t>> moved;
  Status s = CopyLive(copy, to.get(), &w, &moved);
  if (!s.ok()) return fail(s);
  std::vector<SourceEntry> replaced;
  uint64_t source_bytes = 0;
  {
    std::shared_lock lock(mu_);
    for (uint32_t n : sources) {
      const LogFile& f = *files_.at(n);
      source_bytes += f.footprint();
      // A writer or install file is a link of the chain; a compaction file
      // stands for the links it replaced.
      if (f.info.kind == FileKind::kWriter || f.info.kind == FileKind::kInstall)
        replaced.push_back({n, f.info.base_image.epoch, f.last_epoch});
      else
        replaced.insert(replaced.end(), f.sources.begin(), f.sources.end());
    }
  }
  std::sort(replaced.begin(), replaced.end(),
            [](const SourceEntry& a, const SourceEntry& b) { return a.file_number < b.file_number; });
  for (const SourceEntry& e : replaced) w.AddSource(e);
  // What it reclaims: the sources' bytes, less its own once closed.
  const uint64_t own = w.end() + kBlockSize;
  to->closing = CommitFacts{WallClockNs(), 0, source_bytes - std::min(source_bytes, own)};
  w.Commit(CommitKind::kCompaction, im, to->closing);
  if (int r = w.Drain(to->fd); r < 0) return fail(Status::FromErrno("compaction: writing " + to->path, -r));
  if (int r = os().fsync(to->fd); r < 0) return fail(Status::FromErrno("compaction: syncing " + to->path, -r));
  s = SyncDir();
  if (!s.ok()) return fail(s);
  to->end = w.end();
  to->sources = std::move(replaced);
  to->last_epoch = im.epoch;

  // Durable: publish, then the sources may go.
  const auto number = static_cast<uint32_t>(to->info.number);
  std::vector<std::unique_ptr<LogFile>> gone;
  {
    std::unique_lock lock(mu_);
    // A page an epoch rewrote or trimmed since CopyLive now lies in the
    // active file (sources are sealed): its copy here is dead, and older
    // than the version recovery will find.
    uint64_t live = 0;
    for (const auto& [pgno, offset] : moved) {
      Slot& cur = index_[pgno];
      if (cur.state != Slot::kPage || !std::binary_search(sources.begin(), sources.end(), cur.file)) continue;
      --files_.at(cur.file)->live_pages;
      cur.file = number;
      cur.offset = offset;
      ++live;
    }
    to->live_pages = live;
    for (Slot& cur : index_)
      if (cur.state == Slot::kTrim && std::binary_search(sources.begin(), sources.end(), cur.file)) cur.file = number;
    for (uint32_t n : sources) {
      gone.push_back(std::move(files_.at(n)));
      files_.erase(n);
    }
    files_.emplace(number, std::move(to));
    ++compactions_;
  }
  for (const auto& f : gone) Remove(f->path, "compacted");
  PHEAP_LOG_INFO("heap store {}: compacted {} log files into {} ({} live pages)", path_, gone.size(),
                 LogFileName(number), moved.size());
  return SyncDir();
}

Status PageStore::Impl::Verify(CorruptionReporter* reporter) {
  PageBuffer buf = AllocPages(1);
  if (!buf) return Status::IoError("verify: out of memory for a page buffer", ENOMEM);
  std::shared_lock lock(mu_);
  uint64_t bad = 0;
  std::string first;
  const Pgno stored = std::min<Pgno>(image_.hwm, index_.size());
  for (Pgno p = 0; p < stored; ++p) {
    if (reporter != nullptr && p % 4096 == 0) reporter->Progress(p, stored);
    const Slot& s = index_[p];
    if (s.state != Slot::kPage) continue;
    const LogFile& f = *files_.at(s.file);
    ssize_t r = ReadFull(f.fd, buf.get(), kPageSize, s.offset);
    if (r < 0)
      return Status::FromErrno(fmt::format("verify: reading page {} from {} at offset {}", p, f.path, s.offset),
                               static_cast<int>(-r));
    uint64_t got = r == static_cast<ssize_t>(kPageSize) ? PageChecksum(buf.get()) : ~s.checksum;
    if (got == s.checksum) continue;
    std::string what = PageError(p, s, got);
    if (reporter != nullptr) reporter->DamagedPage(p, f.path, s.offset, what);
    else PHEAP_LOG_WARN("{}", what);
    if (bad++ == 0) first = what;
  }
  if (reporter != nullptr) reporter->Progress(stored, stored);
  if (bad == 0) return Status::Ok();
  return Status::Corruption(fmt::format("heap store {}: {} damaged pages; the first: {}", path_, bad, first));
}

}  // namespace pheap
