// The nemesis' writer (tests/cluster/nemesis.cc), through the C interface
// only. Each commit stamps a few heap pages and the root "stamp" with
// (counter, tag): the counter goes up by one per commit attempt, the tag
// names this process (the driver gives every start its own). Attempt c also
// stamps page c % 16 of a ring, so each ring page keeps the counter of an
// older commit for up to 15 more: a recovered image holding an older version
// of a page that later commits did not rewrite is seen too (the counters of
// a lineage are 1, 2, ..., C without a gap, since a failed attempt is
// written again before later ones, or the next writer takes its counter).
//
//   nemesis_writer run   NAME CONFIG TAG PERIOD_MS [SLOW_FLAG]  commits in a loop until killed
//   nemesis_writer check NAME CONFIG TAG                        opens, reports, leaves without committing
//
// SLOW_FLAG: the local store's syncs take the milliseconds written in that
// file longer while it exists (the slowdisk fault, tests/support/slow_sync_os.h).
//
// Lines on stdout (the driver's oracle reads them):
//   open C T E        the recovered image holds stamp (C, T) at epoch E (0 0: none)
//   torn C T ...      the recovered pages disagree with the root's stamp,
//                     or a ring page is not the last one its slot had
//   error WHY         the heap did not open (the process exits 1)
//   attempt C         printed before pheap_commit of the stamp (C, TAG)
//   ack C E           pheap_commit returned epoch E: (C, TAG) is durable
//   fail C WHY        pheap_commit failed
// The C handle spelled pheap::handle: the slow Os lives in namespace pheap.
#define PHEAP_CXX_API 1
#include <pheap/pheap.h>

#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tests/support/slow_sync_os.h"

namespace {

constexpr uint64_t kMagic = 0x6e656d6573697321ull;
constexpr int kPages = 3;  // stamped heap pages besides the root object
constexpr int kRing = 16;  // ring pages: attempt c stamps ring[c % kRing]

struct Mark {
  uint64_t counter, tag;
};

struct Stamp {
  uint64_t magic;
  Mark mark;
  Mark* pages[kPages];  // each at the start of a heap page of its own
  Mark* ring[kRing];    // likewise
};

// One line, written whole, so a kill leaves no half line the driver keeps.
void Say(const std::string& line) {
  std::string l = line + "\n";
  if (write(1, l.data(), l.size()) != static_cast<ssize_t>(l.size())) _exit(3);
}

std::string OneLine(std::string s) {
  for (char& c : s)
    if (c == '\n') c = ' ';
  return s;
}

[[noreturn]] void Fail(const char* what) {
  Say(std::string("error ") + what + ": " + OneLine(pheap_last_error()));
  _exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: nemesis_writer run|check NAME CONFIG TAG [PERIOD_MS]\n");
    return 2;
  }
  const std::string mode = argv[1];
  const uint64_t tag = std::strtoull(argv[4], nullptr, 10);
  const unsigned period_ms = argc > 5 ? static_cast<unsigned>(std::atoi(argv[5])) : 50;
  static pheaptest::SlowSyncOs slow(argc > 6 ? argv[6] : "");  // before the heap's threads
  if (argc > 6) pheap::SetOsForTesting(&slow);
  pheap::handle* h = pheap_open(argv[2], argv[3]);
  if (h == nullptr) Fail("open");
  auto* s = static_cast<Stamp*>(pheap_root(h, "stamp"));
  if (s != nullptr && s->magic != kMagic) {
    Say("torn 0 0 the root does not hold a stamp");
    _exit(1);
  }
  Mark at = s != nullptr ? s->mark : Mark{0, 0};
  if (s != nullptr) {
    for (int i = 0; i < kPages; ++i) {
      if (s->pages[i]->counter != at.counter || s->pages[i]->tag != at.tag) {
        char why[160];
        std::snprintf(why, sizeof(why), "torn %" PRIu64 " %" PRIu64 " page %d holds %" PRIu64 " %" PRIu64, at.counter,
                      at.tag, i, s->pages[i]->counter, s->pages[i]->tag);
        Say(why);
        _exit(1);
      }
    }
  }
  if (s != nullptr) {
    for (int k = 0; k < kRing; ++k) {
      // The last attempt up to at.counter that stamped slot k (0: none).
      const uint64_t c = at.counter;
      const uint64_t want = c < static_cast<uint64_t>(k) ? 0 : c - (c - k) % kRing;
      if (s->ring[k]->counter != want) {
        char why[160];
        std::snprintf(why, sizeof(why),
                      "torn %" PRIu64 " %" PRIu64 " ring page %d holds %" PRIu64 " %" PRIu64 ", not counter %" PRIu64,
                      at.counter, at.tag, k, s->ring[k]->counter, s->ring[k]->tag, want);
        Say(why);
        _exit(1);
      }
    }
  }
  Say("open " + std::to_string(at.counter) + " " + std::to_string(at.tag) + " " + std::to_string(pheap_epoch(h)));
  if (mode != "run") _exit(0);  // no close: closing would commit a new epoch

  if (s == nullptr) {
    s = static_cast<Stamp*>(pheap_calloc(h, 1, sizeof(Stamp)));
    if (s == nullptr) Fail("calloc");
    for (auto& p : s->pages) {
      p = static_cast<Mark*>(pheap_aligned_alloc(h, 4096, 4096));
      if (p == nullptr) Fail("aligned_alloc");
    }
    for (auto& p : s->ring) {
      p = static_cast<Mark*>(pheap_aligned_alloc(h, 4096, 4096));
      if (p == nullptr) Fail("aligned_alloc");
      *p = Mark{0, 0};  // no attempt stamped it yet
    }
    s->magic = kMagic;
    if (pheap_set_root(h, "stamp", s) != 0) Fail("set_root");
  }
  for (uint64_t counter = at.counter + 1;; ++counter) {
    const Mark m{counter, tag};
    for (auto* p : s->pages) *p = m;
    *s->ring[counter % kRing] = m;
    s->mark = m;
    Say("attempt " + std::to_string(counter));
    const int64_t e = pheap_commit(h);
    if (e < 0) Say("fail " + std::to_string(counter) + " " + OneLine(pheap_last_error()));
    else Say("ack " + std::to_string(counter) + " " + std::to_string(e));
    usleep(period_ms * 1000);
  }
}
