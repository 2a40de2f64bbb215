#include "heap/persistent_heap.h"

#include <pthread.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "base/log.h"
#include "base/thread.h"
#include "heap/snapshot.h"
#include "pager/safepoint.h"

namespace pheap {
constinit OpenHeapSlot g_open_heaps[kMaxOpenHeaps];

namespace {
std::mutex g_registry_mu;  // writers of g_open_heaps only; lookups take no lock

// fork() with heaps open through the library (the preload library does the
// same for its process heap, slot 0). The child has no userfaultfd, so a
// stored page not yet resident would read as zeros there: each heap's
// stored pages are made resident first (the cost Pager::PopulateAll names;
// posix_spawn and system() run no fork handlers and pay nothing). Its
// allocator's locks are taken so no child inherits one held by a thread
// it does not have, and a commit cannot pause the forking thread while
// fork holds glibc's locks, which the commit may need.
template <class Fn>
void ForEachLibraryHeap(Fn fn) {
  // A read-only heap's region is private memory the child gets a copy of,
  // and it has no allocator to lock.
  for (int i = 1; i < kMaxOpenHeaps; ++i)
    if (PersistentHeap* h = g_open_heaps[i].heap.load(std::memory_order_acquire); h != nullptr && !h->read_only())
      fn(*h);
}

void ForkPrepareHeaps() {
  g_registry_mu.lock();
  ForEachLibraryHeap([](PersistentHeap& h) {
    if (h.ForkChildStatus().ok()) h.PopulateAll();
    h.allocator().ForkPrepare();
  });
  SafepointDeferBegin();
}

void ForkReleaseHeaps(bool child) {
  if (child) SafepointForkChild();
  else SafepointDeferEnd();
  ForEachLibraryHeap([child](PersistentHeap& h) {
    h.allocator().ForkRelease();
    if (!child && h.ForkChildStatus().ok()) h.EndPopulate();
  });
  g_registry_mu.unlock();
}
}  // namespace

const std::vector<std::string>& PersistentHeap::ConfigKeys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k = Engine::ConfigKeys();
    for (const char* more : {"check", "code_check", "commit_ms"}) k.push_back(more);
    return k;
  }();
  return keys;
}

Result<HeapOptions> PersistentHeap::OptionsFromConfig(const char* config, const ConfigDefaults& defaults) {
  auto c = Config::Parse(config, ConfigKeys(), defaults);
  if (!c.ok()) return c.status();
  HeapOptions o;
  auto engine = Engine::OptionsFromConfig(*c);
  if (!engine.ok()) return engine.status();
  o.engine = std::move(*engine);
  auto check = c->GetBool("check", false);
  if (!check.ok()) return check.status();
  o.alloc.checking = *check;
  std::string cc = c->GetOr("code_check", "warn");
  if (cc == "error") o.code_check = CodeCheck::kError;
  else if (cc == "warn") o.code_check = CodeCheck::kWarn;
  else if (cc == "off") o.code_check = CodeCheck::kOff;
  else return Status::InvalidArgument("config code_check='" + cc + "' is not one of error, warn, off");
  auto ms = c->GetU64("commit_ms", 0);
  if (!ms.ok()) return ms.status();
  o.commit_ms = *ms;
  return o;
}

