// Shared by the page store tests: a scratch directory, a deterministic epoch
// generator and an independent model of what the durable image must hold.
#pragma once

#include "tests/support/test_util.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "base/page_io.h"
#include "base/types.h"
#include "store/page_store.h"

namespace pheap::testing {

inline constexpr uint64_t kBase = uint64_t{0x3000} << 32;
inline constexpr uint64_t kRegionPages = 256;
inline constexpr uint64_t kSize = kRegionPages * kPageSize;

// A temporary directory for one test.
class TempDir : public pheaptest::TempDir {
 public:
  TempDir() : pheaptest::TempDir("pheap-store") {}
};
using pheaptest::FillPage;
using pheaptest::Mix;

inline PageStoreOptions Options() {
  PageStoreOptions o;
  o.base = kBase;
  o.size = kSize;
  return o;
}

// One epoch to persist, holding its own aligned data.
struct EpochData {
  SealedEpoch sealed;
  std::unique_ptr<uint8_t, decltype(&std::free)> data{nullptr, &std::free};
};

inline EpochData MakeEpoch(Epoch e, const std::vector<Pgno>& pages, Pgno hwm, std::vector<Run> discarded = {},
                           Term term = 1) {
  EpochData d;
  d.sealed.image = ImageInfo{0, e, term, kBase, kSize, hwm};
  d.sealed.pages = pages;
  d.sealed.discarded = std::move(discarded);
  if (!pages.empty()) {
    d.data.reset(static_cast<uint8_t*>(std::aligned_alloc(kPageSize, pages.size() * kPageSize)));
    for (size_t i = 0; i < pages.size(); ++i) FillPage(d.data.get() + i * kPageSize, pages[i], e);
  }
  d.sealed.data = d.data.get();
  return d;
}

// What the image must hold: for each page the epoch that last wrote it.
struct Model {
  std::map<Pgno, Epoch> written;
  Epoch epoch = 0;
  Pgno hwm = 0;
  void Apply(const SealedEpoch& e) {
    for (Pgno p : e.pages) written[p] = e.image.epoch;
    for (const Run& r : e.discarded)
      for (Pgno p = r.first; p < r.end(); ++p) written.erase(p);
    epoch = e.image.epoch;
    hwm = e.image.hwm;
  }
};

// A deterministic workload: epoch e's pages and discards depend only on
// (seed, e), so another process can recompute any epoch.
inline EpochData GenerateEpoch(uint64_t seed, Epoch e, Pgno hwm = 64) {
  uint64_t s = Mix(seed ^ (e * 0x100000001b3ull));
  std::set<Pgno> pages;
  size_t n = 1 + (s % 12);
  for (size_t i = 0; i < n; ++i) {
    s = Mix(s);
    pages.insert(s % hwm);
  }
  std::vector<Run> discarded;
  s = Mix(s);
  if (s % 5 == 0) {
    Pgno first = Mix(s) % hwm;
    uint64_t count = 1 + Mix(s + 1) % 4;
    if (first + count > hwm) count = hwm - first;
    for (Pgno p = first; p < first + count; ++p) pages.erase(p);
    discarded.push_back({first, count});
  }
  return MakeEpoch(e, std::vector<Pgno>(pages.begin(), pages.end()), hwm, discarded);
}

inline Model ModelAt(uint64_t seed, Epoch upto) {
  Model m;
  for (Epoch e = 1; e <= upto; ++e) m.Apply(GenerateEpoch(seed, e).sealed);
  return m;
}

// Reads the whole image through ReadRun (in uneven runs, to exercise
// coalescing) and compares it with the model.
inline ::testing::AssertionResult MatchesModel(PageStore& store, const Model& m, Pgno pages = kRegionPages) {
  if (store.image().epoch != m.epoch)
    return ::testing::AssertionFailure() << "epoch " << store.image().epoch << ", model " << m.epoch;
  if (store.image().hwm != m.hwm)
    return ::testing::AssertionFailure() << "hwm " << store.image().hwm << ", model " << m.hwm;
  std::unique_ptr<uint8_t, decltype(&std::free)> buf(
      static_cast<uint8_t*>(std::aligned_alloc(kPageSize, 37 * kPageSize)), &std::free);
  std::vector<uint8_t> want(kPageSize);
  for (Pgno first = 0; first < pages; first += 37) {
    uint32_t n = static_cast<uint32_t>(std::min<Pgno>(37, pages - first));
    uint64_t present[1] = {~0ull};
    Status s = store.ReadRun(first, n, buf.get(), present);
    if (!s.ok()) return ::testing::AssertionFailure() << "ReadRun(" << first << "): " << s.ToString();
    for (uint32_t i = 0; i < n; ++i) {
      auto it = m.written.find(first + i);
      bool has = it != m.written.end() && first + i < m.hwm;
      if (has)
        FillPage(want.data(), first + i, it->second);
      else
        std::memset(want.data(), 0, kPageSize);
      if (std::memcmp(buf.get() + i * kPageSize, want.data(), kPageSize) != 0)
        return ::testing::AssertionFailure()
               << "page " << first + i
               << " differs (model: " << (has ? "epoch " + std::to_string(it->second) : std::string("zeros")) << ")";
      if (((present[0] >> i) & 1) != (has ? 1u : 0u))
        return ::testing::AssertionFailure() << "present bit of page " << first + i << " is wrong";
    }
  }
  return ::testing::AssertionSuccess();
}

struct RecordingReporter : CorruptionReporter {
  struct Entry {
    std::string file;
    uint64_t offset;
    std::string what;
  };
  std::vector<Entry> entries;
  void Corruption(const std::string& file, uint64_t offset, const std::string& what) override {
    entries.push_back({file, offset, what});
  }
};

inline std::vector<std::string> LogFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& de : std::filesystem::directory_iterator(dir))
    if (de.path().extension() == ".pheap") out.push_back(de.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

inline std::unique_ptr<PageStore> OpenOrDie(const std::string& dir, const std::string& name,
                                            const PageStoreOptions& o = Options(), CorruptionReporter* r = nullptr) {
  auto st = PageStore::Open(dir, name, o, r);
  EXPECT_TRUE(st.ok()) << st.status().ToString();
  return st.ok() ? std::move(st.value()) : nullptr;
}

// Whether the first 64 pages of `image` hold what `m` says: an EpochImage
// is a PageSource, compared as MatchesModel compares a store.
inline ::testing::AssertionResult ImageMatchesModel(EpochImage& image, const Model& m) {
  std::vector<uint8_t> want(kPageSize);
  std::unique_ptr<uint8_t, decltype(&std::free)> buf(
      static_cast<uint8_t*>(std::aligned_alloc(kPageSize, 64 * kPageSize)), &std::free);
  Status s = image.ReadRun(0, 64, buf.get(), nullptr);
  if (!s.ok()) return ::testing::AssertionFailure() << s.ToString();
  for (Pgno p = 0; p < 64; ++p) {
    auto it = m.written.find(p);
    if (it != m.written.end() && p < m.hwm) FillPage(want.data(), p, it->second);
    else std::memset(want.data(), 0, kPageSize);
    if (std::memcmp(buf.get() + p * kPageSize, want.data(), kPageSize) != 0)
      return ::testing::AssertionFailure() << "epoch " << image.image().epoch << ": page " << p << " differs";
  }
  return ::testing::AssertionSuccess();
}

}  // namespace pheap::testing
