// One bit per page, set and cleared concurrently by fault threads, signal
// handlers and the commit cut. Lock-free and allocation-free after
// construction, so it is safe inside a signal handler and during a pause.
// The words are an anonymous mapping: a bitmap over a 16 GiB region is
// 512 KiB, and only the parts that ever hold a set bit become resident.
//
// A summary holds one bit per group of 64 words (4096 pages), set by every
// Set in that group, so TakeRuns reads only the groups that had a bit set
// since the last take instead of every word of the region.
#pragma once

#include <sys/mman.h>

#include <algorithm>
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
    summary_ = words_ + Words();
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
  // The word first, then its group's summary bit, both sequentially
  // consistent: a TakeRuns that clears the summary bit before reading the
  // word either sees this bit or leaves the summary bit set for the next.
  void Set(Pgno p) {
    word(p).fetch_or(Bit(p), std::memory_order_seq_cst);
    MarkGroup(p);
  }
  void Clear(Pgno p) { word(p).fetch_and(~Bit(p), std::memory_order_acq_rel); }
  void SetRun(Run r) {  // a word (and a summary bit) at a time
    for (Pgno p = r.first; p < r.end();) {
      const uint64_t n = std::min<uint64_t>(64 - (p & 63), r.end() - p);
      const uint64_t mask = (n == 64 ? ~uint64_t{0} : ((uint64_t{1} << n) - 1)) << (p & 63);
      word(p).fetch_or(mask, std::memory_order_seq_cst);
      MarkGroup(p);
      p += n;
    }
  }
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

  // How many bits are set, reading only the groups whose summary bit is
  // set; bits set or cleared meanwhile may or may not be counted.
  uint64_t Count() const {
    uint64_t n = 0;
    const uint64_t nwords = Words();
    for (uint64_t si = 0; si * 64 * 64 < nwords; ++si) {
      for (uint64_t groups = std::atomic_ref<uint64_t>(summary_[si]).load(std::memory_order_relaxed); groups != 0;
           groups &= groups - 1) {
        const uint64_t first = (si * 64 + static_cast<uint64_t>(__builtin_ctzll(groups))) * 64;
        for (uint64_t i = first; i < first + 64 && i < nwords; ++i)
          n += static_cast<uint64_t>(__builtin_popcountll(std::atomic_ref(words_[i]).load(std::memory_order_relaxed)));
      }
    }
    return n;
  }

  // Calls fn(Run) for each maximal run of set bits, clearing them as it goes
  // (each word is taken with one exchange, so a bit set concurrently is
  // either reported now or left for the next call, never lost).
  // Only the groups whose summary bit is set are read.
  template <typename Fn>
  void TakeRuns(Fn&& fn) {
    Run cur{};
    const uint64_t nwords = Words();
    for (uint64_t si = 0; si * 64 * 64 < nwords; ++si) {
      std::atomic_ref<uint64_t> s(summary_[si]);
      if (s.load(std::memory_order_relaxed) == 0) continue;
      for (uint64_t groups = s.exchange(0, std::memory_order_seq_cst); groups != 0; groups &= groups - 1) {
        const uint64_t first = (si * 64 + static_cast<uint64_t>(__builtin_ctzll(groups))) * 64;
        for (uint64_t i = first; i < first + 64 && i < nwords; ++i) {
          if (std::atomic_ref(words_[i]).load(std::memory_order_relaxed) == 0) continue;
          for (uint64_t w = std::atomic_ref(words_[i]).exchange(0, std::memory_order_seq_cst); w != 0; w &= w - 1) {
            const Pgno p = i * 64 + static_cast<Pgno>(__builtin_ctzll(w));
            if (cur.count != 0 && cur.end() == p) {
              ++cur.count;
            } else {
              if (cur.count != 0) fn(cur);
              cur = Run{p, 1};
            }
          }
        }
      }
    }
    if (cur.count != 0) fn(cur);
  }

 private:
  static uint64_t Bit(Pgno p) { return uint64_t{1} << (p & 63); }
  void MarkGroup(Pgno p) {  // the load spares the shared line a write
    std::atomic_ref<uint64_t> s(summary_[p >> 18]);
    const uint64_t bit = uint64_t{1} << ((p >> 12) & 63);
    if ((s.load(std::memory_order_seq_cst) & bit) == 0) s.fetch_or(bit, std::memory_order_seq_cst);
  }
  std::atomic_ref<uint64_t> word(Pgno p) const { return std::atomic_ref(words_[p >> 6]); }
  uint64_t Words() const { return (pages_ + 63) / 64; }
  // The words, then one summary word per 64 groups (never 0 bytes).
  uint64_t Bytes() const { return (Words() + (Words() + 4095) / 4096 + 1) * 8; }
  uint64_t pages_;
  uint64_t* words_;
  uint64_t* summary_;  // bit g of summary_[i]: group 64 * i + g may hold a set bit
  bool mapped_;
};

}  // namespace pheap