Result<std::unique_ptr<PersistentHeap>> PersistentHeap::Open(const std::string& name,
                                                             const HeapOptions& options) {
  std::unique_ptr<PersistentHeap> h(new PersistentHeap());
  auto engine = Engine::Open(name, options.engine);
  if (!engine.ok()) return engine.status();
  h->engine_ = std::move(*engine);
  // A heap this open created and could not set up leaves no directory.
  auto fail = [&h](Status s) {
    h->engine_->RemoveIfCreated();
    return s;
  };
  h->base_ = reinterpret_cast<uintptr_t>(h->engine_->base());
  h->size_ = h->engine_->size();
  if (h->size() <= kSuperblockSize)
    return fail(Status::InvalidArgument(fmt::format("heap '{}': size {} leaves no room after the {} KiB superblock",
                                                    name, h->size(), kSuperblockSize >> 10)));
  // The superblock and the allocator's metadata are read under a guard: a
  // stored page found damaged there (with no replica to read it from) fails
  // the open with its name instead of a SIGBUS inside it.
  Pager& pager = h->engine_->pager();
  pager.BeginGuardedReads();
  Status s = h->AttachImage(options);
  if (Status unserved = pager.EndGuardedReads(); !unserved.ok()) {
    if (h->alloc_.attached()) h->alloc_.Detach();
    return fail(Status::Corruption(fmt::format(
        "heap '{}' cannot be opened: {}; nothing was changed: `pheap check {}` lists the damaged pages, and with "
        "replicas `pheap check {} --repair` rewrites them from a good copy",
        name, unserved.message(), name, name)));
  }
  if (!s.ok()) return fail(s);
  h->Register();
  if (options.commit_ms > 0) {
    h->committer_ = std::make_unique<CommitLoop>(options.commit_ms, [p = h.get()] {
      auto r = p->Commit();
      if (!r.ok()) PHEAP_LOG_WARN("heap '{}': background commit failed: {}", p->name(), r.status().ToString());
    });
    if (!h->committer_->Start())
      PHEAP_LOG_WARN("heap '{}': no thread for background commits; only explicit commits persist", name);
  }
  return h;
}

Result<std::unique_ptr<PersistentHeap>> PersistentHeap::OpenReadOnly(const std::string& name,
                                                                     const HeapOptions& options, Epoch epoch) {
  std::unique_ptr<PersistentHeap> h(new PersistentHeap());
  auto reader = HeapReader::Open(name, options.engine, epoch);
  if (!reader.ok()) return reader.status();
  h->reader_ = std::move(*reader);
  h->base_ = reinterpret_cast<uintptr_t>(h->reader_->base());
  h->size_ = h->reader_->size();
  PHEAP_RETURN_IF_ERROR(h->CheckSuperblock(options));
  h->Register();
  return h;
}

Status PersistentHeap::CheckSuperblock(const HeapOptions& options) {
  sb_ = static_cast<Superblock*>(base());
  if (size() <= kSuperblockSize || sb_->h.magic != kSuperblockMagic)
    return Status::Corruption(
        fmt::format("heap '{}': its durable image does not start with a pheap superblock; the "
                    "store holds something else",
                    name()));
  if (sb_->h.version > kSuperblockVersion)
    return Status::Unsupported(
        fmt::format("heap '{}' was written by a newer pheap (superblock version {}, this one "
                    "reads {}): upgrade pheap",
                    name(), sb_->h.version, kSuperblockVersion));
  if (sb_->h.holds_code.load(std::memory_order_relaxed) != 0)
    PHEAP_RETURN_IF_ERROR(CheckCodeIdentity(name(), sb_->h.code, options.code_check));
  roots_ = std::make_unique<Roots>(sb_, /*fresh=*/false);
  return Status::Ok();
}

Result<Epoch> PersistentHeap::Refresh() {
  if (!read_only()) return durable_epoch();
  // Root lookups read the table in the region: none runs while it changes.
  std::lock_guard<std::mutex> roots(roots_->mutex());
  auto e = reader_->Refresh();
  if (!e.ok()) return e.status();
  if (reader_->size() != size_) {  // the writer grew the region
    size_ = reader_->size();
    Unregister();
    Register();
  }
  return e;
}

std::string PersistentHeap::dir() const {
  return reader_ ? reader_->dir() : std::filesystem::path(engine_->store().path()).parent_path().string();
}

Result<Epoch> PersistentHeap::Snapshot(const std::string& dest, const std::string& dest_dir, Epoch epoch) {
  PHEAP_RETURN_IF_ERROR(ForkChildStatus());
  const std::string to = dest_dir.empty() ? dir() : dest_dir;
  if (epoch == 0) epoch = durable_epoch();
  if (epoch == 0)
    return Status::NotFound(fmt::format("snapshot of heap '{}': it has no durable epoch yet; commit first", name()));
  // A writer reads its own store, whose lock it holds; a reader opens the
  // store again, as it does to load.
  auto made = read_only() ? SnapshotHeap(reader_->dir(), name(), epoch, to, dest)
                          : WriteSnapshot(engine_->store(), epoch, to, dest);
  if (!made.ok()) return made.status().Annotate(fmt::format("heap '{}'", name()));
  return made->epoch;
}

