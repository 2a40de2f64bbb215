#include "replication/replica_composite.h"

#include <thread>

#include "base/log.h"

namespace pheap {

ReplicatedPages::ReplicatedPages(PageStore* local, ReplicaClient* remote) : local_(local), remote_(remote) {
  if (local_ == nullptr) return;
  const Epoch here = local_->image().epoch;
  const Epoch there = remote_->image().epoch;
  local_current_ = here >= there;
  if (here < there)
    PHEAP_LOG_WARN("local store of the heap holds epoch {}, its replicas epoch {}: it is left out, and the heap is "
                   "durable on its replicas alone",
                   here, there);
  else if (here > there)
    PHEAP_LOG_WARN("local store of the heap holds epoch {}, its replicas only epoch {}: commits will fail until the "
                   "replicas are restored to epoch {}",
                   here, there, here);
}

ImageInfo ReplicatedPages::image() const { return local_current_ ? local_->image() : remote_->image(); }

Status ReplicatedPages::ReadRun(Pgno first, uint32_t count, uint8_t* out, uint64_t* present) {
  if (local_current_) {
    Status s = local_->ReadRun(first, count, out, present);
    if (s.code() != Status::Code::kCorruption) return s;
    PHEAP_LOG_WARN("{}; reading pages [{}, {}) from the replicas", s.message(), first, first + count);
  }
  return remote_->ReadRun(first, count, out, present);
}

Status ReplicatedPages::Persist(const SealedEpoch& e) {
  const Epoch epoch = e.image.epoch;
  Status local_status, remote_status;
  // The local fdatasync overlaps the shipping; e.data stays valid until both
  // are done.
  std::thread local_thread;
  if (local_current_ && local_->image().epoch < epoch)
    local_thread = std::thread([&] { local_status = local_->Persist(e); });
  if (remote_->image().epoch < epoch) remote_status = remote_->Persist(e);
  if (local_thread.joinable()) local_thread.join();
  if (!local_status.ok()) return local_status.Annotate("local store");
  return remote_status;
}

}  // namespace pheap
