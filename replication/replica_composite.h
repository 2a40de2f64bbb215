// ReplicatedPages: a heap's local page store and its replica client as one
// PageSource and EpochSink: what the engine hands the pager when peers are
// configured.
//
// Persist makes an epoch durable in the local store AND on a write quorum
// of replicas: the local append and fdatasync run on a long-lived thread of
// their own (it keeps its io_uring) while the caller's thread ships to the
// replicas; Persist returns when both are done, and fails if either fails.
// A retried epoch skips the side that already holds it, so a retry after a
// partial failure converges.
//
// ReadRun serves from the local store when it holds the newest image, else
// from the replicas; a page the local store finds damaged is served from
// the replicas, and the local copy is repaired with theirs
// (PageStore::RepairPage). While the local store takes part it is the image
// source the replica client installs lagging replicas from.
//
// The local store takes only the epoch after its own durable one. When it
// is empty and the replicas hold the heap (recovery into a new directory)
// it is left out of Persist and ReadRun at first, and Restore copies the
// replicas' image into it in the background (PageStore::InstallPages): the
// pages of each epoch committed meanwhile go into the install too, and the
// install is closed at a durable epoch, once no epoch is in flight; from
// then on the local store takes part. When the local store is ahead of the
// replicas (a crash after the local fdatasync, before the quorum, or peers
// configured for a heap that had none), the heap opens from the local image
// and the replica client installs it on the replicas
// (ReplicaClient::AdoptImage): commits are durable once W of them hold it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "base/page_io.h"
#include "base/status.h"
#include "store/page_store.h"
#include "replication/replica_client.h"

namespace pheap {

class ReplicatedPages final : public PageSource, public EpochSink {
 public:
  // `local` may be null (no local store). Both must outlive this object.
  // REQUIRES: remote was opened to write (claim) if Persist will be called.
  ReplicatedPages(PageStore* local, ReplicaClient* remote);
  ~ReplicatedPages() override;  // stops a restore; what it wrote is not used
  ReplicatedPages(const ReplicatedPages&) = delete;
  ReplicatedPages& operator=(const ReplicatedPages&) = delete;

  // The image to open the region with: the newer of the two.
  ImageInfo image() const;
  // Whether the local store takes part in Persist and ReadRun.
  bool local_in_use() const { return local_current_.load(std::memory_order_acquire); }

  // Progress of a restore: pages of the image read so far, of `total`.
  using Progress = std::function<void(uint64_t done, uint64_t total)>;
  // Starts copying the replicas' image into the (empty) local store on a
  // thread of its own; `progress` is called from it after each run and once
  // more when the local store takes part. Does nothing when the local store
  // is already in use or there is none. REQUIRES: called once.
  void StartRestore(Progress progress);
  // Whether a restore is still running (or waits for a quiet moment to close).
  bool restoring() const { return restoring_.load(std::memory_order_acquire); }

  Status ReadRun(Pgno first, uint32_t count, uint8_t* out, uint64_t* present) override;
  // Pages ReadRun read from the replicas (the rest came from the local
  // store), for live inspection.
  uint64_t pages_from_replicas() const { return from_replicas_.load(std::memory_order_relaxed); }
  // The local store's runs while it holds the newest image; none before.
  StoredRun LocateRun(Pgno first, uint64_t count) override;
  void WillNeed(Pgno first, uint64_t count) override;
  Status Persist(const SealedEpoch& e) override;

 private:
  void RestoreLoop(Progress progress);
  // Closes the install at `image` if the whole image was read.
  // REQUIRES: mu_ held; no epoch in flight.
  void MaybeFinishRestore(const ImageInfo& image);
  void UseLocalAsImageSource();
  void RepairLocal(Pgno first, uint32_t count, const uint8_t* data);
  // The local side of Persist: StartLocal hands `e` to the local writer
  // thread (started on first use), AwaitLocal waits for its status.
  void StartLocal(const SealedEpoch& e);
  Status AwaitLocal();
  void LocalWriterLoop();

  PageStore* local_;
  ReplicaClient* remote_;
  std::atomic<bool> local_current_{false};
  // Counted only on the replicas' path, which waits for the network anyway.
  std::atomic<uint64_t> from_replicas_{0};

  // Restore state. mu_ orders the install's writes: the fetched runs, the
  // epochs committed meanwhile, and the closing record.
  std::mutex mu_;
  std::atomic<bool> restoring_{false};
  std::atomic<bool> stop_{false};
  bool fetched_all_ = false;   // guarded by mu_
  bool in_flight_ = false;     // guarded by mu_: an epoch is being shipped
  bool failed_ = false;        // guarded by mu_: the last shipping failed
  ImageInfo durable_;          // guarded by mu_: the replicas' durable image
  Progress progress_;
  std::thread restorer_;

  // The local writer: one epoch at a time, from Persist's caller.
  std::mutex local_mu_;
  std::condition_variable local_cv_;
  const SealedEpoch* local_job_ = nullptr;  // guarded by local_mu_: to persist
  bool local_done_ = false;                 // guarded by local_mu_: local_status_ is its result
  bool local_stop_ = false;                 // guarded by local_mu_
  Status local_status_;                     // guarded by local_mu_
  std::thread local_writer_;
};

}  // namespace pheap
