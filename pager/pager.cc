// The commit cut and the rest of the public Pager.
//
// A cut: pause every writer (safepoint.h), take the written pages from the
// tracker into `carry_` (which also holds pages of a failed earlier Persist),
// copy those pages into a staging buffer, resume. The pause is the tracker's
// walk plus one memcpy per dirty run, so it grows with the dirty set; the
// carry bitmap adds a scan of its summary (one bit per 4096 pages) and of
// the groups that hold taken pages. Persist runs on the committer thread
// (started by the first commit that queues), in epoch order.
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "base/log.h"
#include "base/os.h"
#include "base/thread.h"
#include "pager/pager_impl.h"
#include "pager/safepoint.h"
#include "pager/uffd.h"

#if defined(__SANITIZE_THREAD__)
extern "C" void AnnotateIgnoreReadsBegin(const char* file, int line);
extern "C" void AnnotateIgnoreReadsEnd(const char* file, int line);
#define PHEAP_TSAN_IGNORE_READS_BEGIN() AnnotateIgnoreReadsBegin(__FILE__, __LINE__)
#define PHEAP_TSAN_IGNORE_READS_END() AnnotateIgnoreReadsEnd(__FILE__, __LINE__)
#else
#define PHEAP_TSAN_IGNORE_READS_BEGIN() ((void)0)
#define PHEAP_TSAN_IGNORE_READS_END() ((void)0)
#endif

namespace pheap {
namespace {

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// Tracker runs go into the carry bitmap: merged with retried pages, no allocation.
class CarrySink final : public RunSink {
 public:
  explicit CarrySink(PageBitmap* carry) : carry_(carry) {}
  void Add(Run r) override { carry_->SetRun(r); }

