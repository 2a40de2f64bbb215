// The process the heap crash oracle kills. Through the C interface only:
// mutator threads apply the model's operations to a linked list under the
// program's own mutex; writer threads bump their A/B counters with no lock
// at all; the main thread commits under the mutex (so each commit holds a
// whole number of operations) and acknowledges each durable commit.
//
// usage: oracle_worker DIR SEED MUTATORS WRITERS TRACKING [MEMORY_MAX BALLAST_PAGES] ACK_FD
// (with a budget, each operation also rewrites a page of ballast many times
// the budget's size: tests/heap/oracle_model.h)
#include <pheap/pheap.h>

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/heap/oracle_apply.h"

using namespace pheaptest::oracle;

namespace {

int g_ack = -1;
pheap* g_heap = nullptr;
State* g_state = nullptr;
pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;  // the program's own lock
std::atomic<bool> g_stop{false};

void Ack(const char* what, unsigned long long v) {
  char buf[64];
  int n = std::snprintf(buf, sizeof(buf), "%s %llu\n", what, v);
  if (write(g_ack, buf, static_cast<size_t>(n)) != n) _exit(3);
}

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "oracle_worker: %s: %s\n", what, pheap_last_error());
  _exit(1);
}

void ApplyNext() {
  if (!pheaptest::oracle::ApplyNext(g_heap, g_state)) Die("malloc");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7 && argc != 9) {
    std::fprintf(stderr, "usage: oracle_worker DIR SEED MUTATORS WRITERS TRACKING [MEMORY_MAX BALLAST_PAGES] ACK_FD\n");
    return 2;
  }
  std::string cfg = std::string("dir=") + argv[1] + ";size=512M;code_check=off;tracking=";
  cfg += argv[5];
  const uint64_t ballast_pages = argc == 9 ? std::strtoull(argv[7], nullptr, 0) : 0;
  // No early commits: they would make states the oracle knows no commit of.
  if (argc == 9) cfg += std::string(";memory_early_commit=0;memory_max=") + argv[6];
  uint64_t seed = std::strtoull(argv[2], nullptr, 0);
  int mutators = std::atoi(argv[3]), writers = std::atoi(argv[4]);
  g_ack = std::atoi(argv[argc - 1]);
  if (writers > kMaxWriters) return 2;

  g_heap = pheap_open("oracle", cfg.c_str());
  if (g_heap == nullptr) Die("open");
  g_state = static_cast<State*>(pheap_root(g_heap, "state"));
  if (g_state == nullptr) {
    g_state = static_cast<State*>(pheap_calloc(g_heap, 1, sizeof(State)));
    if (g_state == nullptr) Die("calloc");
    g_state->seed = seed;
    for (int t = 0; t < kMaxWriters; ++t) {
      g_state->pair_a[t] = static_cast<uint64_t*>(pheap_aligned_alloc(g_heap, 4096, 4096));
      g_state->pair_b[t] = static_cast<uint64_t*>(pheap_aligned_alloc(g_heap, 4096, 4096));
      *g_state->pair_a[t] = *g_state->pair_b[t] = 0;
    }
    if (ballast_pages != 0) {
      // Fresh memory: zeros without a write.
      g_state->ballast = static_cast<uint64_t*>(pheap_calloc(g_heap, ballast_pages, 4096));
      if (g_state->ballast == nullptr) Die("calloc");
      g_state->ballast_pages = ballast_pages;
    }
    if (pheap_set_root(g_heap, "state", g_state) != 0) Die("set_root");
  }
  Ack("open", g_state->ops);

  std::vector<std::thread> threads;
  for (int m = 0; m < mutators; ++m) {
    threads.emplace_back([] {
      while (!g_stop.load(std::memory_order_relaxed)) {
        pthread_mutex_lock(&g_mu);
        ApplyNext();
        pthread_mutex_unlock(&g_mu);
      }
    });
  }
  for (int t = 0; t < writers; ++t) {
    threads.emplace_back([t] {
      auto* a = reinterpret_cast<std::atomic<uint64_t>*>(g_state->pair_a[t]);
      auto* b = reinterpret_cast<std::atomic<uint64_t>*>(g_state->pair_b[t]);
      uint64_t c = std::max(a->load(), b->load()) + 1;
      while (!g_stop.load(std::memory_order_relaxed)) {
        a->store(c, std::memory_order_release);
        b->store(c, std::memory_order_release);
        ++c;
      }
    });
  }
  for (uint64_t round = 0;; ++round) {
    usleep(static_cast<useconds_t>(500 + Mix(seed ^ round) % 3000));
    pthread_mutex_lock(&g_mu);
    uint64_t ops = g_state->ops;
    Ack("committing", ops);
    int64_t e = pheap_commit_async(g_heap);
    pthread_mutex_unlock(&g_mu);
    if (e < 0 || pheap_wait(g_heap, e) != e) Die("commit");
    Ack("durable", ops);
  }
}
