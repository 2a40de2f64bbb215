#include "pager/evictor.h"

#include <sys/mman.h>

#include <algorithm>
#include <array>

namespace pheap {

Evictor::Evictor(uint64_t pages) : pages_(pages), bytes_(std::max<uint64_t>(pages, 1) * sizeof(uint32_t)) {
  void* m = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  stamps_ = m == MAP_FAILED ? new uint32_t[bytes_ / sizeof(uint32_t)]() : static_cast<uint32_t*>(m);
  if (m == MAP_FAILED) bytes_ = 0;  // owned by new[]
}

Evictor::~Evictor() {
  if (bytes_ != 0) {
    ::munmap(stamps_, bytes_);
  } else {
    delete[] stamps_;
  }
}

void Evictor::Touch(Run r, uint32_t s) {
  uint64_t fresh = 0;
  for (Pgno p = r.first; p < r.end() && p < pages_; ++p) {
    auto ref = Ref(p);
    uint32_t old = ref.load(std::memory_order_relaxed);
    while (old < s && !ref.compare_exchange_weak(old, s, std::memory_order_acq_rel)) {
    }
    if (old == 0) ++fresh;
  }
  if (fresh != 0) resident_.fetch_add(fresh, std::memory_order_relaxed);
}

void Evictor::Forget(Run r) {
  uint64_t gone = 0;
  for (Pgno p = r.first; p < r.end() && p < pages_; ++p) {
    auto ref = Ref(p);
    if (ref.load(std::memory_order_relaxed) != 0 && ref.exchange(0, std::memory_order_acq_rel) != 0) ++gone;
  }
  if (gone != 0) resident_.fetch_sub(gone, std::memory_order_relaxed);
}

uint64_t Evictor::Demote(Run r, uint32_t durable, std::vector<Run>* out) {
  uint64_t n = 0;
  Run cur{};
  for (Pgno p = r.first; p < r.end() && p < pages_; ++p) {
    auto ref = Ref(p);
    uint32_t s = ref.load(std::memory_order_relaxed);
    // 1 <= every durable stamp, so the page stays evictable; a cut that
    // stamps it meanwhile (a newer write) wins the exchange.
    if (s == 0 || s > durable || !(s == 1 || ref.compare_exchange_strong(s, 1, std::memory_order_acq_rel))) continue;
    ++n;
    if (cur.count != 0 && cur.end() == p) {
      ++cur.count;
      continue;
    }
    if (cur.count != 0) out->push_back(cur);
    cur = Run{p, 1};
  }
  if (cur.count != 0) out->push_back(cur);
  return n;
}

uint64_t Evictor::Choose(Pgno limit, uint32_t durable, uint64_t want, std::vector<Run>* out) {
  limit = std::min(limit, pages_);
  if (want == 0 || durable == 0 || limit == 0) return 0;
  auto candidate = [&](Pgno p, uint32_t* s) {
    *s = Ref(p).load(std::memory_order_relaxed);
    return *s != 0 && *s <= durable;
  };
  // The lowest stamp among the candidates, and how many there are.
  uint32_t lo = durable;
  uint64_t count = 0;
  for (Pgno p = 0; p < limit; ++p) {
    uint32_t s;
    if (!candidate(p, &s)) continue;
    lo = std::min(lo, s);
    ++count;
  }
  if (count == 0) return 0;
  // Stamps fall into kBands bands of `width` from `lo`; every band below
  // `cut` is taken whole, band `cut` from the hand on.
  constexpr uint64_t kBands = 64;
  uint64_t cut = kBands, width = 1;
  if (count > want) {
    width = (uint64_t{durable} - lo) / kBands + 1;
    std::array<uint64_t, kBands> hist{};
    for (Pgno p = 0; p < limit; ++p) {
      uint32_t s;
      if (candidate(p, &s)) ++hist[(s - lo) / width];
    }
    uint64_t below = 0;
    for (cut = 0; cut < kBands && below + hist[cut] < want; ++cut) below += hist[cut];
  }
  auto band = [&](uint32_t s) { return (s - lo) / width; };
  uint64_t taken = 0;
  Run cur{};
  auto add = [&](Pgno p) {
    if (cur.count != 0 && cur.end() == p) {
      ++cur.count;
      return;
    }
    if (cur.count != 0) out->push_back(cur);
    cur = Run{p, 1};
  };
  const size_t first_out = out->size();
  // Lower bands whole, in address order.
  if (cut > 0) {
    for (Pgno p = 0; p < limit && taken < want; ++p) {
      uint32_t s;
      if (candidate(p, &s) && band(s) < cut) {
        add(p);
        ++taken;
      }
    }
    if (cur.count != 0) out->push_back(cur);
    cur = Run{};
  }
  if (taken >= want || cut >= kBands) return taken;
  // Band `cut` from the hand, wrapping once.
  Pgno start = hand_ < limit ? hand_ : 0, p = start;
  bool wrapped = false;
  while (taken < want) {
    if (p >= limit) {
      if (wrapped || start == 0) break;
      if (cur.count != 0) out->push_back(cur);
      cur = Run{};
      wrapped = true;
      p = 0;
    }
    if (wrapped && p >= start) break;
    uint32_t s;
    if (candidate(p, &s) && band(s) == cut) {
      add(p);
      ++taken;
    }
    ++p;
  }
  if (cur.count != 0) out->push_back(cur);
  hand_ = p;
  // One ascending list: no page was taken twice (bands differ, the hand
  // stops where it began), so sorting and joining neighbours is enough.
  std::sort(out->begin() + static_cast<std::ptrdiff_t>(first_out), out->end(),
            [](const Run& a, const Run& b) { return a.first < b.first; });
  size_t w = first_out;
  for (size_t i = first_out; i < out->size(); ++i) {
    if (w > first_out && (*out)[w - 1].end() == (*out)[i].first) {
      (*out)[w - 1].count += (*out)[i].count;
    } else {
      (*out)[w++] = (*out)[i];
    }
  }
  out->resize(w);
  return taken;
}

}  // namespace pheap