 private:
  PageBitmap* carry_;
};

// `runs` minus the ascending `pages`.
std::vector<Run> Subtract(const std::vector<Run>& runs, const std::vector<Pgno>& pages) {
  std::vector<Run> out;
  for (Run r : runs) {
    auto it = std::lower_bound(pages.begin(), pages.end(), r.first);
    Pgno at = r.first;
    for (; it != pages.end() && *it < r.end(); ++it) {
      if (*it > at) out.push_back(Run{at, *it - at});
      at = *it + 1;
    }
    if (at < r.end()) out.push_back(Run{at, r.end() - at});
  }
  return out;
}

}  // namespace

Status Pager::Impl::TakeIntoCarry(bool paused) {
  std::unique_lock lk(install_mu_);  // no fault thread between mark and unprotect
  CarrySink sink(carry_.get());
  const uint64_t t0 = NowNs();
  Status st = tracker_->TakeDirty(&sink);
  last_walk_ns_ = NowNs() - t0;
  if (st.ok() && paused) st = tracker_->AtPause();
  return st;
}

void Pager::Impl::CopyCarried(StagingBuffer* staging, uint64_t precopied) {
  const Pgno* pre = staging->pgnos();
  carry_->TakeRuns([&](Run r) {
    Pgno p = r.first;
    while (p < r.end()) {
      uint64_t slot = static_cast<uint64_t>(std::lower_bound(pre, pre + precopied, p) - pre);
      uint64_t n = 0;
      while (p + n < r.end() && slot + n < precopied && pre[slot + n] == p + n) ++n;
      if (n > 0) {
        staging->Refresh(slot, n, region_.data() + (p << kPageShift));
      } else {
        const Pgno next = slot < precopied ? std::min<Pgno>(pre[slot], r.end()) : r.end();
        n = next - p;
        AppendKept(staging, Run{p, n});
      }
      p += n;
    }
  });
}

bool Pager::Impl::FreshZero(Pgno p) const {
  if (!drop_fresh_zeros_ || p < cut_hwm_) return false;
  const auto* w = reinterpret_cast<const uint64_t*>(region_.data() + (p << kPageShift));
  for (size_t i = 0; i < kPageSize / 8; ++i)
    if (w[i] != 0) return false;
  return true;
}

void Pager::Impl::AppendKept(StagingBuffer* staging, Run r) {
  Pgno from = r.first;
  for (Pgno p = r.first; p < r.end(); ++p) {
    if (!FreshZero(p)) continue;
    if (p > from) staging->Append(from, p - from, region_.data() + (from << kPageShift));
    from = p + 1;
    dropped_zeros_.fetch_add(1, std::memory_order_relaxed);
  }
  if (r.end() > from) staging->Append(from, r.end() - from, region_.data() + (from << kPageShift));
}

Status Pager::Impl::MergeInto(std::unique_ptr<StagingBuffer>* staging, uint64_t split) {
  auto merged = staging_pool_->Get();
  if (!merged.ok()) return merged.status();
  const StagingBuffer& s = **staging;
  uint64_t a = 0, b = split;
  while (a < split || b < s.count()) {
    const bool take_a = b == s.count() || (a < split && s.pgnos()[a] < s.pgnos()[b]);
    const uint64_t i = take_a ? a++ : b++;
    merged.value()->Append(s.pgnos()[i], 1, s.data() + i * kPageSize);
  }
  std::swap(*staging, merged.value());
  staging_pool_->Put(std::move(merged.value()), options_.staging_keep);
  return Status::Ok();
}

// Faults in the staging the pause will fill while the program still runs:
// a fresh page faulted inside the pause costs several times its copy. The
// count is a walk of the region, worth it when a walk is cheap or the last
// cut was large; the program keeps writing while the staging is faulted
// in, so a few rounds catch up with it. (After a precopy the staging
// already holds most of the cut; Cut skips this for a cut of a few pages.)
void Pager::Impl::PrefaultStaging(StagingBuffer* buf) {
  constexpr uint64_t kCheapWalkNs = 300000, kLargeCut = 4096, kRounds = 3;
  if (last_walk_ns_ > kCheapWalkNs && last_dirty_.load() < kLargeCut) return;
  uint64_t faulted = 0;
  for (uint64_t round = 0; round < kRounds; ++round) {
    const uint64_t want = tracker_->CountWritten();
    if (want <= faulted + faulted / 8) break;
    buf->Prefault(want);
    faulted = want;
  }
}

// Every page written since the last cut faulted at least once (a first
// touch or a write-protect fault), so the process's page faults since then
// bound the cut from above; UINT64_MAX when unknown.
uint64_t Pager::Impl::FaultsSinceCut() {
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) != 0) return UINT64_MAX;
  const uint64_t faults = static_cast<uint64_t>(ru.ru_minflt) + static_cast<uint64_t>(ru.ru_majflt);
  const uint64_t since = faults - faults_at_cut_;
  faults_at_cut_ = faults;
  return since;
}

