// An in-memory page store for the pager's tests: a PageSource over the
// durable image and an EpochSink that applies each sealed epoch to it.
// It checks the sink contract (consecutive epochs, ascending pages, discards
// disjoint from pages) and can fail Persist or corrupt pages on request.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>
#include <string>

#include "base/page_io.h"
#include "tests/support/test_util.h"

namespace pheap::testing {

class FakeStore : public PageSource, public EpochSink {
 public:
  using Page = std::array<uint8_t, kPageSize>;

  explicit FakeStore(ImageInfo image) : image_(image) {}

  // Stores `fill` in every byte of page p (durable at the current epoch).
  void PutPage(Pgno p, uint8_t fill) {
    std::lock_guard lk(mu_);
    pages_[p].fill(fill);
    if (p + 1 > image_.hwm) image_.hwm = p + 1;
  }
  void PutPage(Pgno p, const void* data) {
    std::lock_guard lk(mu_);
    std::memcpy(pages_[p].data(), data, kPageSize);
    if (p + 1 > image_.hwm) image_.hwm = p + 1;
  }
  void Corrupt(Pgno p) { std::lock_guard lk(mu_); corrupt_.insert(p); }
  void FailPersists(int n) { std::lock_guard lk(mu_); fail_persists_ = n; }
  // A slow sink: Persist waits (without the store's lock) until released.
  void HoldPersists() { std::lock_guard lk(hold_mu_); held_ = true; }
  void ReleasePersists() {
    { std::lock_guard lk(hold_mu_); held_ = false; }
    hold_cv_.notify_all();
  }
  // Fail the next n Syncs (of epochs Write took from the region).
  void FailSyncs(int n) { std::lock_guard lk(mu_); fail_syncs_ = n; }
  // Whether Persist takes epochs read in place from the region.
  void TakeFromRegion(bool on) { std::lock_guard lk(mu_); from_region_ = on; }
  bool PersistsFromRegion() const override { std::lock_guard lk(mu_); return from_region_; }
  uint64_t region_epochs() const { std::lock_guard lk(mu_); return region_epochs_; }
  std::vector<std::pair<Epoch, std::vector<Pgno>>> attempts() const { std::lock_guard lk(mu_); return attempts_; }
  // Called under the store's lock after each epoch is applied.
  void OnPersist(std::function<void(const SealedEpoch&, const FakeStore&)> fn) { on_persist_ = std::move(fn); }

  ImageInfo image() const { std::lock_guard lk(mu_); return image_; }
  bool Has(Pgno p) const { std::lock_guard lk(mu_); return pages_.count(p) != 0; }
  // The durable bytes of page p (zeros if never stored). Lock-free variant
  // for use inside OnPersist.
  const uint8_t* PageDataLocked(Pgno p) const {
    static const Page kZero{};
    auto it = pages_.find(p);
    return it == pages_.end() ? kZero.data() : it->second.data();
  }
  Page Read(Pgno p) const { std::lock_guard lk(mu_); Page out; std::memcpy(out.data(), PageDataLocked(p), kPageSize); return out; }
  std::vector<Pgno> LastPages() const { std::lock_guard lk(mu_); return last_pages_; }
  std::vector<Run> LastDiscarded() const { std::lock_guard lk(mu_); return last_discarded_; }
  uint64_t read_runs() const { std::lock_guard lk(mu_); return read_runs_; }
  std::string contract_error() const { std::lock_guard lk(mu_); return contract_error_; }

  Status ReadRun(Pgno first, uint32_t count, uint8_t* out, uint64_t* present) override {
    std::lock_guard lk(mu_);
    ++read_runs_;
    if (count > kMaxReadRun || reinterpret_cast<uintptr_t>(out) % kPageSize != 0)
      contract_error_ = "ReadRun called against its REQUIRES";
    if (present != nullptr) std::memset(present, 0, (count + 63) / 64 * 8);
    for (uint32_t i = 0; i < count; ++i) {
      if (corrupt_.count(first + i) != 0)
        return Status::Corruption("page " + std::to_string(first + i) + " fails its checksum (fake store)");
      auto it = pages_.find(first + i);
      if (it == pages_.end()) {
        std::memset(out + uint64_t{i} * kPageSize, 0, kPageSize);
      } else {
        std::memcpy(out + uint64_t{i} * kPageSize, it->second.data(), kPageSize);
        if (present != nullptr) present[i / 64] |= uint64_t{1} << (i % 64);
      }
    }
    return Status::Ok();
  }

