#include "base/page_hash.h"

#include <xxhash.h>

// Debian 12's glibc (2.36) declares the header's inline functions as
// returning _Bool, which g++ accepts in C++ and clang++ does not.
#if defined(__clang__)
#define _Bool bool
#include <sys/platform/x86.h>
#undef _Bool
#else
#include <sys/platform/x86.h>
#endif

#include "base/types.h"

namespace pheap {

uint64_t PageHashAvx2(const void* page);  // page_hash_avx2.cc, built with -mavx2

namespace {

// glibc's loader has already read CPUID; asking it costs nothing. libgcc's
// __builtin_cpu_supports would link in a constructor that runs CPUID again in
// every process, and each CPUID traps to the hypervisor in a virtual machine.
bool HasAvx2() { return CPU_FEATURE_ACTIVE(AVX2); }

}  // namespace

uint64_t PageHash(const void* page) {
  static const bool avx2 = HasAvx2();
  return avx2 ? PageHashAvx2(page) : XXH3_64bits(page, kPageSize);
}

}  // namespace pheap