// With precopy the written pages are taken and copied first while writers
// run; the pause then re-takes only what was written meanwhile. Both the
// precopy and the staging's prefault walk the populated region once more
// (outside the pause, but on the commit's path, in proportion to the
// populated size), which pays only for a cut of more than a few pages. For
// a few, protecting them again inside the pause costs a TLB flush per 2 MiB
// touched, and faulting in their staging there a few microseconds.
Status Pager::Impl::Cut(std::unique_ptr<StagingBuffer>* staging, uint64_t* pause_ns, int* paused, Epoch epoch,
                        const std::vector<Run>& victims) {
  constexpr uint64_t kFewPages = 16;
  StagingBuffer* buf = staging->get();
  const bool few = FaultsSinceCut() < kFewPages;
  if (options_.precopy && tracker_->TakesWhileRunning() && !few) {
    PHEAP_RETURN_IF_ERROR(TakeIntoCarry(false));
    // These reads race the program's writes by design: every page written
    // after TakeIntoCarry protected it is taken and copied again inside the
    // pause. Tell ThreadSanitizer so; the copy inside the pause stays checked.
    PHEAP_TSAN_IGNORE_READS_BEGIN();
    CopyCarried(buf, 0);
    PHEAP_TSAN_IGNORE_READS_END();
  }
  const uint64_t precopied = buf->count();
  if (precopied == 0 && !few) PrefaultStaging(buf);
  tracker_->BeforePause();
  Safepoint sp;
  const uint64_t t0 = NowNs();
  auto n = sp.Pause();
  if (!n.ok()) return n.status();
  *paused = *n;
  Status st = TakeIntoCarry(true);
  // Copy outside the install lock: a carried page that was discarded is not
  // resident, and reading it needs the fault service.
  if (st.ok()) CopyCarried(buf, precopied);
  if (st.ok() && evictor_) {
    // Stamped before anything is evicted: the cut's pages are not durable.
    MarkCut(buf->pgnos(), buf->count(), epoch);
    // Bounded, so eviction adds to the pause about what the copy took.
    constexpr uint64_t kMinEvictPerCut = 1024;
    if (!victims.empty()) EvictInPause(victims, std::max(kMinEvictPerCut, 2 * buf->count()));
  }
  sp.Resume();
  if (st.ok()) st = CheckTracking();  // lost before the cut: it may miss writes
  *pause_ns = NowNs() - t0;
  PHEAP_RETURN_IF_ERROR(st);
  if (precopied != 0 && buf->count() > precopied) return MergeInto(staging, precopied);
  return Status::Ok();
}

std::vector<Run> Pager::Impl::TakeDiscards() {
  std::vector<Run> d;
  std::lock_guard lk(discard_mu_);
  d.swap(pending_discards_);
  return d;
}

void Pager::Impl::ReturnDiscards(const std::vector<Run>& d) {
  std::lock_guard lk(discard_mu_);
  pending_discards_.insert(pending_discards_.begin(), d.begin(), d.end());
}

void Pager::Impl::SealImage(SealedEpoch* e, const std::vector<Run>& discards) {
  e->discarded = Subtract(discards, e->pages);
  if (!e->pages.empty()) cut_hwm_ = std::max(cut_hwm_, e->pages.back() + 1);
  e->image = image_;
  e->image.hwm = cut_hwm_;
}

void Pager::Impl::RecordCut(uint64_t pause_ns, int paused, uint64_t dirty) {
  last_pause_ns_.store(pause_ns, std::memory_order_relaxed);
  if (pause_ns > max_pause_ns_.load(std::memory_order_relaxed)) max_pause_ns_.store(pause_ns, std::memory_order_relaxed);
  paused_threads_.store(static_cast<uint64_t>(paused), std::memory_order_relaxed);
  last_dirty_.store(dirty, std::memory_order_relaxed);
  std::lock_guard lk(pause_mu_);
  pause_ring_[pause_cuts_++ % pause_ring_.size()] = pause_ns;
}

PauseSummary Pager::Impl::pauses() const {
  PauseSummary s;
  std::array<uint64_t, PauseSummary::kSamples> v{};
  size_t n;
  {
    std::lock_guard lk(pause_mu_);
    s.cuts = pause_cuts_;
    n = std::min<uint64_t>(pause_cuts_, v.size());
    std::copy(pause_ring_.begin(), pause_ring_.begin() + n, v.begin());
  }
  s.max_ns = max_pause_ns_.load(std::memory_order_relaxed);
  if (n == 0) return s;
  auto at = [&](size_t k) {
    std::nth_element(v.begin(), v.begin() + k, v.begin() + n);
    return v[k];
  };
  s.p50_ns = at(n / 2);
  s.p99_ns = at(std::min(n - 1, n * 99 / 100));
  return s;
}

