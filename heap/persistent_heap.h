// PersistentHeap: what a user's pheap* is. One named heap: its engine (page
// store + pager), the superblock with roots and code identity, and the
// allocator whose arena fills the rest of the region. The C interface
// (c_api.cc) is a thin layer over it.
//
// Thread safety: every method from any thread, except Close() and the
// destructor, which must not race with other calls on the same heap.
#pragma once

#include <atomic>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/config.h"
#include "base/status.h"
#include "heap/allocator.h"
#include "heap/code_identity.h"
#include "heap/commit_loop.h"
#include "heap/engine.h"
#include "heap/heap_reader.h"
#include "heap/heap_registry.h"
#include "heap/roots.h"

namespace pheap {

struct HeapOptions {
  EngineOptions engine;
  AllocatorOptions alloc;
  CodeCheck code_check = CodeCheck::kWarn;
  uint64_t commit_ms = 0;  // > 0: commit in the background this often
  // Set: an existing heap that holds no root but those named here opens as
  // a new generation: its arena starts empty and those roots are cleared,
  // so blocks nothing can reach any more (an earlier process's, found from
  // no root) are freed rather than kept. The superblock and every other
  // root stay; a heap with another root opens as it was. Until the first
  // commit the store still holds the earlier image. Unset: every heap
  // opens as it was.
  std::optional<std::vector<std::string>> fresh_arena_unless_rooted;
};

class PersistentHeap final : private ArenaHooks {
 public:
  // Every key a heap's config may hold.
  static const std::vector<std::string>& ConfigKeys();
  // Parses `config` (NULL or "k=v;...") together with PHEAP_* variables,
  // over `defaults` (keys of ConfigKeys()) where neither sets a key.
  static Result<HeapOptions> OptionsFromConfig(const char* config, const ConfigDefaults& defaults = {});

  static Result<std::unique_ptr<PersistentHeap>> Open(const std::string& name, const HeapOptions& options);
  // Opens heap `name` read-only beside its writer (heap/heap_reader.h: where
  // the image comes from, what it pins, what it costs): the region shows
  // the durable image at PROT_READ, and roots can be read. Allocation, free,
  // SetRoot, MarkHoldsCode and commits fail with EROFS (kInvalidArgument),
  // naming the heap. Errors: HeapReader::Open's; a region that holds no
  // pheap superblock (kCorruption); a newer superblock version; the code
  // identity check (code_check) for a heap that holds code pointers.
  // `epoch` not 0: the image as of that past durable epoch (HeapReader::Open).
  static Result<std::unique_ptr<PersistentHeap>> OpenReadOnly(const std::string& name, const HeapOptions& options,
                                                              Epoch epoch = 0);
  ~PersistentHeap() override;  // closes without a final commit if Close was not called
  PersistentHeap(const PersistentHeap&) = delete;
  PersistentHeap& operator=(const PersistentHeap&) = delete;

  // Commits, stops background commits and unmaps the region. In a child of
  // fork(): returns ForkChildStatus's error and forgets the engine, and the
  // object must then be leaked, not destroyed (its members are the
  // parent's, perhaps caught mid-update).
  Status Close();

  const std::string& name() const { return reader_ ? reader_->name() : engine_->name(); }
  // Opened by OpenReadOnly. Engine, pager and allocator calls (engine(),
  // pager_stats(), PopulateAll(), allocator()) REQUIRE a heap that is not.
  bool read_only() const { return reader_ != nullptr; }
  // A read-only heap moves to the newest durable epoch (HeapReader::Refresh,
  // with its REQUIRES) and returns it; a writer's heap is always there.
  Result<Epoch> Refresh();
  // The error of a change asked of a read-only heap: `what` names it.
  Status ReadOnlyError(const char* what) const;
  // The directory holding the heap's store (config dir).
  std::string dir() const;
  // Makes heap `dest` under `dest_dir` (empty: dir()) from this heap's
  // image as of `epoch`, read from its store (heap/snapshot.h), and returns
  // that epoch. `epoch` 0: the one this heap shows (a writer's durable
  // epoch, a reader's own). A writer keeps committing meanwhile.
  Result<Epoch> Snapshot(const std::string& dest, const std::string& dest_dir, Epoch epoch);
  void* base() const { return reinterpret_cast<void*>(base_); }
  uint64_t size() const { return size_; }
  // On every free: the region's bounds are kept here, not asked of the engine.
  bool Contains(const void* p) const { return reinterpret_cast<uintptr_t>(p) - base_ < size_; }

