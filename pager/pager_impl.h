// Pager::Impl: the state behind the public Pager (pager.h). Split from
// pager.cc so the open path (pager_open.cc) and the commit cut (pager.cc)
// each read on their own.
#pragma once

#include <unistd.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "base/page_io.h"
#include "pager/dirty_tracker.h"
#include "pager/evictor.h"
#include "pager/fault_service.h"
#include "pager/page_bitmap.h"
#include "pager/pager.h"
#include "pager/region.h"
#include "pager/staging.h"

namespace pheap {

class Pager::Impl {
 public:
  Impl(const ImageInfo& image, PageSource* source, EpochSink* sink, const PagerOptions& options);
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // pager_open.cc
  Status Start(TrackingMode mode);

  // pager_evict.cc: eviction under memory_max (docs/design.md, "Eviction").
  // Sets up the evictor when the budget and the mode allow; logs why not.
  void SetUpEviction();
  void StartEviction();
  void StopEviction();
  // Gives back up to `max` of `victims` that are still evictable: resident,
  // durable (stamp <= the durable epoch's), not written since the last cut
  // (not in carry_), below the durable image's hwm. Returns the pages given
  // back. REQUIRES: writers paused, TakeIntoCarry(true) ran in this pause
  // and whatever it took is in carry_ or stamped; cut_mu_ held.
  uint64_t EvictInPause(const std::vector<Run>& victims, uint64_t max);
  // Pages of the region resident now (a PAGEMAP_SCAN walk), else the
  // evictor's count.
  uint64_t PresentPages();
  // Over the high watermark: the pages to give back, chosen while the
  // program runs; empty otherwise. REQUIRES: not cut_mu_.
  std::vector<Run> ChooseVictims(uint64_t present, uint64_t max);
  // Pages written since the last cut: in carry_ (taken by an eviction
  // pause) and the tracker's count, or `present` where it cannot count.
  uint64_t CountWritten(uint64_t present);
  // An eviction pause of its own, between commits: pause, take the written
  // pages into carry_, give back what of `victims` is still evictable.
  uint64_t EvictionPause(const std::vector<Run>& victims, uint64_t max);
  // [from, hwm) raised to `to`: registered for missing faults where the
  // mode needs it. REQUIRES: writers paused; install_mu_ exclusive.
  Status RaiseServedHwm(Pgno to);
  // [a, a + len) registered for missing faults as the mode needs them;
  // 0 or -errno.
  int RegisterMissing(uint64_t a, uint64_t len);
  // The cut's pages, inside its pause: stamped with the cut's number, no
  // longer zeros-by-discard, known present.
  void MarkCut(const Pgno* pages, uint64_t n, Epoch epoch);
  uint32_t Stamp(Epoch e) const {
    const uint64_t s = e - image_.epoch + 1;
    return s >= UINT32_MAX ? UINT32_MAX - 1 : static_cast<uint32_t>(s);
  }
  void EvictorLoop();
  // The fault service's gate (FaultServiceConfig::await_room): waits, at
  // most kRoomWaitMs, while NeedsRoom() and the evictor can make room.
  void AwaitRoom();
  // Over the high watermark by the pager's own count, or more pages
  // written through faults since the last cut than a commit may copy.
  bool NeedsRoom() const;
  uint64_t WrittenSinceCutByFaults() const {
    return faults_->written_installs() - written_at_cut_.load(std::memory_order_acquire);
  }
  // Commits for the budget (memory_early_commit), else says once why the
  // heap stays over it; whether it committed. The evictor thread's.
  bool EarlyCommit(uint64_t present, uint64_t written);
  // Epoch e, whose image's hwm is `hwm`, is durable.
  void NoteDurable(Epoch e, Pgno hwm);
  // Advice dont-need under a budget (Pager::Advise): demotes the durable
  // pages of `r` and gives them back in eviction pauses. REQUIRES: evictor_.
  void DontNeed(Run r);

  // pager.cc
  std::shared_future<Result<Epoch>> CommitAsync();
  // alone: no thread is held while the epoch is written (CommitInPlaceIfAlone).
  Result<Epoch> CommitInPlace(bool alone = false);
  std::optional<Result<Epoch>> CommitInPlaceIfAlone();
  Status Discard(void* addr, uint64_t len);
  Status Advise(void* addr, uint64_t len, Advice advice);
  PagerStats stats() const;
  void GuardReads(bool on);
  Status Unserved() const;
  PauseSummary pauses() const;

  // A child of fork() has a copy of the region but none of the pager's
  // threads, and its locks as the fork found them: it commits nothing and
  // discards without them.
  bool InForkChild() const { return ::getpid() != owner_; }
  // Pager::ForkChildStatus.
  Status ForkChildStatus() const;
  // Pager::WrittenSinceCut.
  uint64_t WrittenSinceCut();
  // PopulateAll until EndPopulate: no eviction gives pages back.
  std::atomic<int> evict_hold_{0};
  // Missing faults below this page are served from the source.
  Pgno served_hwm() const { return served_hwm_.load(std::memory_order_acquire); }

