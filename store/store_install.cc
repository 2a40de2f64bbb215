// Installing a whole image into a store: one install file, written part
// by part as pages arrive, closed by one commit record.
//
// The parts form a single group (no commit record between them), so a
// crash before the closing record leaves an unfinished install, which the
// next open removes (store_recover.cc): the store is as it was, empty or
// holding its previous image, which it serves meanwhile. The closing
// record's fdatasync is the one instant the image changes: from then on the
// install file begins the epoch chain at the installed image, every file
// before it is superseded (recovery drops any a crash left behind), and a
// new writer file continues from it.
#include <fmt/format.h>

#include <mutex>

#include "base/log.h"
#include "base/os.h"
#include "store/page_store_impl.h"

namespace pheap {

using namespace logfmt;

Status PageStore::Impl::InstallPages(const SealedEpoch& part) {
  std::lock_guard step(install_mu_);
  return AppendInstall(part);
}

Status PageStore::Impl::AppendInstall(const SealedEpoch& part) {
  if (options_.read_only)
    return Status::InvalidArgument(fmt::format("heap store {} is open read-only: open it for writing", path_));
  if (written_ != nullptr) return Status::InvalidArgument(NotSynced(image_.epoch + 1));
  if (!part.pages.empty() && part.data == nullptr)
    return Status::InvalidArgument(fmt::format("heap store {}: install part lists pages but no data", path_));
  if (install_ == nullptr) {
    // The install file begins from the empty image, whatever the store
    // holds now (recovery starts the chain over at a finished install); its
    // size bound is the largest region a commit may describe.
    const ImageInfo from{heap_id_, 0, 0, image_.base, kMaxRegionSize, 0};
    auto f = CreateLogFile(FileKind::kInstall, from);
    if (!f.ok()) return f.status().Annotate("installing an image");
    install_ = std::move(*f);
    install_index_.clear();
    install_pages_ = install_trims_ = 0;
  }
  const Epoch label = part.image.epoch;
  const auto file = static_cast<uint32_t>(install_->info.number);
  GroupWriter w(install_->end, label);
  std::vector<std::pair<Pgno, Slot>> slots;
  slots.reserve(part.pages.size());
  for (size_t i = 0; i < part.pages.size(); ++i) {
    const uint8_t* data = part.data + i * kPageSize;
    uint64_t sum = PageChecksum(data);
    slots.emplace_back(part.pages[i], Slot{label, w.AddPage(part.pages[i], label, sum, data), sum, file, Slot::kPage});
  }
  for (const Run& r : part.discarded) w.AddTrim(TrimEntry{r.first, r.count, label});
  w.CloseBlock();
  if (int r = w.Drain(install_->fd); r < 0)
    return Status::FromErrno(fmt::format("writing install file {}", install_->path), -r);
  install_->end = w.end();
  install_pages_ += part.pages.size();
  install_trims_ += part.discarded.size();

  // Newest label wins; a tie goes to the later part, as on recovery.
  auto apply = [&](Pgno pgno, const Slot& s) {
    if (install_index_.size() <= pgno) install_index_.resize(pgno + 1);
    Slot& cur = install_index_[pgno];
    if (cur.state == Slot::kAbsent || cur.epoch <= s.epoch) cur = s;
  };
  for (const auto& [pgno, s] : slots) apply(pgno, s);
  for (const Run& r : part.discarded)
    for (Pgno p = r.first; p < r.end() && p < install_index_.size(); ++p) apply(p, Slot{label, 0, 0, file, Slot::kTrim});
  return Status::Ok();
}

Status PageStore::Impl::InstallCommit(const ImageInfo& image) {
  std::lock_guard step(install_mu_);
  if (install_ == nullptr) PHEAP_RETURN_IF_ERROR(AppendInstall(SealedEpoch{image, {}, nullptr, {}}));
  if (image.epoch == 0 || image.hwm > image.size / kPageSize)
    return Status::InvalidArgument(
        fmt::format("heap store {}: cannot install image of epoch {} with hwm {} in {:#x} bytes", path_, image.epoch,
                    image.hwm, image.size));
  for (const Slot& s : install_index_)
    if (s.epoch > image.epoch)
      return Status::InvalidArgument(fmt::format(
          "heap store {}: install holds a page of epoch {}, newer than the image of epoch {}", path_, s.epoch,
          image.epoch));
  ImageInfo im = image;
  im.heap_id = heap_id_;
  CommitBlock c = MakeCommitBlock(CommitKind::kInstall, im, kBlockSize, install_pages_, install_trims_, 0);
  iovec v{&c, kBlockSize};
  if (int r = os().writev_datasync(install_->fd, &v, 1, static_cast<off_t>(install_->end)); r < 0)
    return Status::FromErrno(fmt::format("closing install file {} (the image is not installed; retry)", install_->path),
                             -r);
  install_->end += kBlockSize;
  install_->last_epoch = im.epoch;

  // Writer sessions continue from the installed image in a new file. The
  // image is durable already: a failure here leaves the store serving the
  // image it had until it is opened again.
  auto f = CreateLogFile(FileKind::kWriter, im);
  if (!f.ok()) return f.status().Annotate("continuing after an installed image");
  std::vector<std::unique_ptr<LogFile>> replaced;
  std::unique_lock lock(mu_);
  for (auto& [number, file] : files_) replaced.push_back(std::move(file));
  files_.clear();
  install_index_.resize(im.hwm);
  uint64_t live = 0;
  for (const Slot& s : install_index_) live += s.state == Slot::kPage;
  install_->live_pages = live;
  index_ = std::move(install_index_);
  install_index_ = {};
  files_.emplace(static_cast<uint32_t>(install_->info.number), std::move(install_));
  active_ = f->get();
  files_.emplace(static_cast<uint32_t>(active_->info.number), std::move(f.value()));
  image_ = im;
  lock.unlock();
  RecordTail(active_->info.number, im, active_->end);
  for (const auto& old : replaced) Remove(old->path, "replaced by an installed image");
  PHEAP_LOG_INFO("heap store {}: installed the image of epoch {} of term {} ({} pages)", path_, im.epoch, im.term,
                 live);
  return replaced.empty() ? Status::Ok() : SyncDir();
}

void PageStore::Impl::AbandonInstall() {
  std::lock_guard step(install_mu_);
  if (install_ == nullptr) return;
  Remove(install_->path, "install abandoned");
  install_.reset();
  install_index_.clear();
  install_pages_ = install_trims_ = 0;
}

}  // namespace pheap
