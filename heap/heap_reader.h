// HeapReader: a heap opened read-only beside its writer, which may run in
// another process on this machine or on another machine. It maps the
// region at the heap's fixed address, fills it with the durable image of
// one epoch E and protects it PROT_READ (a write to it is a SIGSEGV);
// Refresh moves it to the newest durable epoch.
//
// Where the image comes from: the local store under `dir`, opened without
// its lock (PageStoreOptions::read_only); when there is none and peers are
// configured, the replicas, read as a reader that claims no term
// (ReplicaClientOptions::claim = false), which fetches exactly epoch E.
//
// What a reader pins, and why the writer never waits for it: while it
// loads an epoch, the read-only PageStore holds an open descriptor of every
// log file that epoch is read from. The writer's compactor writes its
// output to new files and unlinks the files they replace; no sealed byte
// of a log file is rewritten in place (a repair writes the same bytes
// back), so an unlinked file stays readable through the descriptor. Once
// loaded, the image lives in the region and the store is closed: between
// loads a reader pins nothing. The writer sees nothing of its readers: no
// lock, no file, no message; a reader that dies mid-load drops its
// descriptors with it. A replica keeps the index of a past epoch that a
// reader fetches for a few seconds, the same way (peer_heaps.cc).
//
// What a local reader sees: the newest epoch whose commit record is in the
// store's files when it opens. Without peers that is the durable epoch (or
// one the writer is syncing at that instant: a writer that then fails the
// sync writes the same epoch again). With peers, the local store may hold
// an epoch before the replicas acknowledge it.
//
// Cost: Open reads every stored page of E (one read per run of pages that
// lie together in the store) into the region. Refresh reads, from the local
// store, only the pages whose newest version changed since E (the stores'
// page epochs compared); from replicas, every stored page again. It then
// writes only the pages that differ, all at once after the reads, so a
// failed Refresh leaves the region at E.
//
// Thread safety: base(), size() and epoch() from any thread. Refresh and
// the destructor: no other thread may read the region while they run.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "heap/engine.h"

namespace pheap {

// Opens the store of heap `name` under `dir` read-only, without its lock,
// trying again while a compaction removes a file between the listing of
// the directory and its open. kNotFound when there is no store.
Result<std::unique_ptr<PageStore>> OpenStoreForReading(const std::string& dir, const std::string& name);

class HeapReader {
 public:
  // What the last load (Open or Refresh) did.
  struct LoadStats {
    uint64_t pages_read = 0;     // pages fetched from the store or replicas
    uint64_t pages_written = 0;  // of those, pages that differed and were written
    uint64_t pages_zeroed = 0;   // pages dropped (discarded since, or above hwm)
    uint64_t ns = 0;             // wall time of the load
  };

  // Opens heap `name` read-only. Reads options.dir, replication, keys_dir,
  // replica_timeout_ms, replica_open_timeout_ms, and base (when set, it
  // must be the heap's). Errors name the heap: kNotFound (ENOENT) when
  // neither the local store nor the replicas hold it, or it has no durable
  // epoch yet; kBusy when its address range is taken in this process;
  // the store's and replicas' errors otherwise. With `epoch` (not 0): the
  // image as of that past durable epoch, read from the local store
  // (PageStore::ImageAt); kNotFound naming it and the oldest retained
  // epoch where the store no longer holds it (config retain= keeps past
  // epochs; also where there is no local store: replicas are not asked).
  static Result<std::unique_ptr<HeapReader>> Open(const std::string& name, const EngineOptions& options,
                                                  Epoch epoch = 0);
  ~HeapReader();  // unmaps the region and lets go of the files it pins
  HeapReader(const HeapReader&) = delete;
  HeapReader& operator=(const HeapReader&) = delete;

  const std::string& name() const { return name_; }
  const std::string& dir() const { return options_.dir; }
  void* base() const { return reinterpret_cast<void*>(base_); }
  uint64_t size() const { return size_; }
  Epoch epoch() const { return image_.epoch; }
  const LoadStats& last_load() const { return stats_; }

  // Moves the region to the newest durable epoch and returns it. Every
  // pointer into the region stays valid (same addresses); the region grows
  // if the writer grew it. On failure the region and epoch are unchanged.
  // REQUIRES: no other thread reads the region until it returns.
  Result<Epoch> Refresh();

 private:
  struct Source;
  HeapReader(std::string name, EngineOptions options);
  // The newest durable epoch's image, or epoch `at`'s (not 0).
  Result<std::unique_ptr<Source>> OpenSource(Epoch at = 0) const;
  Result<std::unique_ptr<Source>> OpenLocal(Epoch at) const;
  Result<std::unique_ptr<Source>> OpenReplicas() const;
  // Maps [base_ + size_, base + size) (all of it on the first load).
  Status MapUpTo(uint64_t size);
  Status Protect(int prot);  // the whole region
  // Brings the region from image_ (epoch 0: an empty region) to `next`.
  Status Load(Source& next);

  const std::string name_;
  const EngineOptions options_;
  uintptr_t base_ = 0;
  uint64_t size_ = 0;          // mapped bytes
  ImageInfo image_;            // the image the region shows
  std::vector<Epoch> epochs_;  // loaded from a local store: its page epochs (PageStore::PageEpochs)
  LoadStats stats_;
};

}  // namespace pheap
