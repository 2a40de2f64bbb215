// The program the memory limit test runs inside a memory cgroup four times
// smaller than its heap: with no memory_max given, the budget follows the
// cgroup's limit. It writes the whole heap, commits, reads every page back
// in order and at random, rewrites a third of it and checks again.
//
// usage: memory_limit_worker DIR HEAP_MIB
// Exits 0 when every page held what was written, 1 naming the first that
// did not, 2 on a setup failure.
#include <pheap/pheap.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "tests/support/test_util.h"

namespace {

uint64_t Value(uint64_t p, uint64_t round) { return pheaptest::Mix(p * 31 + round); }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: memory_limit_worker DIR HEAP_MIB\n");
    return 2;
  }
  const uint64_t pages = std::strtoull(argv[2], nullptr, 0) << 8;
  const std::string cfg =
      std::string("dir=") + argv[1] + ";size=" + std::to_string(2 * (pages >> 8)) + "M;code_check=off";
  pheap* h = pheap_open("limit", cfg.c_str());
  if (h == nullptr) {
    std::fprintf(stderr, "memory_limit_worker: open: %s\n", pheap_last_error());
    return 2;
  }
  auto* a = static_cast<uint64_t*>(pheap_aligned_alloc(h, 4096, pages * 4096));
  if (a == nullptr) {
    std::fprintf(stderr, "memory_limit_worker: alloc: %s\n", pheap_last_error());
    return 2;
  }
  std::vector<uint64_t> round(pages, 1);
  auto check = [&](uint64_t p, const char* how) {
    const uint64_t want = Value(p, round[p]);
    if (a[p * 512] == want && a[p * 512 + 511] == want) return true;
    std::fprintf(stderr, "memory_limit_worker: page %llu (%s) holds %llx/%llx, not %llx\n",
                 static_cast<unsigned long long>(p), how, static_cast<unsigned long long>(a[p * 512]),
                 static_cast<unsigned long long>(a[p * 512 + 511]), static_cast<unsigned long long>(want));
    return false;
  };
  for (uint64_t p = 0; p < pages; ++p) a[p * 512] = a[p * 512 + 511] = Value(p, 1);
  if (pheap_commit(h) < 0) {
    std::fprintf(stderr, "memory_limit_worker: commit: %s\n", pheap_last_error());
    return 2;
  }
  for (uint64_t p = 0; p < pages; ++p)
    if (!check(p, "in order")) return 1;
  std::mt19937_64 rng(pages);
  for (uint64_t i = 0; i < pages; ++i)
    if (uint64_t p = rng() % pages; !check(p, "at random")) return 1;
  for (uint64_t p = 0; p < pages; p += 3) {
    round[p] = 2;
    a[p * 512] = a[p * 512 + 511] = Value(p, 2);
  }
  if (pheap_commit(h) < 0) return 2;
  for (uint64_t p = 0; p < pages; ++p)
    if (!check(p, "rewritten")) return 1;
  return pheap_close(h) == 0 ? 0 : 2;
}