  Status Persist(const SealedEpoch& e) override {
    {
      std::unique_lock lk(hold_mu_);
      hold_cv_.wait(lk, [&] { return !held_; });
    }
    // Read the pages before taking the lock: read from the region, a page
    // may fault, and the fault is served through ReadRun.
    std::vector<Page> data(e.pages.size());
    for (size_t i = 0; i < e.pages.size(); ++i) std::memcpy(data[i].data(), e.page_data(i), kPageSize);
    std::lock_guard lk(mu_);
    attempts_.emplace_back(e.image.epoch, e.pages);
    if (fail_persists_ > 0) {
      --fail_persists_;
      return Status::IoError("fake store: injected Persist failure", EIO);
    }
    if (e.image.epoch != image_.epoch + 1)
      contract_error_ = "epoch " + std::to_string(e.image.epoch) + " after " + std::to_string(image_.epoch);
    if (reinterpret_cast<uintptr_t>(e.data) % kPageSize != 0 && !e.pages.empty()) contract_error_ = "data not 4 KiB aligned";
    if (e.data == nullptr && !e.pages.empty()) {
      if (e.region == nullptr || !from_region_) contract_error_ = "pages without data";
      ++region_epochs_;
    }
    for (size_t i = 1; i < e.pages.size(); ++i)
      if (e.pages[i] <= e.pages[i - 1]) contract_error_ = "pages not ascending";
    for (Run r : e.discarded) {
      for (Pgno p : e.pages)
        if (p >= r.first && p < r.end()) contract_error_ = "discarded overlaps pages";
      for (Pgno p = r.first; p < r.end(); ++p) pages_.erase(p);
    }
    for (size_t i = 0; i < e.pages.size(); ++i) {
      if (e.pages[i] >= e.image.hwm) contract_error_ = "page at or above hwm";
      pages_[e.pages[i]] = data[i];
    }
    image_ = e.image;
    last_pages_ = e.pages;
    last_discarded_ = e.discarded;
    if (on_persist_) on_persist_(e, *this);
    return Status::Ok();
  }

  // Two phases, as a local store does them: Write copies an epoch read from
  // the region (so the pager must hold the program still only until it
  // returns); Sync applies the copy, or fails and forgets it.
  Status Write(const SealedEpoch& e) override {
    if (e.data != nullptr || e.pages.empty()) return Persist(e);
    {
      std::lock_guard lk(mu_);
      if (fail_persists_ > 0) {  // the write fails
        --fail_persists_;
        attempts_.emplace_back(e.image.epoch, e.pages);
        return Status::IoError("fake store: injected Write failure", EIO);
      }
      if (!from_region_) contract_error_ = "pages without data";
      if (written_) contract_error_ = "Write before the last written epoch's Sync";
    }
    auto w = std::make_unique<Written>();
    w->epoch = e;
    w->data.reset(static_cast<uint8_t*>(std::aligned_alloc(kPageSize, e.pages.size() * kPageSize)));
    for (size_t i = 0; i < e.pages.size(); ++i) std::memcpy(w->data.get() + i * kPageSize, e.page_data(i), kPageSize);
    w->epoch.data = w->data.get();
    w->epoch.region = nullptr;
    std::lock_guard lk(mu_);
    ++region_epochs_;
    written_ = std::move(w);
    return Status::Ok();
  }
  Status Sync(uint64_t /*pause_ns*/) override {
    std::unique_ptr<Written> w;
    {
      std::lock_guard lk(mu_);
      w = std::move(written_);
      if (w == nullptr) return Status::Ok();
      if (fail_syncs_ > 0) {
        --fail_syncs_;
        attempts_.emplace_back(w->epoch.image.epoch, w->epoch.pages);
        return Status::IoError("fake store: injected Sync failure", EIO);
      }
    }
    return Persist(w->epoch);
  }

 private:
  struct Written {
    SealedEpoch epoch;
    std::unique_ptr<uint8_t, decltype(&std::free)> data{nullptr, &std::free};  // 4 KiB aligned
  };
  std::unique_ptr<Written> written_;
  int fail_syncs_ = 0;
  std::mutex hold_mu_;
  std::condition_variable hold_cv_;
  bool held_ = false;
  mutable std::mutex mu_;
  ImageInfo image_;
  std::map<Pgno, Page> pages_;
  std::set<Pgno> corrupt_;
  int fail_persists_ = 0;
  bool from_region_ = false;
  uint64_t region_epochs_ = 0;
  std::vector<std::pair<Epoch, std::vector<Pgno>>> attempts_;  // every Persist call: epoch, pages
  uint64_t read_runs_ = 0;
  std::vector<Pgno> last_pages_;
  std::vector<Run> last_discarded_;
  std::string contract_error_;
  std::function<void(const SealedEpoch&, const FakeStore&)> on_persist_;
};

// The tracking modes this kernel supports (kAuto excluded).
std::vector<TrackingMode> SupportedModes();
// "asyncwp", "syncwp", "mprotect", "asyncwpuser", "hybridwp": test-name friendly.
std::string ModeTestName(TrackingMode m);
// ThreadSanitizer runs an internal thread with every signal blocked, so a
// signal safepoint over all threads of the process (every commit) cannot
// complete under it; tests that commit skip there and say why.
#define PHEAP_SKIP_IF_TSAN() PHEAP_SKIP_UNDER_TSAN("its background thread blocks the commit safepoint's signal")

// The tests' region base: a default slot (so it also lies where
// ThreadSanitizer allows application mappings), away from the first ones.
inline constexpr uint64_t kTestBase = kDefaultBase + 3 * kDefaultSlotSize;

}  // namespace pheap::testing