Status PersistentHeap::ReadOnlyError(const char* what) const {
  return Status::InvalidArgument(fmt::format("heap '{}' is open read-only (at epoch {}): {} needs its writer's open",
                                             name(), durable_epoch(), what),
                                 EROFS);
}

Status PersistentHeap::AttachImage(const HeapOptions& options) {
  const bool existed = static_cast<Superblock*>(base())->h.magic != 0;
  PHEAP_RETURN_IF_ERROR(FormatOrCheckSuperblock(options));
  if (existed && options.fresh_arena_unless_rooted && OnlyRoots(*options.fresh_arena_unless_rooted))
    PHEAP_RETURN_IF_ERROR(StartNewGeneration(*options.fresh_arena_unless_rooted));
  auto* arena = static_cast<uint8_t*>(base()) + kSuperblockSize;
  Status s = alloc_.Attach(arena, size() - kSuperblockSize, this, options.alloc);
  return s.ok() ? s : s.Annotate(fmt::format("heap '{}'", name()));
}

Status PersistentHeap::FormatOrCheckSuperblock(const HeapOptions& options) {
  sb_ = static_cast<Superblock*>(base());
  const bool fresh = sb_->h.magic == 0;
  if (fresh) {
    sb_->h.version = kSuperblockVersion;
    sb_->h.root_capacity = static_cast<uint32_t>(kRootCapacity);
    sb_->h.magic = kSuperblockMagic;
  } else if (sb_->h.magic != kSuperblockMagic) {
    return Status::Corruption(fmt::format("heap '{}': the region does not start with a pheap superblock "
                                          "(magic {:#x}); the store holds something else",
                                          name(), sb_->h.magic));
  } else if (sb_->h.version > kSuperblockVersion) {
    return Status::Unsupported(fmt::format("heap '{}' was written by a newer pheap (superblock version {}, "
                                           "this one reads {}): upgrade pheap",
                                           name(), sb_->h.version, kSuperblockVersion));
  }
  if (sb_->h.holds_code.load(std::memory_order_relaxed) != 0)
    PHEAP_RETURN_IF_ERROR(CheckCodeIdentity(name(), sb_->h.code, options.code_check));
  sb_->h.code = CurrentCodeIdentity();
  sb_->h.region_size = size();
  sb_->h.tracking_mode = static_cast<uint32_t>(engine_->pager().mode());
  sb_->h.opens++;
  roots_ = std::make_unique<Roots>(sb_, fresh);
  return Status::Ok();
}

bool PersistentHeap::OnlyRoots(const std::vector<std::string>& own) const {
  bool only = true;
  roots_->ForEach([&](const char* root, const char*, void*) {
    if (std::find(own.begin(), own.end(), root) == own.end()) only = false;
  });
  return only;
}

Status PersistentHeap::StartNewGeneration(const std::vector<std::string>& own) {
  // One discard of the whole arena: the pager records it as a single run,
  // and the store trims only the pages it holds. The cut that follows
  // carries the trim, the freshly formatted arena and the cleared roots
  // together, so every durable image is either generation whole.
  auto* arena = static_cast<uint8_t*>(base()) + kSuperblockSize;
  Status s = engine_->Discard(arena, size() - kSuperblockSize);
  if (!s.ok()) return s.Annotate(fmt::format("heap '{}': emptying the arena for a new generation", name()));
  for (const std::string& root : own) PHEAP_RETURN_IF_ERROR(roots_->Set(root, nullptr, ""));
  PHEAP_LOG_INFO(
      "heap '{}' has no root of its program: it starts a new generation, with an empty arena (the "
      "earlier process's blocks are freed)",
      name());
  return Status::Ok();
}

Status PersistentHeap::Advise(void* addr, uint64_t len, Advice advice) {
  const uint64_t off = reinterpret_cast<uintptr_t>(addr) - base_;
  if (!read_only()) return engine_->Advise(addr, len, advice).Annotate(fmt::format("heap '{}'", name()));
  if (off <= size_ && len <= size_ - off) return Status::Ok();
  return Status::InvalidArgument(
      fmt::format("heap '{}': advice for {} bytes at {}: the range is not inside the heap "
                  "region [{:#x}, {:#x})",
                  name(), len, addr, base_, base_ + size_));
}

