// The peer's per-heap state and the helpers its request handlers share:
// peer_heaps.cc (open, hello, terms, pages, commit, fetch, status) and
// peer_install.cc (installing an image, repairing pages). Not a contract.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "replication/page_store.h"
#include "replication/peer_heaps.h"
#include "replication/term_store.h"

namespace pheap {
namespace peer_internal {

// Directories of stores set aside are named <heap>.stale-epoch-N[.K].
inline constexpr std::string_view kStaleMark = ".stale-epoch-";

PageBuffer AllocPages(uint64_t pages);

// The pages received for the epoch being shipped, in arrival order, in one
// 4 KiB-aligned buffer (SealedEpoch wants contiguous data). The buffer is
// a reservation of address space as large as the peer's staging limit,
// made on first use: it never moves or is copied as an epoch grows, and
// the pages an epoch touched stay mapped for the next one: up to
// kKeepResident as they are, the rest marked MADV_FREE (the kernel takes
// them back only under memory pressure; written again first, they cost no
// fault). So steady shipping neither copies nor faults in the staging area.
class Staging {
 public:
  static constexpr uint64_t kKeepResident = uint64_t{64} << 20;

  Staging() = default;
  ~Staging() { Unmap(); }
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;

  Epoch epoch() const { return epoch_; }
  Term term() const { return term_; }
  uint64_t size() const { return pgnos_.size(); }

  // Drops what is staged unless it is for (epoch, term).
  void Begin(Epoch epoch, Term term) {
    if (epoch == epoch_ && term == term_) return;
    Clear();
    epoch_ = epoch;
    term_ = term;
  }
  void Clear() {
    pgnos_.clear();
    slot_.clear();
    ReleaseBeyond(kKeepResident);
    epoch_ = term_ = 0;
  }
  // Stages (or restages, for a resend) one page. REQUIRES: Reserve(1) held.
  void Put(Pgno pgno, const uint8_t* data) {
    auto [it, fresh] = slot_.emplace(pgno, pgnos_.size());
    if (fresh) pgnos_.push_back(pgno);
    std::memcpy(buf_ + it->second * kPageSize, data, kPageSize);
    touched_ = std::max<uint64_t>(touched_, it->second + 1);
  }
  // Room for `more` pages; `limit_bytes` is the peer's staging limit, which
  // the caller has checked. False if the address space cannot be had.
  bool Reserve(uint64_t more, uint64_t limit_bytes);
  // The staged pages as runs (for a kMissingPages reply).
  std::vector<Run> Runs() const {
    std::vector<Pgno> s = pgnos_;
    std::sort(s.begin(), s.end());
    std::vector<Run> runs;
    for (Pgno p : s) {
      if (!runs.empty() && runs.back().end() == p) ++runs.back().count;
      else runs.push_back(Run{p, 1});
    }
    return runs;
  }
  // Fills e.pages and e.data in ascending page order; copies only when the
  // pages did not arrive in order. `hold` keeps a reordered copy alive.
  void Seal(SealedEpoch* e, PageBuffer* hold) const {
    std::vector<uint64_t> order(pgnos_.size());
    std::iota(order.begin(), order.end(), 0);
    if (std::is_sorted(pgnos_.begin(), pgnos_.end())) {
      e->pages = pgnos_;
      e->data = buf_;
      return;
    }
    std::sort(order.begin(), order.end(), [&](uint64_t a, uint64_t b) { return pgnos_[a] < pgnos_[b]; });
    *hold = AllocPages(order.size());
    e->pages.resize(order.size());
    for (size_t i = 0; i < order.size(); ++i) {
      e->pages[i] = pgnos_[order[i]];
      std::memcpy(hold->get() + i * kPageSize, buf_ + order[i] * kPageSize, kPageSize);
    }
    e->data = hold->get();
  }

 private:
  Epoch epoch_ = 0;
  Term term_ = 0;
  std::vector<Pgno> pgnos_;                      // by slot
  std::unordered_map<Pgno, uint64_t> slot_;
  void ReleaseBeyond(uint64_t bytes);
  void Unmap();
  uint8_t* buf_ = nullptr;                       // capacity_ pages of address space
  uint64_t capacity_ = 0;                        // pages
  uint64_t touched_ = 0;                         // pages written since the last release
};

}  // namespace peer_internal

struct HeapTable::Heap {
  std::string name;
  HeapId id = 0;
  std::string dir;

  std::mutex mu;  // guards store, failed, promise
  std::shared_ptr<PageStore> store;
  Status failed;        // why the heap cannot be served (store or TERM damaged)
  TermPromise promise;  // copy of terms->promise() for the read threads

  // Write thread only.
  std::optional<TermStore> terms;
  peer_internal::Staging staging;
  std::atomic<uint64_t> staged_pages{0};
  Term install_term = 0;          // an install is in progress for this writer
  uint64_t install_pages = 0;     // page copies it has received

  std::shared_ptr<PageStore> Store() {
    std::lock_guard l(mu);
    return store;
  }
  Status Failed() {
    std::lock_guard l(mu);
    return failed;
  }
  Term Promised() {
    std::lock_guard l(mu);
    return promise.term;
  }
  ImageInfo Image() {
    auto s = Store();
    return s ? s->image() : ImageInfo{id, 0, 0, 0, 0, 0};
  }
};

namespace peer_internal {

wire::ReplyTo To(const wire::Header& h);
// A kError reply for `req` (h may be null: the heap is not known).
Reply Err(const wire::Header& req, HeapTable::Heap* h, wire::ErrorCode code, uint64_t detail, std::string_view text,
          std::span<const Run> runs = {});
// Refuses an older term; adopts (durably) a newer one a writer ships with.
// REQUIRES: the write thread.
std::optional<Reply> Fence(HeapTable::Heap* h, const wire::Header& req);
// PAGES and COMMIT wait while the writer installs an image here; a newer
// writer's epochs end the install (its unfinished file is dropped when the
// store is next opened). REQUIRES: the write thread.
std::optional<Reply> InstallHolds(HeapTable::Heap* h, const wire::Header& req);

}  // namespace peer_internal
}  // namespace pheap