  ImageInfo image_;
  const pid_t owner_ = ::getpid();
  PageSource* source_;
  EpochSink* sink_;
  PagerOptions options_;
  Region region_;
  TrackingMode mode_ = TrackingMode::kAuto;
  int uffd_ = -1;
  int cold_uffd_ = -1;  // hybrid-wp's second userfaultfd

 private:
  // One cut waiting for, or in, its Persist.
  struct Job {
    SealedEpoch epoch;
    std::unique_ptr<StagingBuffer> staging;
    std::promise<Result<Epoch>> done;
    bool answered = false;  // done is set (a failed epoch stays queued); guarded by q_mu_
  };

  Status OpenUffd(bool* absent);
  // Discard's part for pages mapped from the store: [r) becomes absent
  // anonymous memory registered as the rest. REQUIRES: install_mu_ exclusive.
  Status UnmapStored(Run r);
  // Commits are refused once a mapped run could not be write-protected.
  Status CheckTracking() const;
  // Sets up the fault service's mapping of stored runs where it can run.
  void ConfigureMapping(FaultServiceConfig* fc);
  Status RegisterUffd();
  // Places every stored page at open, for the modes that serve no missing
  // faults: maps the runs the source keeps back to back in a sealed file
  // when `map` (async write-protect works on a file's pages), copies the rest.
  Status LoadEagerly(bool map);
  // Maps `run` at page `first`, populated; returns the pages mapped, 0 when
  // the mmap failed (the range is anonymous and absent again).
  Result<uint64_t> MapEagerly(Pgno first, const PageSource::StoredRun& run);
  // Pauses the writers and copies the written pages into *staging (which
  // it may replace by a buffer in page order).
  // Inside the pause it also stamps the cut's pages with `epoch` and gives
  // back what it can of `victims` (EvictInPause), a bounded number.
  Status Cut(std::unique_ptr<StagingBuffer>* staging, uint64_t* pause_ns, int* paused, Epoch epoch,
             const std::vector<Run>& victims);
  void PrefaultStaging(StagingBuffer* buf);
  // The process's page faults since the last call, an upper bound on the
  // pages written since (see Cut). REQUIRES: cut_mu_.
  uint64_t FaultsSinceCut();
  // The tracker's written pages into carry_; `paused` when every writer
  // is (the tracker's AtPause runs then, under the same lock).
  Status TakeIntoCarry(bool paused);
  // Copies the carried pages: fresh ones appended, those among the first
  // `precopied` slots refreshed in place.
  void CopyCarried(StagingBuffer* staging, uint64_t precopied);
  // Appends the pages of `r` to staging, but for those FreshZero leaves out.
  void AppendKept(StagingBuffer* staging, Run r);
  // A page the tracker may have reported unwritten (drop_fresh_zeros_)
  // that no stored epoch holds (at or above cut_hwm_) and that holds only
  // zeros: leaving it out of the cut changes nothing a reader sees, since
  // a page past hwm reads as zeros. REQUIRES: cut_mu_.
  bool FreshZero(Pgno p) const;
  // Puts the two ascending parts [0, split) and [split, count) in one order.
  Status MergeInto(std::unique_ptr<StagingBuffer>* staging, uint64_t split);
  void CommitterLoop();
  // Starts the thread that persists queued cuts, on the first that needs
  // it: an in-place commit to a local store never does. REQUIRES: cut_mu_;
  // writers not paused.
  void StartCommitter();
  // The runs discarded since the last cut, taken for this one; given back
  // (ahead of newer ones) when the cut fails.
  std::vector<Run> TakeDiscards();
  void ReturnDiscards(const std::vector<Run>& d);
  // Fills e's image, hwm and discarded runs from its pages. REQUIRES: cut_mu_.
  void SealImage(SealedEpoch* e, const std::vector<Run>& discards);
  // The pause and size of the cut just taken, for stats().
  void RecordCut(uint64_t pause_ns, int paused, uint64_t dirty);
  // CommitInPlace's epoch failed: copies its pages out of the (still
  // paused) region and queues it, answered, to be persisted again unchanged.
  void QueueFailedInPlace(SealedEpoch e);
  // CommitInPlace's epoch was written but its sync failed, and the region
  // has changed since: its pages and discards go into the next cut, which
  // takes its number (the sink, a local store, never made it durable).
  // REQUIRES: epoch_mu_, not cut_mu_.
  void CarryUnsynced(const SealedEpoch& e);
  // Waits until the cuts not yet durable hold at most staging_max; see
  // PagerOptions for when it fails instead. REQUIRES: lk holds q_mu_.
  Status WaitForStaging(std::unique_lock<std::mutex>& lk);

  std::shared_mutex install_mu_;           // fault installs (shared) vs cut/discard/eviction
  std::unique_ptr<PageBitmap> installed_;  // present as far as the pager knows
  std::unique_ptr<PageBitmap> discarded_;  // zeros since a discard, unwritten since the last cut
  std::unique_ptr<PageBitmap> mapped_;     // see FaultService
  // Pages advised sequential, and random (Advise); read by the fault service.
  std::unique_ptr<PageBitmap> sequential_, random_;
  // Missing faults below this are served from the source: the image's hwm
  // at open, raised by eviction up to the durable image's hwm.
  std::atomic<Pgno> served_hwm_{0};

