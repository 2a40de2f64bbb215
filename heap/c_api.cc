// The C interface (include/pheap/pheap.h) over PersistentHeap. Every failure
// sets errno and the calling thread's last-error text; nothing throws out.
#define PHEAP_CXX_API 1  // the project's namespace is pheap
#include <pheap/pheap.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/log.h"
#include "heap/default_heap.h"
#include "heap/persistent_heap.h"


namespace pheap {
namespace {

// A fixed buffer, so reporting an error never allocates (the preload
// library reports from inside malloc).
thread_local char t_last_error[1024] = "no error";

// A handle* is a PersistentHeap*.
PersistentHeap* Impl(handle* h) { return reinterpret_cast<PersistentHeap*>(h); }
handle* Handle(PersistentHeap* h) { return reinterpret_cast<handle*>(h); }

void SetError(const Status& s) {
  auto r = fmt::format_to_n(t_last_error, sizeof(t_last_error) - 1, "{}", s.message());
  *r.out = '\0';
  errno = s.err() != 0 ? s.err() : EIO;
}

void SetError(int err, const char* text) {
  std::snprintf(t_last_error, sizeof(t_last_error), "%s", text);
  errno = err;
}

bool CheckHandle(handle* h) {
  if (h != nullptr) return true;
  SetError(EINVAL, "null pheap handle");
  return false;
}

// The error paths of Allocated and Foreign, kept out of line so that the
// checks on every malloc and free stay a compare and a branch.
// `align`: 0 when the caller asked for none.
[[gnu::noinline, gnu::cold]] void* NoRoom(PersistentHeap* h, size_t n, size_t align) {
  const std::string what = align == 0 ? fmt::format("{} bytes", n) : fmt::format("{} bytes aligned to {}", n, align);
  SetError(Status::IoError(fmt::format("heap '{}' has no room for {} (region {} MiB): "
                                       "reopen it with a larger size={}",
                                       h->name(), what, h->size() >> 20,
                                       align > h->size() ? ", or ask for a smaller alignment" : ""),
                           ENOMEM));
  return nullptr;
}

[[gnu::noinline, gnu::cold]] bool ReportForeign(PersistentHeap* h, const void* p, const char* fn) {
  auto msg = fmt::format("{}({}): the pointer is not inside heap '{}'", fn, p, h->name());
  PHEAP_LOG_ERROR("{}", msg);
  SetError(EINVAL, msg.c_str());
  return true;
}

// A change asked of a heap opened read-only.
[[gnu::noinline, gnu::cold]] bool RefuseReadOnly(PersistentHeap* h, const char* what) {
  SetError(h->ReadOnlyError(what));
  return true;
}
inline bool ReadOnly(PersistentHeap* h, const char* what) { return h->read_only() && RefuseReadOnly(h, what); }

inline void* Allocated(PersistentHeap* h, void* p, size_t n, size_t align = 0) {
  return p != nullptr ? p : NoRoom(h, n, align);
}

// A pointer handed to free/realloc/usable_size that this heap never gave.
inline bool Foreign(PersistentHeap* h, const void* p, const char* fn) {
  if (p == nullptr || h->Contains(p)) return false;
  return ReportForeign(h, p, fn);
}

std::atomic<handle*> g_default{nullptr};

}  // namespace

void SetDefaultHeap(PersistentHeap* h) { g_default.store(Handle(h), std::memory_order_release); }

}  // namespace pheap

using pheap::Impl;

