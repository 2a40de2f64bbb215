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

#include "store/page_store.h"
#include "replication/peer_heaps.h"
#include "replication/term_store.h"

namespace pheap {
namespace peer_internal {

// Directories of stores set aside are named <heap>.stale-epoch-N[.K].
inline constexpr std::string_view kStaleMark = PageStore::kStaleEpochMark;

PageBuffer AllocPages(uint64_t pages);

// A heap's inbox: the pages received for the epoch being shipped, in
// arrival order, in one 4 KiB-aligned range (SealedEpoch wants contiguous
// data). The range is a reservation of address space as large as the inbox limit, made on
// first use: it never moves or is copied as an epoch grows. Its first
// InboxLimits::memory_bytes are anonymous memory; the rest is a shared
// mapping of an unnamed file (O_TMPFILE) in the peer's directory, attached
// when an epoch first outgrows memory, so a larger epoch costs disk rather
// than RAM. After an epoch, up to kKeepResident of memory stays mapped as it
// is, the rest of memory is marked MADV_FREE (taken back only under memory
// pressure; written again first, it costs no fault), and the file's pages
// are punched out. So steady shipping neither copies nor faults in the inbox.
class Inbox {
 public:
  static constexpr uint64_t kKeepResident = uint64_t{64} << 20;

  Inbox() = default;
  ~Inbox() { Unmap(); }
  Inbox(const Inbox&) = delete;
  Inbox& operator=(const Inbox&) = delete;

  Epoch epoch() const { return epoch_; }
  Term term() const { return term_; }
  uint64_t size() const { return pgnos_.size(); }

  // Drops what it holds unless it is for (epoch, term).
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
  // Puts one page in (again, for a resend). REQUIRES: Reserve(1) ok.
  void Put(Pgno pgno, const uint8_t* data) {
    auto [it, fresh] = slot_.emplace(pgno, pgnos_.size());
    if (fresh) pgnos_.push_back(pgno);
    std::memcpy(buf_ + it->second * kPageSize, data, kPageSize);
    touched_ = std::max<uint64_t>(touched_, it->second + 1);
  }
  // Room for `more` pages within `limits` (the caller has checked the total
  // against limits.max_bytes); the file goes in `dir`. An error says why
  // the room cannot be had.
  Status Reserve(uint64_t more, const InboxLimits& limits, const std::string& dir);
  // The highest page held. REQUIRES: size() > 0.
  Pgno Last() const { return *std::max_element(pgnos_.begin(), pgnos_.end()); }
  // The pages held as runs (for a kMissingPages reply).
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
  // Puts the pages held in ascending page order where they lie (pages
  // resent out of order are moved, one page of scratch at a time) and fills
  // e.pages and e.data from them.
  void Seal(SealedEpoch* e);

 private:
  void ReleaseBeyond(uint64_t bytes);
  void Unmap();

  Epoch epoch_ = 0;
  Term term_ = 0;
  std::vector<Pgno> pgnos_;                      // by slot
  std::unordered_map<Pgno, uint64_t> slot_;
  uint8_t* buf_ = nullptr;                       // reserved_ pages of address space
  uint64_t reserved_ = 0;                        // pages
  uint64_t memory_ = 0;                          // pages [0, memory_) anonymous
  uint64_t capacity_ = 0;                        // pages usable now
  int file_fd_ = -1;                             // backs [memory_, reserved_)
  uint64_t file_ready_ = 0;                      // file pages allocated: a write
                                                 // there cannot fault for space
  uint64_t touched_ = 0;                         // pages written since the last release
};

}  // namespace peer_internal

struct HeapTable::Heap {
  std::string name;
  HeapId id = 0;
  std::string dir;

  std::mutex mu;  // guards store, failed, trouble, promise
  std::shared_ptr<PageStore> store;
  Status failed;        // why the heap cannot be served (store or TERM damaged)
  Status trouble;       // the last write to its store or TERM that failed, until one succeeds
  TermPromise promise;  // copy of terms->promise() for the read threads

  // Write thread only.
  std::optional<TermStore> terms;
  peer_internal::Inbox inbox;
  std::atomic<uint64_t> inbox_pages{0};
  Term install_term = 0;          // an install is in progress for this writer
  uint64_t install_pages = 0;     // page copies it has received
  std::string logged_cause;       // of `trouble`, once logged ("" when healthy)

  // Past epochs that readers (clients that claim no term) are reading: a
  // reader asks for the epoch it opened at, which a commit may since have
  // superseded here. Each image pins the log files it reads (EpochImage),
  // so a compaction meanwhile does not disturb it; it goes once no reader
  // asked for it for kPastIdleMs, and at most kPastMax are kept.
  struct Past {
    Epoch epoch = 0;
    std::shared_ptr<EpochImage> image;
    int64_t used_ms = 0;
  };
  static constexpr int64_t kPastIdleMs = 10000;
  static constexpr size_t kPastMax = 8;
  std::mutex past_mu;
  std::vector<Past> past;  // guarded by past_mu

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
  Status Trouble() {
    std::lock_guard l(mu);
    return trouble;
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
// Refuses an older term, or one too far above the promise (kMaxTermStep);
// adopts (durably) a newer one a writer ships with. REQUIRES: the write thread.
std::optional<Reply> Fence(HeapTable::Heap* h, const wire::Header& req);
// A write to h's store or TERM failed with `s`: STORE_ERROR carrying s's
// errno. The heap reports it in STATUS until a write succeeds
// (StoreRecovered), and the peer logs it at warn once per distinct cause, not
// for every message a full disk refuses. REQUIRES: the write thread.
Reply StoreFailed(const wire::Header& req, HeapTable::Heap* h, const Status& s);
void StoreRecovered(HeapTable::Heap* h);
// PAGES and COMMIT wait while the writer installs an image here; a newer
// writer's epochs end the install (its unfinished file is dropped when the
// store is next opened). REQUIRES: the write thread.
std::optional<Reply> InstallHolds(HeapTable::Heap* h, const wire::Header& req);

}  // namespace peer_internal
}  // namespace pheap