std::shared_future<Result<Epoch>> Pager::Impl::CommitAsync() {
  // Chosen while the program runs; the pause checks each page again.
  const std::vector<Run> victims = evictor_ ? ChooseVictims(PresentPages(), 0) : std::vector<Run>{};
  HoldingCommitLocks held;
  auto job = std::make_unique<Job>();
  std::shared_future<Result<Epoch>> fut = job->done.get_future().share();
  if (InForkChild()) {
    job->done.set_value(ForkChildStatus());
    return fut;
  }
  {
    std::unique_lock lk(q_mu_);
    if (Status st = WaitForStaging(lk); !st.ok()) {
      job->done.set_value(st);
      return fut;
    }
  }
  std::lock_guard epoch_lk(epoch_mu_);
  std::lock_guard cut_lk(cut_mu_);
  StartCommitter();
  auto staging = staging_pool_->Get();
  if (!staging.ok()) {
    job->done.set_value(staging.status());
    return fut;
  }
  job->staging = std::move(staging.value());
  std::vector<Run> discards = TakeDiscards();
  uint64_t pause_ns = 0;
  int paused = 0;
  Epoch number;
  {
    std::lock_guard lk(q_mu_);
    number = next_epoch_;  // epoch_mu_ keeps it this cut's
  }
  Status st = Cut(&job->staging, &pause_ns, &paused, number, victims);
  if (!st.ok()) {  // whatever was taken already goes into the next cut
    for (uint64_t i = 0; i < job->staging->count(); ++i) carry_->Set(job->staging->pgnos()[i]);
    ReturnDiscards(discards);
    job->done.set_value(st.Annotate("commit cut"));
    return fut;
  }
  SealedEpoch& e = job->epoch;
  const StagingBuffer& s = *job->staging;
  e.pages.assign(s.pgnos(), s.pgnos() + s.count());
  e.data = s.data();
  SealImage(&e, discards);
  e.pause_ns = pause_ns;
  RecordCut(pause_ns, paused, s.count());
  Epoch epoch = 0;
  {
    std::lock_guard lk(q_mu_);
    epoch = e.image.epoch = next_epoch_++;
    staged_bytes_ += s.bytes();
    queue_.push_back(std::move(job));
  }
  // Not e's: once queued, the committer may have made the job durable and
  // freed it.
  fetch_stamp_.store(Stamp(epoch), std::memory_order_release);
  q_cv_.notify_all();
  return fut;
}

// Waiting frees staging only while older epochs become durable. A retry of
// the oldest that fails (a full disk, a lost quorum) shows waiting longer
// frees nothing: the commit fails with its error, and the retry counts only
// if it started after this commit asked for it (space freed just before
// the commit is then seen).
Status Pager::Impl::WaitForStaging(std::unique_lock<std::mutex>& lk) {
  auto room = [&] { return staged_bytes_ <= options_.staging_max || queue_.empty() || stopping_; };
  if (room()) return Status::Ok();
  const uint64_t asked = persists_started_;
  retry_now_ = true;
  q_cv_.notify_all();
  auto failed_again = [&] { return !front_failure_.ok() && front_failure_at_ > asked; };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.staging_wait_ms);
  q_cv_.wait_until(lk, deadline, [&] { return room() || failed_again(); });
  if (room()) return Status::Ok();
  const std::string held =
      fmt::format("commit refused: epochs {} to {}, not yet durable, hold {} KiB of staging (staging_max {} KiB)",
                  queue_.front()->epoch.image.epoch, queue_.back()->epoch.image.epoch, staged_bytes_ >> 10,
                  options_.staging_max >> 10);
  if (failed_again()) return front_failure_.Annotate(held);
  return Status::Timeout(fmt::format("{}, and none became durable within {} ms (staging_wait_ms): the sink is slow "
                                     "or stalled; commit again later",
                                     held, options_.staging_wait_ms));
}

Status Pager::Impl::ForkChildStatus() const {
  if (!InForkChild()) return Status::Ok();
  return Status::Busy(
      fmt::format("the heap at {:#x} belongs to process {}, which opened it: this child of fork() "
                  "works on a copy and cannot commit it; commit in process {}, or open a heap of "
                  "the child's own",
                  region_.base(), owner_, owner_));
}

uint64_t Pager::Impl::WrittenSinceCut() {
  if (!tracker_->CanCount()) return kUnknownPages;
  const uint64_t t0 = NowNs();
  if (t0 < next_count_ns_) return last_count_;
  last_count_ = tracker_->CountWritten();
  next_count_ns_ = t0 + (NowNs() - t0) * 100;
  return last_count_;
}

