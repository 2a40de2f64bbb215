#include "base/page_hash.h"

#include <xxhash.h>

#include "base/types.h"

namespace pheap {

uint64_t PageHashAvx2(const void* page);  // page_hash_avx2.cc, built with -mavx2

namespace {

bool HasAvx2() {
  __builtin_cpu_init();  // may run before libgcc's constructor (the preload library)
  return __builtin_cpu_supports("avx2");
}

}  // namespace

uint64_t PageHash(const void* page) {
  static const bool avx2 = HasAvx2();
  return avx2 ? PageHashAvx2(page) : XXH3_64bits(page, kPageSize);
}

}  // namespace pheap