  Allocator& allocator() { return alloc_; }
  Engine& engine() { return *engine_; }
  // The pager's counters (the last commit's pause and dirty set among them).
  PagerStats pager_stats() const { return engine_->pager().stats(); }
  // Makes every stored page resident, as fork() needs (Pager::PopulateAll,
  // with its cost and REQUIRES).
  void PopulateAll() { engine_->pager().PopulateAll(); }
  void EndPopulate() { engine_->pager().EndPopulate(); }
  // A pheap-internal thread: never paused by commits, never writes the
  // region (Pager::ExemptCurrentThread). `hook` runs first in every such
  // thread from now on, the pager's own included (Pager::OnExempt).
  static void ExemptCurrentThread() { Pager::ExemptCurrentThread(); }
  static void OnInternalThread(void (*hook)()) { Pager::OnExempt(hook); }

  Result<void*> Root(const std::string& name, const std::string& type) const { return roots_->Get(name, type); }
  Status SetRoot(const std::string& name, void* p, const std::string& type);
  // Marks the heap as one that may hold code pointers: from then on its
  // opens check the code identity (code_check). Never cleared.
  void MarkHoldsCode() { sb_->h.holds_code.store(1, std::memory_order_relaxed); }
  template <typename F>
  void ForEachRoot(F f) const { roots_->ForEach(f); }

  Result<Epoch> Commit();
  // Takes the cut now; returns the epoch it will have once durable.
  Result<Epoch> CommitAsync();
  // A last commit with no staging copy (Pager::CommitInPlace, and its
  // REQUIRES): the program stays paused until the epoch is durable.
  Result<Epoch> CommitInPlace();
  // Waits until epoch e is durable.
  Result<Epoch> Wait(Epoch e);
  // Advice about [addr, addr + len) (Pager::Advise, with its costs). A
  // read-only heap holds its whole image in memory: nothing changes there.
  // Errors: kInvalidArgument naming the heap and the range when the range
  // is not inside the region.
  Status Advise(void* addr, uint64_t len, Advice advice);
  // In a child of fork(), which works on a copy of the region: the error
  // (kBusy) that the child's commits, waits and Close get; Ok in the
  // process that opened the heap. The child allocates and frees as usual.
  Status ForkChildStatus() const;
  Epoch durable_epoch() const { return reader_ ? reader_->epoch() : engine_->durable_epoch(); }

  // The open heap whose region holds p, or null (lock-free; heap_registry.h).
  static PersistentHeap* Containing(const void* p) { return HeapContaining(p); }
  // Makes this the process heap, the one whose allocator serves the
  // program's malloc (heap_registry.h: InProcessHeap, ProcessHeapAllocator).
  // Call once the allocator is ready for every thread; the heap must then
  // stay open for the life of the process. Errors: another heap serves.
  Status ServeProcessMalloc();

 private:
  PersistentHeap() = default;
  Status Discard(void* addr, size_t len) override { return engine_->Discard(addr, len); }
  // Formats or checks the superblock, starts a new generation where asked,
  // and attaches the allocator: every read of the image an open makes.
  Status AttachImage(const HeapOptions& options);
  Status FormatOrCheckSuperblock(const HeapOptions& options);
  // A read-only open's checks of the superblock it cannot format or update.
  Status CheckSuperblock(const HeapOptions& options);
  // Whether every root of the heap is named in `own` (none counts).
  bool OnlyRoots(const std::vector<std::string>& own) const;
  // Empties the arena (it reads as zeros, so Attach formats it) and clears
  // the roots `own`. REQUIRES: the allocator is not attached.
  Status StartNewGeneration(const std::vector<std::string>& own);
  void StopBackgroundCommits();  // idempotent
  void ForgetInForkChild();      // closes the child's handle, stopping nothing
  void Register();
  void Unregister();

  std::unique_ptr<Engine> engine_;
  std::unique_ptr<HeapReader> reader_;  // instead of engine_ when read-only
  uintptr_t base_ = 0;  // the region, fixed while open; size_ 0 once closed
  uint64_t size_ = 0;
  Superblock* sb_ = nullptr;
  std::unique_ptr<Roots> roots_;
  Allocator alloc_;
  bool closed_ = false;

  // Commits in flight (CommitAsync), by epoch. Guarded by commit_mu_.
  std::mutex commit_mu_;
  std::map<Epoch, std::shared_future<Result<Epoch>>> pending_;

  std::unique_ptr<CommitLoop> committer_;  // commit_ms > 0
};

}  // namespace pheap
