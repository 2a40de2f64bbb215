// The independent oracle of the engine crash test. Epoch e of the model
// writes a set of pages chosen only by (seed, e) with contents that depend
// only on (seed, e, pgno), and now and then discards a run. Replaying epochs
// 1..D gives the exact image of durable epoch D without reading the store.
#pragma once

#include "tests/support/test_util.h"

#include <cstdint>
#include <vector>

#include "base/types.h"

namespace pheap::crashtest {

using pheaptest::Mix;

// Region layout, in pages: [0] unused; [1, data_pages] model pages; then two
// pages per writer thread holding the pair counters A and B.
struct Layout {
  uint64_t data_pages = 512;
  int writers = 2;
  Pgno pair_a(int t) const { return 1 + data_pages + 2 * static_cast<uint64_t>(t); }
  Pgno pair_b(int t) const { return pair_a(t) + 1; }
  uint64_t total_pages() const { return pair_b(writers - 1) + 1; }
};

struct EpochChanges {
  std::vector<Pgno> writes;
  Run discard;  // count 0: none
};

class Model {
 public:
  Model(uint64_t seed, const Layout& layout) : seed_(seed), layout_(layout) {}

  EpochChanges Changes(Epoch e) const {
    EpochChanges c;
    uint64_t r = Mix(seed_ ^ Mix(e));
    // Mostly small epochs, sometimes a large one, to vary the cut's size.
    uint64_t n = (r % 16 == 0) ? 64 + (r >> 8) % 192 : 1 + (r >> 8) % 24;
    for (uint64_t i = 0; i < n; ++i)
      c.writes.push_back(1 + Mix(r + i) % layout_.data_pages);
    if (e % 7 == 3) {
      uint64_t d = Mix(r ^ 0xd15c);
      c.discard.first = 1 + d % layout_.data_pages;
      c.discard.count = 1 + (d >> 20) % 8;
      if (c.discard.end() > 1 + layout_.data_pages) c.discard.count = 1 + layout_.data_pages - c.discard.first;
    }
    return c;
  }

  uint64_t Word(Epoch e, Pgno p, size_t i) const { return Mix(seed_ ^ Mix(e * 1000003 + p)) + i; }

  // last_writer[p] for p in [0, data_pages]: the epoch whose content page p
  // holds after epoch d (0: zeros). Discards of an epoch apply after its
  // writes, as the worker performs them.
  std::vector<Epoch> Replay(Epoch d) const {
    std::vector<Epoch> last(layout_.data_pages + 1, 0);
    for (Epoch e = 1; e <= d; ++e) {
      EpochChanges c = Changes(e);
      for (Pgno p : c.writes) last[p] = e;
      for (Pgno p = c.discard.first; p < c.discard.end(); ++p) last[p] = 0;
    }
    return last;
  }

  const Layout& layout() const { return layout_; }

 private:
  uint64_t seed_;
  Layout layout_;
};

}  // namespace pheap::crashtest
