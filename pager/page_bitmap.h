// One bit per page, set and cleared concurrently by fault threads, signal
// handlers and the commit cut. Lock-free and allocation-free after
// construction, so it is safe inside a signal handler and during a pause.
// The words are an anonymous mapping: a bitmap over a 16 GiB region is
// 512 KiB, and only the parts that ever hold a set bit become resident.
#pragma once

#include <sys/mman.h>

#include <atomic>
#include <cstdint>

#include "base/types.h"

namespace pheap {

class PageBitmap {
 public:
  explicit PageBitmap(uint64_t pages) : pages_(pages) {
    void* m = ::mmap(nullptr, Bytes(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    mapped_ = m != MAP_FAILED;
    words_ = mapped_ ? static_cast<uint64_t*>(m) : new uint64_t[Bytes() / 8]();
  }
  ~PageBitmap() {
    if (mapped_) ::munmap(words_, Bytes());
    else delete[] words_;
  }
  PageBitmap(const PageBitmap&) = delete;
  PageBitmap& operator=(const PageBitmap&) = delete;

  uint64_t pages() const { return pages_; }
  bool Test(Pgno p) const {
    return p < pages_ && (word(p).load(std::memory_order_acquire) & Bit(p)) != 0;
  }
  void Set(Pgno p) { word(p).fetch_or(Bit(p), std::memory_order_acq_rel); }
  void Clear(Pgno p) { word(p).fetch_and(~Bit(p), std::memory_order_acq_rel); }
  void SetRun(Run r) { for (Pgno p = r.first; p < r.end(); ++p) Set(p); }
  void ClearRun(Run r) { for (Pgno p = r.first; p < r.end(); ++p) Clear(p); }

  // First page in [from, limit) whose bit is set, or limit.
  Pgno NextSet(Pgno from, Pgno limit) const {
    while (from < limit) {
      uint64_t w = word(from).load(std::memory_order_acquire) >> (from & 63);
      if (w != 0) {
        Pgno p = from + static_cast<Pgno>(__builtin_ctzll(w));
        return p < limit ? p : limit;
      }
      from = (from | 63) + 1;
    }
    return limit;
  }

  // Calls fn(Run) for each maximal run of set bits, clearing them as it goes
  // (each word is taken with one exchange, so a bit set concurrently is
  // either reported now or left for the next call, never lost).
  template <typename Fn>
  void TakeRuns(Fn&& fn) {
    Run cur{};
    const uint64_t nwords = (pages_ + 63) / 64;
    for (uint64_t i = 0; i < nwords; ++i) {
      if (std::atomic_ref(words_[i]).load(std::memory_order_relaxed) == 0) continue;
      uint64_t w = std::atomic_ref(words_[i]).exchange(0, std::memory_order_acq_rel);
      while (w != 0) {
        Pgno p = i * 64 + static_cast<Pgno>(__builtin_ctzll(w));
        w &= w - 1;
        if (cur.count != 0 && cur.end() == p) {
          ++cur.count;
        } else {
          if (cur.count != 0) fn(cur);
          cur = Run{p, 1};
        }
      }
    }
    if (cur.count != 0) fn(cur);
  }

 private:
  static uint64_t Bit(Pgno p) { return uint64_t{1} << (p & 63); }
  std::atomic_ref<uint64_t> word(Pgno p) const { return std::atomic_ref(words_[p >> 6]); }
  uint64_t Bytes() const { return ((pages_ + 63) / 64 + 1) * 8; }  // never 0
  uint64_t pages_;
  uint64_t* words_;
  bool mapped_;
};

}  // namespace pheap