Status PersistentHeap::SetRoot(const std::string& root, void* p, const std::string& type) {
  if (read_only()) return ReadOnlyError("setting a root");
  if (p != nullptr && !Contains(p))
    return Status::InvalidArgument(fmt::format("root '{}': {} is not inside heap '{}' [{:#x}, +{:#x}): store a "
                                               "pointer from this heap's allocation, or NULL to clear the root",
                                               root, p, name(), reinterpret_cast<uintptr_t>(base()), size()));
  return roots_->Set(root, p, type);
}

Result<Epoch> PersistentHeap::Commit() {
  // The caller waits for the write anyway: with no other thread to hold,
  // the cut is written from the region in place, without a staging copy.
  // Not in the heap that serves the process's malloc: the commit's own
  // allocations would change pages between their checksums and the write.
  if (!read_only() && g_open_heaps[0].heap.load(std::memory_order_acquire) != this) {
    PHEAP_RETURN_IF_ERROR(ForkChildStatus());
    HoldingCommitLocks held;
    std::lock_guard<std::mutex> l(commit_mu_);
    std::lock_guard<std::mutex> roots(roots_->mutex());  // as in CommitAsync
    if (auto r = engine_->CommitInPlaceIfAlone()) return *r;
  }
  auto e = CommitAsync();
  if (!e.ok()) return e.status();
  return Wait(*e);
}

Status PersistentHeap::ForkChildStatus() const {
  if (engine_ == nullptr) return Status::Ok();  // an open that failed, or a handle closed
  Status st = engine_->pager().ForkChildStatus();
  return st.ok() ? st : st.Annotate(fmt::format("heap '{}'", name()));
}

Result<Epoch> PersistentHeap::CommitAsync() {
  if (read_only()) return ReadOnlyError("a commit");
  PHEAP_RETURN_IF_ERROR(ForkChildStatus());  // before the locks, which the fork may have caught held
  HoldingCommitLocks held;
  std::lock_guard<std::mutex> l(commit_mu_);
  // Forget commits that became durable; keep failed ones for their waiter.
  for (auto it = pending_.begin(); it != pending_.end();) {
    bool done = it->second.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
    it = done && it->second.get().ok() ? pending_.erase(it) : std::next(it);
  }
  // Cuts are numbered in order after the newest one that can still succeed.
  Epoch last = durable_epoch();
  for (const auto& [epoch, f] : pending_) {
    bool failed = f.wait_for(std::chrono::seconds(0)) == std::future_status::ready && !f.get().ok();
    if (!failed) last = std::max(last, epoch);
  }
  std::shared_future<Result<Epoch>> cut;
  {
    // Root updates are never cut in half: they hold this lock too.
    std::lock_guard<std::mutex> roots(roots_->mutex());
    cut = engine_->CommitAsync();
  }
  Epoch e = last + 1;
  if (cut.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
    if (!cut.get().ok()) return cut.get().status();
    e = *cut.get();
  }
  pending_[e] = cut;
  return e;
}

Result<Epoch> PersistentHeap::CommitInPlace() {
  if (read_only()) return ReadOnlyError("a commit");
  PHEAP_RETURN_IF_ERROR(ForkChildStatus());
  HoldingCommitLocks held;
  std::lock_guard<std::mutex> l(commit_mu_);
  std::lock_guard<std::mutex> roots(roots_->mutex());  // as in CommitAsync
  return engine_->CommitInPlace();
}

Result<Epoch> PersistentHeap::Wait(Epoch e) {
  if (read_only()) return ReadOnlyError("waiting for a commit");
  PHEAP_RETURN_IF_ERROR(ForkChildStatus());
  std::shared_future<Result<Epoch>> f;
  {
    HoldingCommitLocks held;
    std::lock_guard<std::mutex> l(commit_mu_);
    auto it = pending_.find(e);
    if (it == pending_.end()) {
      if (e <= durable_epoch()) return e;
      return Status::NotFound(fmt::format("heap '{}': no commit of epoch {} is in flight", name(), e));
    }
    f = it->second;
  }
  Result<Epoch> r = f.get();
  std::lock_guard<std::mutex> l(commit_mu_);
  pending_.erase(e);
  return r;
}

