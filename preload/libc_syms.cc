#include "preload/libc_syms.h"

#include <elf.h>
#include <link.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace pheap::preload {
namespace {

// libc.so.6's dynamic tables, as found by dl_iterate_phdr.
struct DynTables {
  ElfW(Addr) bias = 0;
  const ElfW(Sym)* symtab = nullptr;
  const char* strtab = nullptr;
  const uint32_t* gnu_hash = nullptr;
  const ElfW(Half) * versym = nullptr;  // DT_VERSYM: each symbol's version index
};

// The loader relocates d_ptr in place for loaded objects on x86-64; an
// unrelocated one (smaller than the bias) still needs the bias.
template <typename T>
const T* DynPtr(const DynTables& t, ElfW(Addr) p) {
  return reinterpret_cast<const T*>(p < t.bias ? p + t.bias : p);
}

bool EndsWith(const char* s, const char* suffix) {
  size_t n = std::strlen(s), m = std::strlen(suffix);
  return n >= m && std::strcmp(s + n - m, suffix) == 0;
}

int FindLibc(struct dl_phdr_info* info, size_t, void* out) {
  if (info->dlpi_name == nullptr || !EndsWith(info->dlpi_name, "/libc.so.6")) return 0;
  auto* t = static_cast<DynTables*>(out);
  t->bias = info->dlpi_addr;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    if (info->dlpi_phdr[i].p_type != PT_DYNAMIC) continue;
    for (auto* d = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
         d->d_tag != DT_NULL; ++d) {
      if (d->d_tag == DT_SYMTAB) t->symtab = DynPtr<ElfW(Sym)>(*t, d->d_un.d_ptr);
      if (d->d_tag == DT_STRTAB) t->strtab = DynPtr<char>(*t, d->d_un.d_ptr);
      if (d->d_tag == DT_GNU_HASH) t->gnu_hash = DynPtr<uint32_t>(*t, d->d_un.d_ptr);
      if (d->d_tag == DT_VERSYM) t->versym = DynPtr<ElfW(Half)>(*t, d->d_un.d_ptr);
    }
  }
  return 1;
}

uint32_t GnuHash(const char* s) {
  uint32_t h = 5381;
  for (auto* p = reinterpret_cast<const unsigned char*>(s); *p != 0; ++p) h = h * 33 + *p;
  return h;
}

// The GNU hash lookup of the ELF gABI extension, as ld.so does it for a
// reference without a version: the default definition of a name, never a
// hidden one kept for old binaries (pthread_cond_wait@GLIBC_2.2.5, whose
// condition variable has another layout).
void* Lookup(const DynTables& t, const char* name) {
  const uint32_t nbuckets = t.gnu_hash[0], symoffset = t.gnu_hash[1], bloom_size = t.gnu_hash[2];
  const auto* bloom = reinterpret_cast<const ElfW(Addr)*>(t.gnu_hash + 4);
  const uint32_t* buckets = reinterpret_cast<const uint32_t*>(bloom + bloom_size);
  const uint32_t* chain = buckets + nbuckets;
  const uint32_t h = GnuHash(name);
  for (uint32_t i = buckets[h % nbuckets]; i >= symoffset && i != 0; ++i) {
    const uint32_t ch = chain[i - symoffset];
    const ElfW(Sym)& s = t.symtab[i];
    const bool hidden = t.versym != nullptr && (t.versym[i] & 0x8000) != 0;  // VERSYM_HIDDEN
    if ((ch | 1) == (h | 1) && s.st_shndx != SHN_UNDEF && !hidden && std::strcmp(t.strtab + s.st_name, name) == 0)
      return reinterpret_cast<void*>(t.bias + s.st_value);
    if (ch & 1) break;
  }
  return nullptr;
}

[[noreturn]] void Die(const char* what) {
  const char head[] = "pheap preload: cannot find glibc's ";
  (void)!write(2, head, sizeof(head) - 1);
  (void)!write(2, what, std::strlen(what));
  const char tail[] = " in libc.so.6; run the program without LD_PRELOAD=libpheap_preload.so\n";
  (void)!write(2, tail, sizeof(tail) - 1);
  abort();
}

template <typename F>
void Resolve(const DynTables& t, const char* name, F* out) {
  void* p = Lookup(t, name);
  if (p == nullptr) Die(name);
  *out = reinterpret_cast<F>(p);
}

LibcAllocator g_libc;
std::atomic<bool> g_resolved{false};

}  // namespace

const LibcAllocator& Libc() {
  if (g_resolved.load(std::memory_order_acquire)) return g_libc;
  // Racing first calls fill in the same values; the flag publishes them.
  DynTables t;
  dl_iterate_phdr(FindLibc, &t);
  if (t.symtab == nullptr || t.strtab == nullptr || t.gnu_hash == nullptr) Die("dynamic symbol table");
  LibcAllocator a;
  Resolve(t, "__libc_malloc", &a.malloc);
  Resolve(t, "__libc_free", &a.free);
  Resolve(t, "__libc_calloc", &a.calloc);
  Resolve(t, "__libc_realloc", &a.realloc);
  Resolve(t, "__libc_memalign", &a.memalign);
  Resolve(t, "malloc_usable_size", &a.malloc_usable_size);
  Resolve(t, "mallopt", &a.mallopt);
  Resolve(t, "malloc_trim", &a.malloc_trim);
  Resolve(t, "mallinfo2", &a.mallinfo2);
  Resolve(t, "malloc_stats", &a.malloc_stats);
  Resolve(t, "malloc_info", &a.malloc_info);
  Resolve(t, "pthread_create", &a.pthread_create);
  Resolve(t, "sigaction", &a.sigaction);
  Resolve(t, "pthread_sigmask", &a.pthread_sigmask);
  Resolve(t, "sigprocmask", &a.sigprocmask);
  Resolve(t, "nanosleep", &a.nanosleep);
  Resolve(t, "clock_nanosleep", &a.clock_nanosleep);
  Resolve(t, "usleep", &a.usleep);
  Resolve(t, "sleep", &a.sleep);
  Resolve(t, "pause", &a.pause);
  Resolve(t, "sigsuspend", &a.sigsuspend);
  Resolve(t, "sigwait", &a.sigwait);
  Resolve(t, "sigwaitinfo", &a.sigwaitinfo);
  Resolve(t, "sigtimedwait", &a.sigtimedwait);
  Resolve(t, "epoll_pwait", &a.epoll_pwait);
  Resolve(t, "epoll_pwait2", &a.epoll_pwait2);
  Resolve(t, "poll", &a.poll);
  Resolve(t, "ppoll", &a.ppoll);
  Resolve(t, "select", &a.select);
  Resolve(t, "pselect", &a.pselect);
  Resolve(t, "pthread_cond_wait", &a.pthread_cond_wait);
  Resolve(t, "pthread_cond_timedwait", &a.pthread_cond_timedwait);
  Resolve(t, "pthread_cond_clockwait", &a.pthread_cond_clockwait);
  g_libc = a;
  g_resolved.store(true, std::memory_order_release);
  return g_libc;
}

}  // namespace pheap::preload