std::optional<Result<Epoch>> Pager::Impl::CommitInPlaceIfAlone() {
  if (InForkChild() || !sink_->PersistsFromRegion() || !SafepointAlone()) return std::nullopt;
  return CommitInPlace(/*alone=*/true);
}

Result<Epoch> Pager::Impl::CommitInPlace(bool alone) {
  if (InForkChild()) return ForkChildStatus();
  if (!sink_->PersistsFromRegion()) return CommitAsync().get();
  HoldingCommitLocks held;
  std::unique_lock epoch_lk(epoch_mu_);
  std::unique_lock cut_lk(cut_mu_);
  {  // the epoch goes to the sink from here, so nothing older may be queued
    std::unique_lock lk(q_mu_);
    q_cv_.wait(lk, [&] { return queue_.empty() || queue_.front()->answered || stopping_; });
    if (!queue_.empty() || stopping_) {
      lk.unlock();
      cut_lk.unlock();
      epoch_lk.unlock();
      return CommitAsync().get();
    }
  }
  const std::vector<Run> discards = TakeDiscards();
  tracker_->BeforePause();
  Safepoint sp;
  const uint64_t t0 = NowNs();
  auto paused = sp.Pause();
  Status st = paused.ok() ? TakeIntoCarry(true) : paused.status();
  if (st.ok()) st = CheckTracking();
  if (!st.ok()) {  // whatever was taken stays in carry_ for the next cut
    sp.Resume();
    ReturnDiscards(discards);
    return st.Annotate("commit cut");
  }
  SealedEpoch e;
  carry_->TakeRuns([&](Run r) {
    for (Pgno p = r.first; p < r.end(); ++p) {
      if (!FreshZero(p)) {
        e.pages.push_back(p);
      } else {
        dropped_zeros_.fetch_add(1, std::memory_order_relaxed);
      }
    }
  });
  e.region = region_.data();
  SealImage(&e, discards);
  {
    std::lock_guard lk(q_mu_);
    e.image.epoch = next_epoch_++;
  }
  const uint64_t dirty = e.pages.size();
  const Epoch epoch = e.image.epoch;
  const uint64_t cut_ns = NowNs() - t0;
  // The sink copies the pages out (a local store: into the page cache) while
  // the program is held still; the sync that makes them durable runs after
  // it resumes. Alone, the caller's own signal handlers could still write
  // a page between its checksum and its write: they wait for the write.
  {
    std::optional<AsyncSignalsBlocked> handlers_wait;
    if (alone) handlers_wait.emplace();
    st = sink_->Write(e);
  }
  // After the Write: a page it faulted in read the store, which a
  // discard's zeros must still override until then.
  if (evictor_) MarkCut(e.pages.data(), e.pages.size(), epoch);
  if (!st.ok()) {
    PHEAP_LOG_ERROR("epoch {} not durable: {}; it will be persisted again, unchanged, before later epochs", epoch,
                    st.ToString());
    QueueFailedInPlace(std::move(e));
  }
  sp.Resume();
  fetch_stamp_.store(Stamp(epoch), std::memory_order_release);
  const uint64_t pause_ns = alone ? cut_ns : NowNs() - t0;  // alone, the write held no one
  RecordCut(pause_ns, *paused, dirty);
  cut_lk.unlock();  // discards may go on during the sync; cuts wait for epoch_lk
  if (!st.ok()) {
    StartCommitter();  // it persists the queued epoch again
    return st;
  }
  st = sink_->Sync(pause_ns);
  if (!st.ok()) {
    PHEAP_LOG_ERROR("epoch {} not durable: {}; its pages go into the next cut", epoch, st.ToString());
    CarryUnsynced(e);
    return st;
  }
  NoteDurable(epoch, e.image.hwm);
  commits_.fetch_add(1, std::memory_order_relaxed);
  return epoch;
}

