// The store's history, for inspection: the retained epochs, what a range of
// them changed, and the image as of an earlier epoch. Read afresh from the
// log files through descriptors of its own, so the store's lock is held only
// while the files are listed, and a compaction deleting a file meanwhile
// changes nothing read from it.
#include <fcntl.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "base/os.h"
#include "store/page_store_impl.h"

namespace pheap {

using namespace logfmt;

Result<std::unique_ptr<PageStore::Impl::History>> PageStore::Impl::ReadHistory() const {
  auto h = std::make_unique<History>();
  std::vector<uint64_t> ends;
  {
    std::shared_lock lock(mu_);
    h->image = image_;
    for (const auto& [number, f] : files_) {
      History::File hf;
      hf.fd = ::fcntl(f->fd, F_DUPFD_CLOEXEC, 0);
      if (hf.fd < 0) return Status::FromErrno("reading the history of heap store " + path_, errno);
      hf.ceiling = f->ceiling;
      hf.scan.path = f->path;
      hf.scan.info.number = number;
      h->files.push_back(std::move(hf));
      ends.push_back(f->end);
    }
  }
  // Only as far as each file's log was durable when listed: past it a
  // writer may be appending an epoch.
  for (size_t i = 0; i < h->files.size(); ++i) {
    History::File& f = h->files[i];
    const std::string path = f.scan.path;
    const uint64_t number = f.scan.info.number;
    f.scan = ScannedFile{};
    PHEAP_RETURN_IF_ERROR(ScanLogFile(f.fd, path, number, heap_id_, nullptr, &f.scan, ends[i])
                              .Annotate("reading the history of heap store " + path_));
  }
  return h;
}

namespace {

// "1-5, 11-15", or "none".
std::string Ranges(const std::vector<Epoch>& epochs) {
  std::string out;
  for (size_t i = 0; i < epochs.size();) {
    size_t j = i;
    while (j + 1 < epochs.size() && epochs[j + 1] == epochs[j] + 1) ++j;
    out += fmt::format("{}{}", out.empty() ? "" : ", ",
                       i == j ? fmt::format("{}", epochs[i]) : fmt::format("{}-{}", epochs[i], epochs[j]));
    i = j + 1;
  }
  return out.empty() ? "none" : out;
}

}  // namespace

Result<std::vector<EpochRecord>> PageStore::Epochs() const {
  auto h = impl_->ReadHistory();
  if (!h.ok()) return h.status();
  std::vector<EpochRecord> out;
  for (const auto& f : (*h)->files)
    for (const ScannedGroup& g : f.scan.groups) {
      if (!(*h)->Counts(f, g)) continue;
      uint64_t discarded = 0;
      for (const TrimEntry& t : g.trims) discarded += t.count;
      out.push_back({g.image.epoch, g.image.term, g.facts.time_ns, g.facts.pause_ns, g.pages.size(), discarded,
                     g.end - g.start, f.scan.info.number});
    }
  std::sort(out.begin(), out.end(), [](const EpochRecord& a, const EpochRecord& b) { return a.epoch < b.epoch; });
  return out;
}

Result<EpochDiff> PageStore::Changes(Epoch from, Epoch to) const {
  auto h = impl_->ReadHistory();
  if (!h.ok()) return h.status();
  std::vector<Epoch> retained;
  for (const auto& f : (*h)->files)
    for (const ScannedGroup& g : f.scan.groups)
      if ((*h)->Counts(f, g)) retained.push_back(g.image.epoch);
  std::sort(retained.begin(), retained.end());
  const auto lo = std::lower_bound(retained.begin(), retained.end(), from);
  const auto hi = std::upper_bound(retained.begin(), retained.end(), to);
  if (from > to || lo == retained.end() || *lo != from || static_cast<uint64_t>(hi - lo) != to - from + 1)
    return Status::InvalidArgument(
        fmt::format("heap store {}: epochs {} to {} are not all retained: the log holds the records of epochs {}",
                    path(), from, to, Ranges(retained)));
  EpochDiff c;
  c.from = from;
  c.to = to;
  std::vector<Run> trims;
  for (const auto& f : (*h)->files)
    for (const ScannedGroup& g : f.scan.groups) {
      if (!(*h)->Counts(f, g) || g.image.epoch <= from || g.image.epoch > to) continue;
      for (const ScannedPage& p : g.pages) c.pages.push_back(p.pgno);
      for (const TrimEntry& t : g.trims) trims.push_back({t.first, t.count});
    }
  std::sort(c.pages.begin(), c.pages.end());
  c.pages.erase(std::unique(c.pages.begin(), c.pages.end()), c.pages.end());
  std::sort(trims.begin(), trims.end(), [](const Run& a, const Run& b) { return a.first < b.first; });
  for (const Run& r : trims) {
    if (!c.discarded.empty() && r.first <= c.discarded.back().end())
      c.discarded.back().count = std::max(c.discarded.back().end(), r.end()) - c.discarded.back().first;
    else c.discarded.push_back(r);
  }
  return c;
}

// ---- the image as of an epoch ----

struct EpochImage::Version {
  Slot slot;
};

EpochImage::EpochImage() = default;

EpochImage::~EpochImage() {
  for (const auto& [number, fd] : fds_) os().close(fd);
}

Status EpochImage::ReadRun(Pgno first, uint32_t count, uint8_t* out, uint64_t* present) {
  if (present != nullptr) std::memset(present, 0, ((count + 63) / 64) * sizeof(uint64_t));
  for (uint32_t i = 0; i < count; ++i) {
    uint8_t* dst = out + uint64_t{i} * kPageSize;
    const Pgno pg = first + i;
    if (pg >= index_.size() || index_[pg].slot.state != Slot::kPage) {
      std::memset(dst, 0, kPageSize);
      continue;
    }
    const Slot& s = index_[pg].slot;
    const std::string file = LogFileName(s.file);
    ssize_t r = ReadFull(fds_.at(s.file), dst, kPageSize, s.offset);
    if (r < 0)
      return Status::FromErrno(
          fmt::format("reading page {} (epoch {}) from {} at offset {}", pg, s.epoch, file, s.offset),
          static_cast<int>(-r));
    const uint64_t got = r == static_cast<ssize_t>(kPageSize) ? PageChecksum(dst) : ~s.checksum;
    if (got != s.checksum)
      return Status::Corruption(fmt::format("page {} (epoch {}) in log file {} at offset {} fails its checksum", pg,
                                            s.epoch, file, s.offset));
    if (present != nullptr) present[i >> 6] |= uint64_t{1} << (i & 63);
  }
  return Status::Ok();
}

Result<std::unique_ptr<EpochImage>> PageStore::ImageAt(Epoch epoch) const {
  auto hr = impl_->ReadHistory();
  if (!hr.ok()) return hr.status();
  Impl::History& h = **hr;
  // A compaction (or an install) holds only the versions live at its epoch.
  Epoch lowest = 1;
  for (const auto& f : h.files)
    if (f.scan.info.kind != FileKind::kWriter && f.scan.closed)
      lowest = std::max(lowest, f.scan.groups.back().image.epoch);
  const std::optional<ImageInfo> recorded = h.RecordedImage(epoch);
  const bool found = recorded.has_value();
  const ImageInfo at = recorded.value_or(ImageInfo{});
  if (epoch < lowest || epoch > h.image.epoch || !found)
    return Status::NotFound(fmt::format(
        "heap store {}: epoch {} is not retained: the oldest retained epoch is {} and the newest {}{}", path(), epoch,
        lowest, h.image.epoch,
        lowest > 1 ? fmt::format(" (a compaction at epoch {} kept only the pages live then; config retain= keeps more)",
                                 lowest)
                   : ""));
  std::unique_ptr<EpochImage> img(new EpochImage());
  img->image_ = at;
  const std::vector<Slot> then = h.VersionsAt(epoch, at.hwm);
  img->index_.resize(then.size());
  for (size_t p = 0; p < then.size(); ++p) img->index_[p].slot = then[p];
  for (auto& f : h.files) {
    img->fds_.emplace(f.scan.info.number, f.fd);
    f.fd = -1;
  }
  return img;
}

std::vector<Slot> PageStore::Impl::History::VersionsAt(Epoch epoch, Pgno hwm) const {
  std::vector<Slot> then(hwm);
  auto apply = [&](Pgno pgno, const Slot& s) {
    if (pgno >= then.size()) return;
    Slot& cur = then[pgno];
    if (cur.state == Slot::kAbsent || cur.epoch <= s.epoch) cur = s;
  };
  for (const File& f : files) {
    const Epoch limit = std::min(f.ceiling, epoch);
    const auto file = static_cast<uint32_t>(f.scan.info.number);
    for (const ScannedGroup& g : f.scan.groups) {
      if (g.kind == CommitKind::kEpoch && g.image.epoch > limit) break;
      for (const ScannedPage& p : g.pages)
        if (p.epoch <= limit) apply(p.pgno, Slot{p.epoch, p.offset, p.checksum, file, Slot::kPage});
      for (const TrimEntry& t : g.trims)
        if (t.epoch <= limit)
          for (Pgno p = t.first; p < std::min<Pgno>(t.first + t.count, then.size()); ++p)
            apply(p, Slot{t.epoch, 0, 0, file, Slot::kTrim});
    }
  }
  return then;
}

}  // namespace pheap
