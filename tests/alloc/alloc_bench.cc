// Throughput of the allocator against glibc malloc on a larson-like loop:
// each thread replaces random entries of an array of live blocks (free the
// old one, allocate 16..512 bytes, touch it). Between rounds the arrays pass
// to the next thread, so with two threads half the frees are cross-thread.
// Not a test: it prints, it asserts nothing.
//   alloc_bench [ops_per_thread_per_round]
#include <unistd.h>

#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "heap/allocator.h"
#include "tests/alloc/alloc_test_util.h"

namespace {

constexpr int kSlots = 1000;
constexpr int kRounds = 10;

struct Glibc {
  void* Malloc(size_t n) { return malloc(n); }
  void Free(void* p) { free(p); }
};

struct Pheap {
  pheap::Allocator* a;
  void* Malloc(size_t n) { return a->Malloc(n); }
  void Free(void* p) { a->Free(p); }
};

template <typename A>
double Run(A alloc, int threads, long ops) {
  std::vector<std::vector<void*>> arrays(threads, std::vector<void*>(kSlots, nullptr));
  std::barrier sync(threads);
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      uint64_t x = 88172645463325252ull + t;
      for (int round = 0; round < kRounds; ++round) {
        std::vector<void*>& slots = arrays[(t + round) % threads];
        for (long i = 0; i < ops; ++i) {
          x ^= x << 13, x ^= x >> 7, x ^= x << 17;
          void*& s = slots[x % kSlots];
          alloc.Free(s);
          size_t n = 16 + (x >> 32) % 497;
          s = alloc.Malloc(n);
          *static_cast<char*>(s) = static_cast<char>(i);
        }
        sync.arrive_and_wait();
      }
    });
  }
  for (auto& t : ts) t.join();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (auto& a : arrays) {
    for (void* p : a) alloc.Free(p);
  }
  return secs;
}

}  // namespace

int main(int argc, char** argv) {
  long ops = argc > 1 ? atol(argv[1]) : 1000000;
  pheap::testing::TestArena arena(size_t{8} << 30, false);
  if (!arena.ok()) return 1;
  pheap::Allocator a;
  pheap::Status s = a.Attach(arena.base(), arena.size(), &arena.hooks());
  if (!s.ok()) {
    fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  printf("larson-like: %d rounds x %ld ops per thread, %d live blocks of 16..512 B per thread\n",
         kRounds, ops, kSlots);
  for (int threads : {1, 2}) {
    Run(Glibc{}, threads, ops / 10);  // warm both
    Run(Pheap{&a}, threads, ops / 10);
    double g = Run(Glibc{}, threads, ops);
    double p = Run(Pheap{&a}, threads, ops);
    double total = static_cast<double>(ops) * kRounds * threads;
    printf("%d thread%s: glibc %.1f ns/op, pheap %.1f ns/op, pheap/glibc time ratio %.2f\n",
           threads, threads > 1 ? "s" : "", g * 1e9 / total, p * 1e9 / total, p / g);
  }
  return 0;
}