extern "C" {

pheap::handle* pheap_open(const char* name, const char* config) {
  if (name == nullptr) {
    pheap::SetError(EINVAL, "pheap_open: the heap name is null");
    return nullptr;
  }
  auto options = pheap::PersistentHeap::OptionsFromConfig(config);
  if (!options.ok()) {
    pheap::SetError(options.status().Annotate(fmt::format("opening heap '{}'", name)));
    return nullptr;
  }
  auto h = pheap::PersistentHeap::Open(name, *options);
  if (!h.ok()) {
    pheap::SetError(h.status());
    return nullptr;
  }
  return pheap::Handle(h->release());
}

int pheap_remove(const char* name, const char* config) {
  if (name == nullptr) {
    pheap::SetError(EINVAL, "pheap_remove: the heap name is null");
    return -1;
  }
  auto options = pheap::PersistentHeap::OptionsFromConfig(config);
  if (!options.ok()) {
    pheap::SetError(options.status().Annotate(fmt::format("removing heap '{}'", name)));
    return -1;
  }
  if (pheap::Status s = pheap::PageStore::Remove(options->engine.dir, name); !s.ok()) {
    pheap::SetError(s.Annotate(fmt::format("removing heap '{}'", name)));
    return -1;
  }
  return 0;
}

pheap::handle* pheap_open_read_only(const char* name, const char* config) {
  if (name == nullptr) {
    pheap::SetError(EINVAL, "pheap_open_read_only: the heap name is null");
    return nullptr;
  }
  auto options = pheap::PersistentHeap::OptionsFromConfig(config);
  if (!options.ok()) {
    pheap::SetError(options.status().Annotate(fmt::format("opening heap '{}' read-only", name)));
    return nullptr;
  }
  auto h = pheap::PersistentHeap::OpenReadOnly(name, *options);
  if (!h.ok()) {
    pheap::SetError(h.status());
    return nullptr;
  }
  return pheap::Handle(h->release());
}

pheap::handle* pheap_open_read_only_at(const char* name, const char* config, int64_t epoch) {
  if (name == nullptr || epoch <= 0) {
    pheap::SetError(EINVAL, name == nullptr ? "pheap_open_read_only_at: the heap name is null"
                                            : "pheap_open_read_only_at: the epoch must be at least 1");
    return nullptr;
  }
  auto options = pheap::PersistentHeap::OptionsFromConfig(config);
  if (!options.ok()) {
    pheap::SetError(options.status().Annotate(fmt::format("opening heap '{}' read-only", name)));
    return nullptr;
  }
  auto h = pheap::PersistentHeap::OpenReadOnly(name, *options, static_cast<pheap::Epoch>(epoch));
  if (!h.ok()) {
    pheap::SetError(h.status());
    return nullptr;
  }
  return pheap::Handle(h->release());
}

int64_t pheap_snapshot(pheap::handle* h, const char* dest, const char* config, int64_t epoch) {
  if (!pheap::CheckHandle(h)) return -1;
  if (dest == nullptr || epoch < 0) {
    pheap::SetError(EINVAL, dest == nullptr ? "pheap_snapshot: the new heap's name is null"
                                            : "pheap_snapshot: the epoch is negative");
    return -1;
  }
  // Only dir=: the new heap's directory, as given (PHEAP_DIR does not apply).
  std::string dir;
  if (config != nullptr && *config != '\0') {
    const std::string c = config;
    if (c.rfind("dir=", 0) != 0 || c.size() == 4 || c.find(';') != std::string::npos) {
      pheap::SetError(EINVAL,
                      fmt::format("pheap_snapshot: config '{}' is not dir=DIR, the only key it takes", c).c_str());
      return -1;
    }
    dir = c.substr(4);
  }
  auto r = Impl(h)->Snapshot(dest, dir, static_cast<pheap::Epoch>(epoch));
  if (!r.ok()) {
    pheap::SetError(r.status());
    return -1;
  }
  return static_cast<int64_t>(*r);
}

int64_t pheap_refresh(pheap::handle* h) {
  if (!pheap::CheckHandle(h)) return -1;
  auto r = Impl(h)->Refresh();
  if (!r.ok()) {
    pheap::SetError(r.status());
    return -1;
  }
  return static_cast<int64_t>(*r);
}

int pheap_close(pheap::handle* h) {
  if (!pheap::CheckHandle(h)) return -1;
  // In a child of fork() the handle's members are the parent's, maybe
  // caught mid-update (its commits in flight): it is forgotten, not freed.
  const bool forked = !Impl(h)->ForkChildStatus().ok();
  pheap::Status s = Impl(h)->Close();
  if (!forked) delete Impl(h);
  if (!s.ok()) {
    pheap::SetError(s);
    return -1;
  }
  return 0;
}

namespace pheap {
namespace {
// pheap_malloc's slow path, out of line so that its fast path is a tail.
[[gnu::noinline]] void* MallocSlowPath(handle* h, size_t n) {
  if (!CheckHandle(h) || ReadOnly(Impl(h), "an allocation")) return nullptr;
  return Allocated(Impl(h), Impl(h)->allocator().Malloc(n), n);
}
}  // namespace
}  // namespace pheap

void* pheap_malloc(pheap::handle* h, size_t n) {
  // A read-only heap's allocator is not attached: its slow path refuses.
  if (void* p; h != nullptr && !Impl(h)->read_only() && (p = Impl(h)->allocator().MallocFast(n)) != nullptr) return p;
  return pheap::MallocSlowPath(h, n);
}

void* pheap_calloc(pheap::handle* h, size_t count, size_t n) {
  if (!pheap::CheckHandle(h) || pheap::ReadOnly(Impl(h), "an allocation")) return nullptr;
  if (n != 0 && count > SIZE_MAX / n) {
    pheap::SetError(ENOMEM, "pheap_calloc: count * size overflows");
    return nullptr;
  }
  return pheap::Allocated(Impl(h), Impl(h)->allocator().Calloc(count, n), count * n);
}

void* pheap_realloc(pheap::handle* h, void* p, size_t n) {
  if (!pheap::CheckHandle(h) || pheap::ReadOnly(Impl(h), "an allocation") ||
      pheap::Foreign(Impl(h), p, "pheap_realloc"))
    return nullptr;
  void* q = Impl(h)->allocator().Realloc(p, n);
  return n == 0 ? q : pheap::Allocated(Impl(h), q, n);
}

void* pheap_aligned_alloc(pheap::handle* h, size_t align, size_t n) {
  if (!pheap::CheckHandle(h) || pheap::ReadOnly(Impl(h), "an allocation")) return nullptr;
  if (align == 0 || (align & (align - 1)) != 0) {
    pheap::SetError(EINVAL, "pheap_aligned_alloc: the alignment is not a power of two");
    return nullptr;
  }
  return pheap::Allocated(Impl(h), Impl(h)->allocator().AlignedAlloc(align, n), n, align);
}

void pheap_free(pheap::handle* h, void* p) {
  if (p == nullptr || !pheap::CheckHandle(h) || pheap::ReadOnly(Impl(h), "pheap_free") ||
      pheap::Foreign(Impl(h), p, "pheap_free"))
    return;
  Impl(h)->allocator().Free(p);
}

size_t pheap_usable_size(pheap::handle* h, const void* p) {
  if (p == nullptr || !pheap::CheckHandle(h) || pheap::ReadOnly(Impl(h), "pheap_usable_size") ||
      pheap::Foreign(Impl(h), p, "pheap_usable_size"))
    return 0;
  return Impl(h)->allocator().UsableSize(p);
}

void* pheap_root_typed(pheap::handle* h, const char* name, const char* type) {
  if (!pheap::CheckHandle(h)) return nullptr;
  if (name == nullptr) {
    pheap::SetError(EINVAL, "pheap_root: the root name is null");
    return nullptr;
  }
  auto r = Impl(h)->Root(name, type != nullptr ? type : "");
  if (!r.ok()) {
    pheap::SetError(r.status());
    return nullptr;
  }
  return *r;
}

void* pheap_root(pheap::handle* h, const char* name) { return pheap_root_typed(h, name, nullptr); }

int pheap_set_root_typed(pheap::handle* h, const char* name, void* p, const char* type) {
  if (!pheap::CheckHandle(h)) return -1;
  if (name == nullptr) {
    pheap::SetError(EINVAL, "pheap_set_root: the root name is null");
    return -1;
  }
  pheap::Status s = Impl(h)->SetRoot(name, p, type != nullptr ? type : "");
  if (!s.ok()) {
    pheap::SetError(s);
    return -1;
  }
  return 0;
}

int pheap_set_root(pheap::handle* h, const char* name, void* p) { return pheap_set_root_typed(h, name, p, nullptr); }

int pheap_roots(pheap::handle* h, pheap_root_fn fn, void* ctx) {
  if (!pheap::CheckHandle(h)) return -1;
  struct Root {
    std::string name, type;
    void* p;
  };
  std::vector<Root> roots;  // copied first: fn may set roots, which takes the table's lock
  Impl(h)->ForEachRoot([&](const char* name, const char* type, void* p) { roots.push_back({name, type, p}); });
  for (const Root& r : roots)
    if (int stop = fn(r.name.c_str(), r.type.c_str(), r.p, ctx); stop != 0) return stop;
  return 0;
}

int pheap_free_root(pheap::handle* h, const char* name) {
  if (!pheap::CheckHandle(h) || pheap::ReadOnly(Impl(h), "freeing a root")) return -1;
  void* p = pheap_root(h, name);
  if (p == nullptr) return -1;                           // errno and the message say why (ENOENT: no such root)
  if (pheap_set_root(h, name, nullptr) != 0) return -1;  // cleared first: no image holds it pointing at freed memory
  pheap_free(h, p);
  return 0;
}

int pheap_close_uncommitted(pheap::handle* h) {
  if (!pheap::CheckHandle(h)) return -1;
  if (pheap::Status st = Impl(h)->ForkChildStatus(); !st.ok()) {  // as pheap_close: forgotten, not freed
    (void)Impl(h)->Close();
    pheap::SetError(st);
    return -1;
  }
  delete Impl(h);  // the destructor closes without a final commit
  return 0;
}

int64_t pheap_commit(pheap::handle* h) {
  if (!pheap::CheckHandle(h)) return -1;
  auto r = Impl(h)->Commit();
  if (!r.ok()) {
    pheap::SetError(r.status());
    return -1;
  }
  return static_cast<int64_t>(*r);
}

int64_t pheap_commit_async(pheap::handle* h) {
  if (!pheap::CheckHandle(h)) return -1;
  auto r = Impl(h)->CommitAsync();
  if (!r.ok()) {
    pheap::SetError(r.status());
    return -1;
  }
  return static_cast<int64_t>(*r);
}

int64_t pheap_wait(pheap::handle* h, int64_t e) {
  if (!pheap::CheckHandle(h)) return -1;
  if (e < 0) {
    pheap::SetError(EINVAL, "pheap_wait: negative epoch");
    return -1;
  }
  auto r = Impl(h)->Wait(static_cast<pheap::Epoch>(e));
  if (!r.ok()) {
    pheap::SetError(r.status());
    return -1;
  }
  return static_cast<int64_t>(*r);
}

int pheap_advise(pheap::handle* h, const void* addr, size_t len, int advice) {
  if (!pheap::CheckHandle(h)) return -1;
  pheap::Advice a;
  switch (advice) {
    case PHEAP_ADVICE_NORMAL: a = pheap::Advice::kNormal; break;
    case PHEAP_ADVICE_SEQUENTIAL: a = pheap::Advice::kSequential; break;
    case PHEAP_ADVICE_RANDOM: a = pheap::Advice::kRandom; break;
    case PHEAP_ADVICE_WILLNEED: a = pheap::Advice::kWillNeed; break;
    case PHEAP_ADVICE_DONTNEED: a = pheap::Advice::kDontNeed; break;
    default: pheap::SetError(EINVAL, fmt::format("pheap_advise: unknown advice {}", advice).c_str()); return -1;
  }
  // Advice changes no byte of the heap: the pointer is only an address.
  pheap::Status s = Impl(h)->Advise(const_cast<void*>(addr), len, a);
  if (!s.ok()) {
    pheap::SetError(s);
    return -1;
  }
  return 0;
}

int pheap_prefetch(pheap::handle* h, const void* addr, size_t len) {
  return pheap_advise(h, addr, len, PHEAP_ADVICE_WILLNEED);
}

int64_t pheap_epoch(pheap::handle* h) {
  if (!pheap::CheckHandle(h)) return -1;
  return static_cast<int64_t>(Impl(h)->durable_epoch());
}

const char* pheap_last_error(void) { return pheap::t_last_error; }

int pheap_holds_code(pheap::handle* h) {
  if (!pheap::CheckHandle(h) || pheap::ReadOnly(Impl(h), "marking it as holding code pointers")) return -1;
  Impl(h)->MarkHoldsCode();
  return 0;
}

int pheap_exec_stable(char** argv) {
  if (argv == nullptr || argv[0] == nullptr) {
    pheap::SetError(EINVAL, "pheap_exec_stable: argv is empty");
    return -1;
  }
  if (pheap::ExecWithStableAddresses(argv) == 0) return 0;
  int err = errno;
  pheap::SetError(pheap::Status::FromErrno("re-executing with ADDR_NO_RANDOMIZE", err));
  return -1;
}

pheap::handle* pheap_default(void) { return pheap::g_default.load(std::memory_order_acquire); }

int pheap_get_space(pheap::handle* h, struct pheap_space* out) {
  if (!pheap::CheckHandle(h) || pheap::ReadOnly(Impl(h), "reading its allocator's space")) return -1;
  if (out == nullptr) {
    pheap::SetError(EINVAL, "pheap_get_space: the result pointer is null");
    return -1;
  }
  const pheap::AllocatorStats st = Impl(h)->allocator().Stats();
  out->region = Impl(h)->size();
  out->capacity = st.bytes_capacity;
  out->live = st.bytes_live;
  return 0;
}

int pheap_check_allocator(pheap::handle* h) {
  if (!pheap::CheckHandle(h) || pheap::ReadOnly(Impl(h), "checking its allocator")) return -1;
  pheap::Status s = Impl(h)->allocator().Verify();
  if (!s.ok()) {
    pheap::SetError(s.Annotate(fmt::format("heap '{}'", Impl(h)->name())));
    return -1;
  }
  return 0;
}

int pheap_open_heaps(pheap::handle** out, int max) {
  int n = 0;
  for (const pheap::OpenHeapSlot& s : pheap::g_open_heaps) {
    pheap::PersistentHeap* h = s.heap.load(std::memory_order_acquire);
    if (h == nullptr) continue;
    if (n < max && out != nullptr) out[n] = pheap::Handle(h);
    ++n;
  }
  return n;
}

pheap::handle* pheap_of(const void* p) { return pheap::Handle(pheap::PersistentHeap::Containing(p)); }

void* pheap_base(pheap::handle* h) {
  if (!pheap::CheckHandle(h)) return nullptr;
  return Impl(h)->base();
}

size_t pheap_size(pheap::handle* h) {
  if (!pheap::CheckHandle(h)) return 0;
  return static_cast<size_t>(Impl(h)->size());
}

}  // extern "C"
