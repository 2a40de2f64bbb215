// ReplicatedPages: a heap's local page store and its replica client as one
// PageSource and EpochSink: what the engine hands the pager when peers are
// configured.
//
// Persist makes an epoch durable in the local store AND on a write quorum
// of replicas: the local append and fdatasync run on a helper thread while
// the caller's thread ships to the replicas; Persist returns when both are
// done, and fails if either fails. A retried epoch skips the side that
// already holds it, so a retry after a partial failure converges.
//
// ReadRun serves from the local store when it holds the newest image, else
// from the replicas; a page the local store finds damaged is served from
// the replicas (the damaged copy is overwritten when the page is next
// committed).
//
// The local store takes only the epoch after its own durable one. When it
// is behind the replicas at open (recovery into an empty or stale
// directory) it is left out of Persist and the heap is durable on the
// replicas alone, which is logged: installing a whole image at an epoch is
// a store operation that does not exist yet. When it is ahead of the
// replicas (a crash after the local fdatasync, before the quorum), the
// replicas cannot be brought forward by protocol version 1: the heap opens
// from the local image and Persist fails naming the replicas' state.
#pragma once

#include <memory>

#include "base/page_io.h"
#include "base/status.h"
#include "replication/page_store.h"
#include "replication/replica_client.h"

namespace pheap {

class ReplicatedPages final : public PageSource, public EpochSink {
 public:
  // `local` may be null (no local store). Both must outlive this object.
  // REQUIRES: remote was opened to write (claim) if Persist will be called.
  ReplicatedPages(PageStore* local, ReplicaClient* remote);
  ReplicatedPages(const ReplicatedPages&) = delete;
  ReplicatedPages& operator=(const ReplicatedPages&) = delete;

  // The image to open the region with: the newer of the two.
  ImageInfo image() const;
  // Whether the local store takes part in Persist and ReadRun.
  bool local_in_use() const { return local_current_; }

  Status ReadRun(Pgno first, uint32_t count, uint8_t* out, uint64_t* present) override;
  Status Persist(const SealedEpoch& e) override;

 private:
  PageStore* local_;
  ReplicaClient* remote_;
  bool local_current_ = false;
};

}  // namespace pheap
