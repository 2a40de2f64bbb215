// PageHash is XXH3-64 whichever vector unit computes it: a store written on
// one CPU must check on another.
#include "base/page_hash.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstdint>
#include <random>
#include <vector>

#include "base/types.h"

namespace pheap {

uint64_t PageHashAvx2(const void* page);  // page_hash_avx2.cc

namespace {

TEST(PageHash, IsXxh3OfThePageOnEveryUnit) {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2");
  std::mt19937_64 rng(11);
  std::vector<uint64_t> page(kPageSize / 8);
  for (int i = 0; i < 200; ++i) {
    for (auto& w : page) w = rng();
    if (i % 50 == 0) std::fill(page.begin(), page.end(), i == 0 ? 0 : ~uint64_t{0});  // zeros, ones
    const uint64_t want = XXH3_64bits(page.data(), kPageSize);  // this file: SSE2
    EXPECT_EQ(PageHash(page.data()), want) << "page " << i;
    if (avx2) {
      EXPECT_EQ(PageHashAvx2(page.data()), want) << "page " << i;
    }
  }
  if (!avx2) GTEST_SKIP() << "no AVX2 on this CPU: only the SSE2 path was checked";
}

}  // namespace
}  // namespace pheap
