// The checksum of one page: XXH3-64 of its 4096 bytes, computed with the
// widest vector unit the CPU offers (AVX2, else the SSE2 every x86-64 has).
// XXH3's value does not depend on the unit, so stores and peers built or
// run on other machines agree; AVX2 about doubles the speed, which every
// commit, fault, restore and shipped page pays for.
#pragma once

#include <cstdint>

namespace pheap {

// REQUIRES: `page` points at kPageSize readable bytes.
uint64_t PageHash(const void* page);

}  // namespace pheap