void PersistentHeap::StopBackgroundCommits() {
  if (committer_ != nullptr) committer_->Stop();
}

Status PersistentHeap::Close() {
  if (closed_) return Status::Ok();
  if (read_only()) {
    Unregister();
    reader_.reset();
    closed_ = true;
    size_ = 0;
    return Status::Ok();
  }
  if (Status st = ForkChildStatus(); !st.ok()) {
    ForgetInForkChild();
    return st.Annotate("close (the child's copy stays mapped until it exits)");
  }
  StopBackgroundCommits();
  auto r = Commit();
  Unregister();
  alloc_.Detach();
  closed_ = true;
  size_ = 0;
  engine_.reset();
  return r.ok() ? Status::Ok() : r.status();
}

// The parent's threads, locks and peers' connections are not the child's:
// the engine is left as the fork copied it, never stopped.
void PersistentHeap::ForgetInForkChild() {
  if (committer_ != nullptr) committer_->ForgetAfterFork();
  (void)committer_.release();
  Unregister();
  (void)engine_.release();
  closed_ = true;
  size_ = 0;
}

PersistentHeap::~PersistentHeap() {
  if (closed_) return;
  if (!ForkChildStatus().ok()) {
    ForgetInForkChild();
    return;
  }
  StopBackgroundCommits();
  Unregister();
  if (alloc_.attached()) alloc_.Detach();
}

namespace {

// REQUIRES: g_registry_mu held; s is empty.
void Publish(OpenHeapSlot& s, PersistentHeap* h) {
  s.base.store(reinterpret_cast<uintptr_t>(h->base()), std::memory_order_relaxed);
  s.size.store(h->size(), std::memory_order_relaxed);
  s.heap.store(h, std::memory_order_release);
}

}  // namespace

void PersistentHeap::Register() {
  static std::once_flag atfork;
  std::call_once(atfork, [] {
    pthread_atfork(
        ForkPrepareHeaps, [] { ForkReleaseHeaps(false); }, [] { ForkReleaseHeaps(true); });
  });
  std::lock_guard<std::mutex> l(g_registry_mu);
  for (int i = 1; i < kMaxOpenHeaps; ++i) {
    if (g_open_heaps[i].heap.load(std::memory_order_relaxed) != nullptr) continue;
    Publish(g_open_heaps[i], this);
    return;
  }
  PHEAP_LOG_WARN("more than {} heaps open: pheap_of() will not find heap '{}'", kMaxOpenHeaps - 1, name());
}

Status PersistentHeap::ServeProcessMalloc() {
  std::lock_guard<std::mutex> l(g_registry_mu);
  OpenHeapSlot& s0 = g_open_heaps[0];
  if (s0.heap.load(std::memory_order_relaxed) != nullptr)
    return Status::InvalidArgument(fmt::format("heap '{}': the process already serves malloc from heap '{}'", name(),
                                               s0.heap.load(std::memory_order_relaxed)->name()));
  // Slot 0 first, then the old slot cleared: a lookup meanwhile finds this
  // heap in one or the other.
  Publish(s0, this);
  s0.alloc.store(&alloc_, std::memory_order_release);
  for (int i = 1; i < kMaxOpenHeaps; ++i) {
    OpenHeapSlot& s = g_open_heaps[i];
    if (s.heap.load(std::memory_order_relaxed) != this) continue;
    s.heap.store(nullptr, std::memory_order_release);
    s.size.store(0, std::memory_order_relaxed);
    s.base.store(0, std::memory_order_relaxed);
  }
  return Status::Ok();
}

void PersistentHeap::Unregister() {
  std::lock_guard<std::mutex> l(g_registry_mu);
  for (OpenHeapSlot& s : g_open_heaps) {
    if (s.heap.load(std::memory_order_relaxed) != this) continue;
    s.alloc.store(nullptr, std::memory_order_release);
    s.heap.store(nullptr, std::memory_order_release);
    s.size.store(0, std::memory_order_relaxed);
    s.base.store(0, std::memory_order_relaxed);
  }
}

}  // namespace pheap