  // Eviction (pager_evict.cc); evictor_ is null without a budget.
  std::unique_ptr<Evictor> evictor_;
  std::unique_ptr<PageBitmap> evicted_;      // given back, not placed again since
  std::atomic<uint32_t> fetch_stamp_{1};     // Stamp() of the newest cut taken
  std::atomic<uint64_t> evict_gen_{0};       // bumped by each eviction, under install_mu_
  std::atomic<Pgno> durable_hwm_{0};         // hwm of the durable image
  uint64_t high_pages_ = 0, low_pages_ = 0;  // watermarks, in pages
  // Written pages a commit would copy: a quarter of the budget at most, so
  // the copy (staging) and what is resident fit together.
  uint64_t max_written_ = 0;
  std::atomic<uint64_t> written_at_cut_{0};  // faults_->written_installs() at the last cut
  std::condition_variable room_cv_;          // AwaitRoom's wait, under evict_mu_
  bool room_wanted_ = false;                 // a fault waits for room; under evict_mu_
  // Off while early commits fail: nothing would make room, and faults are
  // not held for it.
  std::atomic<bool> room_gate_{true};
  std::atomic<bool> said_no_room_{false};
  bool missing_to_end_ = false;              // async-wp, mprotect: [served hwm, end) registered by StartEviction
  bool every_page_faults_ = false;           // PresentPages trusts the evictor's count
  int count_fd_ = -1;                        // /proc/self/pagemap for PresentPages
  std::atomic<uint64_t> present_{0};         // the last count
  std::atomic<uint64_t> evictions_{0}, eviction_pauses_{0}, early_commits_{0};
  std::mutex choose_mu_;  // Evictor::Choose, one caller at a time
  std::mutex evict_mu_;   // the evictor thread's wait
  std::condition_variable evict_cv_;
  bool evict_stop_ = false;        // under evict_mu_
  bool said_over_budget_ = false;  // the evictor thread's
  bool said_commit_failed_ = false;  // the evictor thread's
  std::thread evict_thread_;
  int map_pagemap_fd_ = -1;                // the fault service's, when it maps
  std::atomic<bool> untracked_{false};     // a mapped run lost its tracking
  uint64_t eager_copied_ = 0, eager_mapped_ = 0;  // pages LoadEagerly placed
  std::unique_ptr<DirtyTracker> tracker_;
  std::unique_ptr<FaultService> faults_;
  // Pages that belong in the next cut whatever the tracker says: filled by
  // the cut from the tracker, and by a cut that failed half-way.
  std::unique_ptr<PageBitmap> carry_;
  std::unique_ptr<StagingPool> staging_pool_;

  std::mutex cut_mu_;       // one cut or discard at a time; before q_mu_
  // Held by a commit from its cut until its epoch is handed on (queued, or
  // written in place and synced), so no later epoch reaches the sink before
  // an in-place one is synced; before cut_mu_. Discard does not take it.
  std::mutex epoch_mu_;
  Pgno cut_hwm_ = 0;        // hwm of the newest cut
  bool drop_fresh_zeros_ = false;           // the tracker's ReportsUnwritten(); set at open
  std::atomic<uint64_t> dropped_zeros_{0};  // pages FreshZero left out

  std::mutex discard_mu_;
  std::vector<Run> pending_discards_;  // since the last cut

  std::mutex q_mu_;
  std::condition_variable q_cv_;
  std::deque<std::unique_ptr<Job>> queue_;
  Epoch next_epoch_ = 1;
  uint64_t staged_bytes_ = 0;  // in cuts not yet durable
  bool stopping_ = false;
  uint64_t persists_started_ = 0;  // by the committer
  Status front_failure_;           // of queue_.front()'s last Persist
  uint64_t front_failure_at_ = 0;  // the persists_started_ of that Persist
  bool retry_now_ = false;         // a commit waits for a retry of the front
  std::thread committer_;   // started under cut_mu_; joined at close

  std::atomic<Epoch> durable_{0};
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> last_dirty_{0};
  uint64_t last_walk_ns_ = 0;  // the last TakeIntoCarry walk; under cut_mu_
  uint64_t faults_at_cut_ = 0;  // the process's page faults at the last cut; under cut_mu_
  uint64_t next_count_ns_ = 0, last_count_ = 0;  // WrittenSinceCut's; its caller's only
  std::atomic<uint64_t> last_pause_ns_{0};
  std::atomic<uint64_t> max_pause_ns_{0};
  std::atomic<uint64_t> paused_threads_{0};
  // The latest cuts' pauses, a ring: written by RecordCut (after the
  // program resumed), read by pauses() from another thread.
  mutable std::mutex pause_mu_;
  std::array<uint64_t, PauseSummary::kSamples> pause_ring_{};  // under pause_mu_
  uint64_t pause_cuts_ = 0;                                    // under pause_mu_
};

}  // namespace pheap
