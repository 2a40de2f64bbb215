// Engine: the persistence of one named heap. It opens the heap's page store
// under `dir`, maps the region the store records (or places a new one), and
// runs commits from the pager into the store. The allocator and the Heap
// facade run on top of it; tests drive it directly.
//
// Thread safety: as Pager (commits are serialised; base/size from anywhere).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/config.h"
#include "base/status.h"
#include "heap/commit_loop.h"
#include "heap/live_stats.h"
#include "pager/pager.h"
#include "replication/placement.h"
#include "store/page_store.h"

namespace pheap {

class Compactor;
class ReplicaClient;
class ReplicatedPages;

struct EngineOptions {
  std::string dir = "./.pheap";  // the heap's files live in dir/NAME/
  uint64_t size = 0;             // 0: the recorded size, else kDefaultRegionSize
  uint64_t base = 0;             // 0: the recorded base, else the default slot
  bool salvage = false;          // accept falling back past mid-log corruption
  PagerOptions pager;
  PageStoreOptions store;
  // Replication (no peers: the local store alone).
  ReplicationConfig replication;
  std::string keys_dir;          // CURVE keys (pheap keygen); required for non-loopback peers
  // The heap records its replication (heap/replication_record.h). false: an
  // open without peers uses the recorded ones, an open with others fails.
  // true: the configured peers (none: the local store alone) replace the
  // recorded ones.
  bool replication_change = false;
  uint64_t replica_timeout_ms = 5000;  // a commit without a quorum fails after this
  // An open without k - W + 1 replicas fails after this; 0: replica_timeout_ms.
  uint64_t replica_open_timeout_ms = 0;
  bool restore = true;           // an empty dir takes the replicas' image in the background
  bool restore_progress = true;  // show the restore's progress on stderr when it is a terminal
  // Compact the store in the background (store/compactor.h), when its log
  // files pass 1/store.compact_live_ratio times the live image plus one
  // log file.
  bool compact = true;
  // Whether this open may create the heap. A heap exists once its directory
  // does (dir/NAME/), or, with peers, once its replicas hold an epoch of it.
  enum class Create { kMaybe, kNever, kOnly };
  // kMaybe: open it or create it; kNever: fail (NotFound, ENOENT) where it
  // does not exist; kOnly: fail (EEXIST) where it does.
  Create create = Create::kMaybe;
};

class Engine {
 public:
  // The config keys the engine reads (see README "Configuration").
  static const std::vector<std::string>& ConfigKeys();
  // Reads dir, size, base, tracking, fault_threads, prefetch_max,
  // staging_max, staging_wait_ms, staging_keep, salvage, log_file_size,
  // direct_write, direct_read, compact, compact_ratio, peers, replicas, quorum, keys,
  // replication, replica_timeout_ms, replica_open_timeout_ms, restore,
  // create, retain, memory_max (default: a third of the memory cgroup's limit,
  // base/cgroup.h), memory_early_commit. Bad values are errors naming the
  // key.
  static Result<EngineOptions> OptionsFromConfig(const Config& config);
  // A retain= value: "N" keeps the newest N epochs, "Ns", "Nm", "Nh", "Nd"
  // those of the last N seconds, minutes, hours, days. Returns
  // (epochs, nanoseconds) for PageStoreOptions::retain_epochs, retain_ns.
  static Result<std::pair<uint64_t, uint64_t>> ParseRetain(const std::string& value);
  // The default base of heap `name`: a slot chosen by its heap id.
  static uint64_t DefaultBase(const std::string& name);

  // Opens or creates heap `name`. Errors name the heap and say what to do:
  // a bad name, size 0 or beyond the address space, an unwritable dir, a
  // store held by another process, a newer store format, a taken range.
  // With peers, it also claims the heap's term from its replica set (k - W
  // + 1 replicas must answer, placement.h) and opens the newest image, by (term, epoch), of
  // the local store and the replicas (NewerImage). A local store older than
  // the replicas' image is set aside (renamed NAME.stale-epoch-E-term-T) and
  // the image restored into an empty one.
  // The heap's replication is recorded in its directory: an open without
  // peers uses the recorded peers, replicas, quorum and keys; one with a
  // different set fails, naming both, unless replication_change is set; a
  // new replica is brought to the heap's image before it counts. A failed
  // open that created the heap's directory removes it again.
  static Result<std::unique_ptr<Engine>> Open(const std::string& name, const EngineOptions& given);
  ~Engine();  // uncommitted writes are lost; the caller commits first
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const std::string& name() const { return name_; }
  void* base() const { return pager_->base(); }
  uint64_t size() const { return pager_->size(); }
  Epoch durable_epoch() const { return pager_->durable_epoch(); }
  TrackingMode mode() const { return pager_->mode(); }

  Result<Epoch> Commit() { return pager_->Commit(); }
  Result<Epoch> CommitInPlace() { return pager_->CommitInPlace(); }
  std::optional<Result<Epoch>> CommitInPlaceIfAlone() { return pager_->CommitInPlaceIfAlone(); }
  std::shared_future<Result<Epoch>> CommitAsync() { return pager_->CommitAsync(); }
  Status Discard(void* addr, uint64_t len) { return pager_->Discard(addr, len); }
  Status Advise(void* addr, uint64_t len, Advice advice) { return pager_->Advise(addr, len, advice); }

  Pager& pager() { return *pager_; }
  PageStore& store() { return *store_; }
  // Null when the heap has no peers.
  ReplicaClient* replicas() { return client_.get(); }
  ReplicatedPages* replicated() { return pages_.get(); }
  // The open of the heap failed after the engine's: when the engine goes,
  // the heap's directory goes too if this open created it and nothing
  // became durable in it (PageStore::RemoveIfCreated).
  void RemoveIfCreated() { remove_if_created_ = true; }

 private:
  Engine() = default;
  Status OpenReplicas(const std::string& name, const EngineOptions& options, const PageStoreOptions& so);
  // Makes the store's REPLICATION file say what `options` (as resolved by
  // the open) replicates on; writes only when it differs.
  Status RecordReplication(const EngineOptions& options);
  // Live statistics (heap/live_stats.h): StartLive makes the file and the
  // thread that refreshes it; PublishLive writes one snapshot from the
  // counters the pager and the replicas keep. A heap that cannot make the
  // file works without it.
  void StartLive();
  void PublishLive(uint64_t state);
  void StopLive();
  std::string name_;
  bool remove_if_created_ = false;
  // Declared so the pager (whose fault threads read the store and the
  // replicas) dies first, then the restore, then what it reads.
  std::unique_ptr<PageStore> store_;
  std::unique_ptr<ReplicaClient> client_;
  std::unique_ptr<ReplicatedPages> pages_;
  std::unique_ptr<Pager> pager_;
  // Last made, first gone: it compacts store_ from its own thread.
  std::unique_ptr<Compactor> compactor_;
  std::unique_ptr<LiveStatsFile> live_;
  std::unique_ptr<CommitLoop> live_loop_;  // its thread only reads counters
  LiveStats live_stats_{};                 // the fields fixed at open; written by one thread at a time
  long live_owner_ = 0;                    // the pid that made live_ (not a fork child)
};

}  // namespace pheap
