// The process the engine crash test kills. It opens the heap, reports the
// epoch it found, then applies the model's epochs one after another and
// commits each, reporting every durable epoch on the ack pipe, while writer
// threads keep bumping their pair counters (A, then B) without pausing,
// and the store compacts in the background.
//
// usage: crash_worker DIR NAME MODE SEED ACK_FD
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "heap/engine.h"
#include "tests/engine/crash_model.h"

using namespace pheap;
using namespace pheap::crashtest;

namespace {

void Ack(int fd, const char* what, uint64_t v) {
  char buf[64];
  int n = snprintf(buf, sizeof(buf), "%s %llu\n", what, static_cast<unsigned long long>(v));
  if (write(fd, buf, static_cast<size_t>(n)) != n) _exit(3);
}

uint8_t* Page(Engine& e, Pgno p) { return static_cast<uint8_t*>(e.base()) + p * kPageSize; }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: crash_worker DIR NAME MODE SEED ACK_FD\n");
    return 2;
  }
  EngineOptions o;
  o.dir = argv[1];
  o.size = uint64_t{64} << 20;
  // Small log files: the store rolls over every few epochs and, once they
  // pass twice the live image (about 2 MiB), compacts in the background
  // beside the commits the kills interrupt.
  o.store.log_file_bytes = 256 << 10;
  if (!ParseTrackingMode(argv[3], &o.pager.mode)) return 2;
  uint64_t seed = strtoull(argv[4], nullptr, 0);
  int ack = atoi(argv[5]);
  Layout layout;
  Model model(seed, layout);

  auto opened = Engine::Open(argv[2], o);
  if (!opened.ok()) {
    fprintf(stderr, "crash_worker: %s\n", opened.status().ToString().c_str());
    return 1;
  }
  Engine& eng = **opened;
  Epoch start = eng.durable_epoch();
  Ack(ack, "open", start);

  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < layout.writers; ++t) {
    writers.emplace_back([&, t] {
      auto* a = reinterpret_cast<std::atomic<uint64_t>*>(Page(eng, layout.pair_a(t)));
      auto* b = reinterpret_cast<std::atomic<uint64_t>*>(Page(eng, layout.pair_b(t)));
      // The image may hold this pair cut between its two stores (A = B + 1).
      // Finish that pair first: storing a new A over it would make A = B + 2,
      // an instant that really happens here but that the test calls torn.
      uint64_t c = a->load();
      if (b->load() != c) b->store(c, std::memory_order_release);
      ++c;
      while (!stop.load(std::memory_order_relaxed)) {
        a->store(c, std::memory_order_release);
        b->store(c, std::memory_order_release);
        ++c;
      }
    });
  }

  for (Epoch e = start + 1;; ++e) {
    EpochChanges c = model.Changes(e);
    for (Pgno p : c.writes) {
      auto* w = reinterpret_cast<uint64_t*>(Page(eng, p));
      for (size_t i = 0; i < kPageSize / 8; ++i) w[i] = model.Word(e, p, i);
    }
    if (c.discard.count > 0) {
      Status s = eng.Discard(Page(eng, c.discard.first), c.discard.count * kPageSize);
      if (!s.ok()) { fprintf(stderr, "crash_worker: discard: %s\n", s.ToString().c_str()); _exit(1); }
    }
    Ack(ack, "committing", e);
    auto r = eng.Commit();
    if (!r.ok() || *r != e) {
      fprintf(stderr, "crash_worker: commit %llu: %s\n", static_cast<unsigned long long>(e),
              r.ok() ? "wrong epoch" : r.status().ToString().c_str());
      _exit(1);
    }
    Ack(ack, "durable", e);
  }
}
