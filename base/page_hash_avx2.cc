// XXH3 with AVX2 (this file alone is compiled with -mavx2; page_hash.cc
// calls it only on a CPU that has the unit).
#define XXH_VECTOR XXH_AVX2
#include <xxhash.h>

#include <cstdint>

#include "base/types.h"

namespace pheap {

uint64_t PageHashAvx2(const void* page) { return XXH3_64bits(page, kPageSize); }

}  // namespace pheap