void Pager::Impl::CarryUnsynced(const SealedEpoch& e) {
  {
    std::lock_guard cut_lk(cut_mu_);
    for (Pgno p : e.pages) carry_->Set(p);
  }
  ReturnDiscards(e.discarded);
  std::lock_guard lk(q_mu_);
  --next_epoch_;
}

void Pager::Impl::QueueFailedInPlace(SealedEpoch e) {
  auto job = std::make_unique<Job>();
  auto staging = staging_pool_->Get();
  if (!staging.ok()) {
    // No copy to keep: the next cut takes the pages again, under the same
    // number. A sink that reads the region in place is a local store, where
    // a failed epoch is durable nowhere, so the number names nothing yet.
    PHEAP_LOG_ERROR("epoch {}: {}; its pages go into the next cut", e.image.epoch, staging.status().ToString());
    for (Pgno p : e.pages) carry_->Set(p);
    ReturnDiscards(e.discarded);
    std::lock_guard qk(q_mu_);
    --next_epoch_;
    return;
  }
  job->staging = std::move(*staging);
  for (Pgno p : e.pages) job->staging->Append(p, 1, e.region + (p << kPageShift));
  e.data = job->staging->data();
  e.region = nullptr;
  job->epoch = std::move(e);
  job->answered = true;  // the caller of CommitInPlace gets the error
  {
    std::lock_guard lk(q_mu_);
    staged_bytes_ += job->staging->bytes();
    queue_.push_back(std::move(job));
  }
  q_cv_.notify_all();
}

void Pager::Impl::CommitterLoop() {
  constexpr std::chrono::milliseconds kFirstRetryPause{200}, kMaxRetryPause{5000};
  auto retry_pause = kFirstRetryPause;
  std::unique_lock lk(q_mu_);
  for (;;) {
    q_cv_.wait(lk, [&] { return !queue_.empty() || stopping_; });
    if (queue_.empty()) break;  // stopping, and every queued cut persisted
    Job* j = queue_.front().get();
    const uint64_t attempt = ++persists_started_;
    retry_now_ = false;
    lk.unlock();
    Status st = sink_->Persist(j->epoch);
    lk.lock();
    front_failure_ = st;
    front_failure_at_ = attempt;
    if (!st.ok()) {
      // The failed epoch may be durable on part of the sink already (some
      // replicas took it): its number must never name other contents. It
      // stays queued, unchanged, ahead of the cuts after it, and is
      // persisted again on the next commit or after a pause; their callers
      // learn of the failure now.
      const Epoch e = j->epoch.image.epoch;
      PHEAP_LOG_ERROR("epoch {} not durable: {}; it will be persisted again, unchanged, before later epochs", e,
                      st.ToString());
      for (auto& q : queue_) {
        if (q->answered) continue;
        q->answered = true;
        const Epoch qe = q->epoch.image.epoch;
        q->done.set_value(qe == e ? st : st.Annotate(fmt::format("epoch {} failed before epoch {}", e, qe)));
      }
      if (stopping_) {  // closing: what is not durable now is lost
        for (auto& q : queue_) staged_bytes_ -= q->staging->bytes();
        queue_.clear();
        break;
      }
      // Retried at once for a commit (a new cut, or one waiting for
      // staging), else after a pause that grows while the cause lasts.
      q_cv_.notify_all();
      const size_t queued = queue_.size();
      q_cv_.wait_for(lk, retry_pause, [&] { return stopping_ || retry_now_ || queue_.size() != queued; });
      retry_pause = std::min(retry_pause * 2, kMaxRetryPause);
      continue;
    }
    retry_pause = kFirstRetryPause;
    std::unique_ptr<Job> d = std::move(queue_.front());
    queue_.pop_front();
    staged_bytes_ -= d->staging->bytes();
    lk.unlock();
    const Epoch e = d->epoch.image.epoch;
    NoteDurable(e, d->epoch.image.hwm);
    commits_.fetch_add(1, std::memory_order_relaxed);
    if (!d->answered) d->done.set_value(e);
    staging_pool_->Put(std::move(d->staging), options_.staging_keep);
    q_cv_.notify_all();
    lk.lock();
  }
  q_cv_.notify_all();
}

