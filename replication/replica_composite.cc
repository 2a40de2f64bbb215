#include "replication/replica_composite.h"

#include <cstdlib>
#include <utility>

#include "base/log.h"
#include "base/thread.h"

namespace pheap {

ReplicatedPages::ReplicatedPages(PageStore* local, ReplicaClient* remote)
    : local_(local), remote_(remote), durable_(remote->image()) {
  if (local_ == nullptr) return;
  const ImageInfo here_image = local_->image(), there_image = remote_->image();
  const Epoch here = here_image.epoch, there = there_image.epoch;
  // The engine set aside a local store the replicas' lineage passed.
  local_current_ = here != 0 ? !NewerImage(there_image, here_image) : there == 0;
  if (local_current_) UseLocalAsImageSource();
  if (here == 0 && there > 0)
    PHEAP_LOG_INFO("local store of the heap is empty, its replicas hold epoch {}: the heap is durable on its "
                   "replicas alone until the local store has taken their image",
                   there);
  else if (!local_current_)
    PHEAP_LOG_WARN("local store of the heap holds epoch {}, its replicas epoch {}: the heap is durable on its "
                   "replicas alone until the local store has taken their image",
                   here, there);
  else if (NewerImage(here_image, there_image)) {
    PHEAP_LOG_WARN("local store of the heap holds epoch {}, its replicas only epoch {}: installing the local image on "
                   "them; commits are durable once W of them hold it",
                   here, there);
    remote_->AdoptImage(local_->image());
  }
}

ReplicatedPages::~ReplicatedPages() {
  stop_.store(true, std::memory_order_release);
  if (restorer_.joinable()) restorer_.join();
  if (local_writer_.joinable()) {
    {
      std::lock_guard lock(local_mu_);
      local_stop_ = true;
    }
    local_cv_.notify_all();
    local_writer_.join();
  }
  if (local_in_use()) remote_->SetImageSource(nullptr);
}

void ReplicatedPages::UseLocalAsImageSource() {
  PageStore* local = local_;
  remote_->SetImageSource(local, [local] { return local->image(); });
}

ImageInfo ReplicatedPages::image() const { return local_in_use() ? local_->image() : remote_->image(); }

Status ReplicatedPages::ReadRun(Pgno first, uint32_t count, uint8_t* out, uint64_t* present) {
  if (!local_in_use()) {
    from_replicas_.fetch_add(count, std::memory_order_relaxed);
    return remote_->ReadRun(first, count, out, present);
  }
  Status s = local_->ReadRun(first, count, out, present);
  if (s.code() != Status::Code::kCorruption) return s;
  PHEAP_LOG_WARN("{}; reading pages [{}, {}) from the replicas", s.message(), first, first + count);
  from_replicas_.fetch_add(count, std::memory_order_relaxed);
  PHEAP_RETURN_IF_ERROR(remote_->ReadRun(first, count, out, present));
  RepairLocal(first, count, out);
  return Status::Ok();
}

void ReplicatedPages::WillNeed(Pgno first, uint64_t count) {
  if (local_in_use()) local_->WillNeed(first, count);
}

PageSource::StoredRun ReplicatedPages::LocateRun(Pgno first, uint64_t count) {
  return local_in_use() ? local_->LocateRun(first, count) : StoredRun{};
}

// Rewrites the local copies that fail their checksum with the replicas'
// good ones in `data` (the store refuses a copy of another version).
void ReplicatedPages::RepairLocal(Pgno first, uint32_t count, const uint8_t* data) {
  auto* one = static_cast<uint8_t*>(std::aligned_alloc(kPageSize, kPageSize));
  for (uint32_t i = 0; i < count; ++i) {
    if (local_->ReadRun(first + i, 1, one, nullptr).code() != Status::Code::kCorruption) continue;
    Status r = local_->RepairPage(first + i, data + uint64_t{i} * kPageSize);
    if (r.ok()) PHEAP_LOG_INFO("local store: repaired page {} with the replicas' copy", first + i);
    else PHEAP_LOG_WARN("local store: page {} stays damaged: {}", first + i, r.ToString());
  }
  std::free(one);
}

Status ReplicatedPages::Persist(const SealedEpoch& e) {
  const Epoch epoch = e.image.epoch;
  const bool restoring = this->restoring();
  if (restoring) {
    std::lock_guard lock(mu_);
    in_flight_ = true;
  }
  Status local_status, remote_status;
  // The local fdatasync overlaps the shipping; e.data stays valid until both
  // are done.
  const bool local = local_in_use() && local_->image().epoch < epoch;
  if (local) StartLocal(e);
  if (remote_->image().epoch < epoch) remote_status = remote_->Persist(e);
  if (local) local_status = AwaitLocal();
  if (restoring) {
    std::lock_guard lock(mu_);
    in_flight_ = false;
    if (!remote_status.ok()) {
      failed_ = true;  // the replicas may hold part of an epoch that is not durable
    } else if (this->restoring()) {
      durable_ = e.image;
      // The install takes this epoch's pages, labelled with it, so they win
      // over anything fetched before.
      Status s = local_->InstallPages(e);
      if (!s.ok()) {
        PHEAP_LOG_WARN("restoring the local store: {}; the heap stays durable on its replicas alone", s.ToString());
        stop_.store(true, std::memory_order_release);
        restoring_.store(false, std::memory_order_release);
      } else {
        failed_ = false;
        MaybeFinishRestore(e.image);
      }
    }
  }
  if (!local_status.ok()) return local_status.Annotate("local store");
  return remote_status;
}

void ReplicatedPages::StartLocal(const SealedEpoch& e) {
  std::lock_guard lock(local_mu_);
  if (!local_writer_.joinable()) local_writer_ = StartThread([this] { LocalWriterLoop(); });
  local_job_ = &e;
  local_done_ = false;
  local_cv_.notify_all();
}

Status ReplicatedPages::AwaitLocal() {
  std::unique_lock lock(local_mu_);
  local_cv_.wait(lock, [&] { return local_done_; });
  return local_status_;
}

void ReplicatedPages::LocalWriterLoop() {
  std::unique_lock lock(local_mu_);
  for (;;) {
    local_cv_.wait(lock, [&] { return local_job_ != nullptr || local_stop_; });
    if (local_job_ == nullptr) return;
    const SealedEpoch* e = std::exchange(local_job_, nullptr);
    lock.unlock();
    Status s = local_->Persist(*e);
    lock.lock();
    local_status_ = std::move(s);
    local_done_ = true;
    local_cv_.notify_all();
  }
}

void ReplicatedPages::StartRestore(Progress progress) {
  if (local_ == nullptr || local_in_use() || local_->image().epoch != 0) return;
  restoring_.store(true, std::memory_order_release);
  restorer_ = StartThread([this, p = std::move(progress)]() mutable { RestoreLoop(std::move(p)); });
}

void ReplicatedPages::RestoreLoop(Progress progress) {
  constexpr uint32_t kRun = 256;  // 1 MiB per fetch
  const Pgno hwm = [&] {
    std::lock_guard lock(mu_);
    return durable_.hwm;
  }();
  progress_ = std::move(progress);
  auto* buf = static_cast<uint8_t*>(std::aligned_alloc(kPageSize, kRun * kPageSize));
  uint64_t present[(kRun + 63) / 64];
  for (Pgno first = 0; first < hwm && !stop_.load(std::memory_order_acquire);) {
    const uint32_t count = static_cast<uint32_t>(std::min<Pgno>(kRun, hwm - first));
    SealedEpoch part;
    {
      std::lock_guard lock(mu_);
      part.image = durable_;  // the label: what was durable before the read
    }
    Status s = remote_->ReadRun(first, count, buf, present);
    if (!s.ok()) {
      // Faults fail over on their own; the restore just tries again later.
      PHEAP_LOG_WARN("restoring the local store: pages [{}, {}): {}; retrying", first, first + count, s.ToString());
      for (int i = 0; i < 20 && !stop_.load(std::memory_order_acquire); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    PackPresentPages(first, count, present, buf, &part.pages);
    part.data = buf;
    {
      std::lock_guard lock(mu_);
      if (!restoring()) break;
      s = local_->InstallPages(part);
    }
    if (!s.ok()) {
      PHEAP_LOG_WARN("restoring the local store: {}; the heap stays durable on its replicas alone", s.ToString());
      restoring_.store(false, std::memory_order_release);
      break;
    }
    first += count;
    if (progress_) progress_(first, hwm);
  }
  std::free(buf);
  std::lock_guard lock(mu_);
  if (stop_.load(std::memory_order_acquire) || !restoring()) return;
  fetched_all_ = true;
  // Nothing in flight and no epoch half-shipped: what was fetched is no newer
  // than the durable image, so the install can close now. Else the next
  // successful commit closes it.
  if (!in_flight_ && !failed_) MaybeFinishRestore(durable_);
}

void ReplicatedPages::MaybeFinishRestore(const ImageInfo& image) {
  if (!fetched_all_ || image.epoch == 0) return;
  Status s = local_->InstallCommit(image);
  restoring_.store(false, std::memory_order_release);
  if (!s.ok()) {
    PHEAP_LOG_WARN("restoring the local store: {}; the heap stays durable on its replicas alone", s.ToString());
    return;
  }
  local_current_.store(true, std::memory_order_release);
  UseLocalAsImageSource();
  PHEAP_LOG_INFO("local store restored from the replicas at epoch {}; it takes part from epoch {} on", image.epoch,
                 image.epoch + 1);
  if (progress_) progress_(image.hwm, image.hwm);
}

}  // namespace pheap
