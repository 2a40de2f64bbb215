// pheap_advise and pheap_prefetch (and Heap::advise, Heap::prefetch) on a
// real store: prefetch places a stored range with no fault on the program's
// thread, random and sequential advice shape its faults, dont-need gives
// back clean durable pages and keeps a write, bad ranges are refused
// naming the range.
#include <pheap/heap.hpp>

#include <errno.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/test_util.h"

namespace {

using pheaptest::TempDir;

constexpr size_t kPage = 4096;
constexpr size_t kPages = 1024;  // the stored block: 4 MiB
// async-wp serves missing faults and evicts; memory_max=0 unless a test
// asks for a budget (the default is a third of the memory cgroup's limit).
const std::string kNoBudget = "tracking=async-wp;memory_max=0";

bool Says(const char* what) { return std::strstr(pheap_last_error(), what) != nullptr; }

// Pages of [p, p + n pages) in memory, asked without touching them.
size_t Resident(const void* p, size_t n) {
  std::vector<unsigned char> v(n);
  EXPECT_EQ(::mincore(const_cast<void*>(p), n * kPage, v.data()), 0) << std::strerror(errno);
  size_t k = 0;
  for (unsigned char c : v) k += c & 1;
  return k;
}

// Under ThreadSanitizer the thread's first reads of a page also fault on
// the page's shadow, which the thread's counts cannot tell apart.
[[maybe_unused]] constexpr const char* kShadowFaults = "its shadow memory faults count as the thread's";

// Page faults the calling thread took so far.
long ThreadFaults() {
  rusage ru{};
  ::getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_minflt + ru.ru_majflt;
}

class Advice : public ::testing::Test {
 protected:
  // Opens heap "adv" with `extra` config; skips when async-wp is missing.
  pheap::handle* Open(const std::string& extra) {
    pheap::handle* h = pheap_open("adv", dir_.config(extra, "64M").c_str());
    if (h == nullptr && errno == ENOTSUP) return nullptr;
    EXPECT_NE(h, nullptr) << pheap_last_error();
    return h;
  }
  // Stores a block of kPages pages, page i filled with i % 251 + 1, under
  // root "block", and closes the heap: the next open finds it absent.
  bool StoreBlock() {
    pheap::handle* h = Open(kNoBudget);
    if (h == nullptr) return false;
    auto* b = static_cast<uint8_t*>(pheap_aligned_alloc(h, kPage, kPages * kPage));
    EXPECT_NE(b, nullptr);
    for (size_t i = 0; i < kPages; ++i) std::memset(b + i * kPage, static_cast<int>(i % 251 + 1), kPage);
    EXPECT_EQ(pheap_set_root(h, "block", b), 0);
    EXPECT_GT(pheap_commit(h), 0) << pheap_last_error();
    EXPECT_EQ(pheap_close(h), 0);
    return true;
  }
  TempDir dir_;
};

#define OPEN_OR_SKIP(h, extra)                                   \
  pheap::handle* h = Open(extra);                                \
  if (h == nullptr) GTEST_SKIP() << "no async-wp tracking here"; \
  static_cast<void>(0)

TEST_F(Advice, PrefetchPlacesAStoredRangeWithoutAFaultOnTheProgramsThread) {
  PHEAP_SKIP_UNDER_TSAN(kShadowFaults);
  if (!StoreBlock()) GTEST_SKIP() << "no async-wp tracking here";
  OPEN_OR_SKIP(h, kNoBudget);
  auto* b = static_cast<const uint8_t*>(pheap_root(h, "block"));
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(Resident(b, kPages), 0u);
  // Random advice: each touch of an absent page would fault on its own.
  ASSERT_EQ(pheap_advise(h, b, kPages * kPage, PHEAP_ADVICE_RANDOM), 0) << pheap_last_error();
  long faults = ThreadFaults();
  for (size_t i = 0; i < kPages / 2; ++i) ASSERT_EQ(b[i * kPage], i % 251 + 1);
  EXPECT_GE(ThreadFaults() - faults, static_cast<long>(kPages / 2)) << "random advice read ahead";

  const uint8_t* rest = b + kPages / 2 * kPage;
  ASSERT_EQ(pheap_prefetch(h, rest, kPages / 2 * kPage), 0) << pheap_last_error();
  for (int i = 0; i < 2000 && Resident(rest, kPages / 2) < kPages / 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(Resident(rest, kPages / 2), kPages / 2);
  faults = ThreadFaults();
  for (size_t i = kPages / 2; i < kPages; ++i) ASSERT_EQ(b[i * kPage + kPage - 1], i % 251 + 1);
  EXPECT_EQ(ThreadFaults() - faults, 0) << "the prefetched pages faulted";
  EXPECT_EQ(pheap_close(h), 0);
}

TEST_F(Advice, SequentialAdviceReadsAheadOfAStridedScan) {
  PHEAP_SKIP_UNDER_TSAN(kShadowFaults);
  if (!StoreBlock()) GTEST_SKIP() << "no async-wp tracking here";
  // Under a budget stored runs are copied a window at a time (without one
  // they are mapped from the store's files whole, whatever the window).
  OPEN_OR_SKIP(h, "tracking=async-wp;memory_max=64M");
  auto* b = static_cast<const uint8_t*>(pheap_root(h, "block"));
  ASSERT_NE(b, nullptr);
  // Unadvised, each touch of a strided scan is a fault of its own.
  long faults = ThreadFaults();
  for (size_t i = 0; i < kPages / 2; i += 32) ASSERT_EQ(b[i * kPage], i % 251 + 1);
  const long plain = ThreadFaults() - faults;
  EXPECT_GE(plain, 16);
  const uint8_t* rest = b + kPages / 2 * kPage;
  ASSERT_EQ(pheap_advise(h, rest, kPages / 2 * kPage, PHEAP_ADVICE_SEQUENTIAL), 0) << pheap_last_error();
  faults = ThreadFaults();
  for (size_t i = kPages / 2; i < kPages; i += 32) ASSERT_EQ(b[i * kPage], i % 251 + 1);
  EXPECT_LE(ThreadFaults() - faults, plain / 4) << plain << " faults unadvised";
  EXPECT_EQ(pheap_close(h), 0);
}

TEST_F(Advice, DontNeedGivesBackCleanPagesAndKeepsAWrite) {
  if (!StoreBlock()) GTEST_SKIP() << "no async-wp tracking here";
  {
    OPEN_OR_SKIP(h, "tracking=async-wp;memory_max=64M");
    auto* b = static_cast<uint8_t*>(pheap_root(h, "block"));
    ASSERT_NE(b, nullptr);
    for (size_t i = 0; i < kPages; ++i) ASSERT_EQ(b[i * kPage], i % 251 + 1);
    ASSERT_EQ(Resident(b, kPages), kPages);
    b[7 * kPage + 9] = 0xee;  // not yet durable: stays
    ASSERT_EQ(pheap_advise(h, b, kPages * kPage, PHEAP_ADVICE_DONTNEED), 0) << pheap_last_error();
    EXPECT_EQ(Resident(b, kPages), 1u);
    EXPECT_EQ(Resident(b + 7 * kPage, 1), 1u);
    EXPECT_EQ(b[7 * kPage + 9], 0xee);
    EXPECT_EQ(b[100 * kPage], 101);  // back from the store
    ASSERT_GT(pheap_commit(h), 0) << pheap_last_error();
    ASSERT_EQ(pheap_close(h), 0);
  }
  OPEN_OR_SKIP(h, kNoBudget);
  auto* b = static_cast<uint8_t*>(pheap_root(h, "block"));
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b[7 * kPage + 9], 0xee);
  EXPECT_EQ(b[7 * kPage], 8);
  EXPECT_EQ(pheap_close(h), 0);
}

TEST_F(Advice, BadRangesAndAdviceAreRefusedNamingThem) {
  OPEN_OR_SKIP(h, kNoBudget);
  auto* base = static_cast<uint8_t*>(pheap_base(h));
  const size_t size = pheap_size(h);
  char range[64];
  std::snprintf(range, sizeof(range), "[%#lx, %#lx)", reinterpret_cast<unsigned long>(base - kPage),
                reinterpret_cast<unsigned long>(base + kPage));
  errno = 0;
  EXPECT_EQ(pheap_prefetch(h, base - kPage, 2 * kPage), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_TRUE(Says(range)) << pheap_last_error();
  EXPECT_TRUE(Says("heap 'adv'")) << pheap_last_error();
  EXPECT_EQ(pheap_advise(h, base + size - 1, 2, PHEAP_ADVICE_DONTNEED), -1);
  EXPECT_TRUE(Says("not inside the heap region")) << pheap_last_error();
  EXPECT_EQ(pheap_advise(h, base, kPage, 99), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_TRUE(Says("unknown advice 99")) << pheap_last_error();
  EXPECT_EQ(pheap_advise(nullptr, base, kPage, PHEAP_ADVICE_NORMAL), -1);
  EXPECT_EQ(pheap_advise(h, base + 1, size - 1, PHEAP_ADVICE_NORMAL), 0) << pheap_last_error();
  EXPECT_EQ(pheap_close(h), 0);

  // The C++ interface throws, naming the same.
  pheap::Heap heap("adv", dir_.config(kNoBudget, "64M"));
  try {
    heap.prefetch(base - kPage, 2 * kPage);
    ADD_FAILURE() << "no error";
  } catch (const pheap::error& e) {
    EXPECT_EQ(e.code(), EINVAL);
    EXPECT_NE(std::string(e.what()).find(range), std::string::npos) << e.what();
  }
  heap.advise(base, size, pheap::advice::random);
}

TEST_F(Advice, AReadOnlyHeapTakesAdviceAndChangesNothing) {
  if (!StoreBlock()) GTEST_SKIP() << "no async-wp tracking here";
  pheap::Heap heap = pheap::Heap::open_read_only("adv", dir_.config("", "64M"));
  auto* b = heap.root<uint8_t>("block");
  ASSERT_NE(b, nullptr);
  heap.advise(b, kPages * kPage, pheap::advice::dont_need);
  EXPECT_EQ(Resident(b, kPages), kPages);  // its whole image stays
  EXPECT_EQ(b[3 * kPage], 4);
  EXPECT_THROW(heap.prefetch(b, 256 << 20), pheap::error);
}

}  // namespace