Status Pager::Impl::Discard(void* addr, uint64_t len) {
  const uint64_t a = reinterpret_cast<uint64_t>(addr);
  if (a % kPageSize != 0 || len % kPageSize != 0 || !region_.contains(a) || len > region_.base() + region_.size() - a)
    return Status::InvalidArgument(fmt::format("discard of [{:#x}, {:#x}) is not page aligned inside the heap region", a, a + len));
  if (len == 0) return Status::Ok();
  if (InForkChild()) {
    int e = region_.MapZeros(a, len);
    return e < 0 ? Status::FromErrno(fmt::format("discard of [{:#x}, {:#x}) in a child of fork()", a, a + len), -e)
                 : Status::Ok();
  }
  const Run r{(a - region_.base()) >> kPageShift, len >> kPageShift};
  HoldingCommitLocks held;
  std::lock_guard cut_lk(cut_mu_);  // a cut never sees a half-discarded run
  {
    std::unique_lock lk(install_mu_);
    const Pgno hwm = served_hwm_.load(std::memory_order_relaxed);
    const Run below{r.first, r.first < hwm ? std::min(r.end(), hwm) - r.first : 0};
    // Before the zap: a refault then serves zeros. The whole run, so pages
    // above hwm read as zeros too once eviction raises it.
    discarded_->SetRun(r);
    // A zapped page mapped from the store would read as the file's again:
    // those become absent anonymous pages first, served on fault (zeros).
    if (below.count != 0 && mapped_->NextSet(below.first, below.end()) < below.end())
      PHEAP_RETURN_IF_ERROR(UnmapStored(below));
    int e = os().madvise(addr, len, MADV_DONTNEED);
    if (e < 0) return Status::FromErrno(fmt::format("madvise(DONTNEED) of [{:#x}, {:#x})", a, a + len), -e);
    installed_->ClearRun(r);
    if (evictor_) evictor_->Forget(r);
  }
  std::lock_guard lk(discard_mu_);
  pending_discards_.push_back(r);
  return Status::Ok();
}

Status Pager::Impl::Advise(void* addr, uint64_t len, Advice advice) {
  const uint64_t a = reinterpret_cast<uint64_t>(addr), base = region_.base(), end = base + region_.size();
  if (a < base || a > end || len > end - a) {
    const std::string range =
        len <= UINT64_MAX - a ? fmt::format("[{:#x}, {:#x})", a, a + len) : fmt::format("[{:#x}, +{} bytes)", a, len);
    return Status::InvalidArgument(
        fmt::format("advice for {}: the range is not inside the heap region [{:#x}, {:#x})", range, base, end));
  }
  if (len == 0 || InForkChild()) return Status::Ok();  // a child has no fault service and evicts nothing
  // Whole pages: advice never changes bytes, so a page it covers in part is
  // as well covered whole.
  const Pgno first = (a - base) >> kPageShift;
  const Run r{first, ((a + len - 1 - base) >> kPageShift) + 1 - first};
  switch (advice) {
    case Advice::kNormal:
      sequential_->ClearRun(r);
      random_->ClearRun(r);
      break;
    case Advice::kSequential:
      random_->ClearRun(r);
      sequential_->SetRun(r);
      break;
    case Advice::kRandom:
      sequential_->ClearRun(r);
      random_->SetRun(r);
      break;
    case Advice::kWillNeed:
      if (faults_) faults_->Prefetch(r);
      break;
    case Advice::kDontNeed:
      if (evictor_) DontNeed(r);
      break;
  }
  return Status::Ok();
}

Status Pager::Impl::UnmapStored(Run r) {
  const uint64_t a = region_.base() + (r.first << kPageShift), len = r.count << kPageShift;
  if (int e = region_.MapAbsent(a, len, uffd_, mode_ != TrackingMode::kAsyncWpUser); e < 0) {
    untracked_.store(true, std::memory_order_release);
    return Status::FromErrno(
        fmt::format("discard of [{:#x}, {:#x}): replacing pages mapped from the store (the heap takes no more "
                    "commits; reopen it)",
                    a, a + len),
        -e);
  }
  mapped_->ClearRun(r);
  return Status::Ok();
}

PagerStats Pager::Impl::stats() const {
  PagerStats s;
  s.mode = mode_;
  s.durable_epoch = durable_.load();
  s.commits = commits_.load();
  s.last_dirty_pages = last_dirty_.load();
  s.last_pause_ns = last_pause_ns_.load();
  s.max_pause_ns = max_pause_ns_.load();
  s.paused_threads = paused_threads_.load();
  s.pages_fetched = eager_copied_;
  s.pages_mapped = eager_mapped_;
  const DirtyTracker::ChunkCounts k = tracker_->chunk_counts();
  s.hot_chunks = k.hot;
  s.chunks_heated = k.heated;
  s.chunks_cooled = k.cooled;
  s.moves_unpaused = k.moves_unpaused;
  s.single_pages = k.single_pages;
  s.fresh_zeros_dropped = dropped_zeros_.load(std::memory_order_relaxed);
  if (evictor_) {
    s.resident_pages = present_.load(std::memory_order_relaxed);
    s.evictions = evictions_.load(std::memory_order_relaxed);
    s.eviction_pauses = eviction_pauses_.load(std::memory_order_relaxed);
    s.early_commits = early_commits_.load(std::memory_order_relaxed);
    s.memory_max = options_.memory_max;
  }
  if (faults_) {
    s.refetches = faults_->pages_refetched();
    s.faults = faults_->faults();
    s.pages_fetched += faults_->pages_fetched();
    s.pages_mapped += faults_->pages_mapped();
  }
  return s;
}

Pager::Pager(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pager::~Pager() = default;
void* Pager::base() const { return impl_->region_.data(); }
uint64_t Pager::size() const { return impl_->region_.size(); }
TrackingMode Pager::mode() const { return impl_->mode_; }
Epoch Pager::durable_epoch() const { return impl_->stats().durable_epoch; }
PagerStats Pager::stats() const { return impl_->stats(); }
PauseSummary Pager::pauses() const { return impl_->pauses(); }
Result<Epoch> Pager::Commit() { return impl_->CommitAsync().get(); }
Result<Epoch> Pager::CommitInPlace() { return impl_->CommitInPlace(); }
std::optional<Result<Epoch>> Pager::CommitInPlaceIfAlone() { return impl_->CommitInPlaceIfAlone(); }
std::shared_future<Result<Epoch>> Pager::CommitAsync() { return impl_->CommitAsync(); }
Status Pager::Discard(void* addr, uint64_t len) { return impl_->Discard(addr, len); }
Status Pager::Advise(void* addr, uint64_t len, Advice advice) { return impl_->Advise(addr, len, advice); }
Status Pager::ForkChildStatus() const { return impl_->ForkChildStatus(); }
uint64_t Pager::WrittenSinceCut() { return impl_->WrittenSinceCut(); }

void Pager::BeginGuardedReads() { impl_->GuardReads(true); }

Status Pager::EndGuardedReads() {
  impl_->GuardReads(false);
  return impl_->Unserved();
}

void Pager::Impl::GuardReads(bool on) {
  if (faults_) faults_->GuardReads(on);
}

Status Pager::Impl::Unserved() const { return faults_ ? faults_->Unserved() : Status::Ok(); }
void Pager::ExemptCurrentThread() { SafepointExempt(); }
void Pager::UnexemptCurrentThread() { SafepointUnexempt(); }
int Pager::ExemptThreads() { return SafepointExemptThreads(); }

void Pager::OnExempt(void (*hook)()) { SetSafepointExemptHook(hook); }

}  // namespace pheap
