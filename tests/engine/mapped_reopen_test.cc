// Reopening a heap whose stored pages lie back to back in a log file: the
// fault service maps them (PageSource::LocateRun) instead of copying. Each
// test checks what a program sees, what later commits keep, and that it
// really went through the mapping (the pager's pages_mapped), so a silent
// fall back to copying cannot pass for it.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "base/os.h"
#include "heap/engine.h"
#include "pager/kernel_probe.h"

namespace pheap {
namespace {

constexpr uint64_t kPages = 600;  // more than three groups of 169 in the log
constexpr uint64_t kWords = kPageSize / 8;

uint64_t Word(uint64_t page, uint64_t i, uint64_t gen) { return (page * 1000003 + i) ^ (gen << 48); }

class MappedReopen : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CachedKernelFeatures().wp_async || !CachedKernelFeatures().pagemap_scan || !CachedWpAsyncOnFiles())
      GTEST_SKIP() << "this kernel cannot write-protect a file's pages asynchronously: stored pages are copied";
    char tmpl[] = "/tmp/pheap-mapped-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    options_.dir = dir_;
    options_.size = uint64_t{1} << 30;
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<Engine> Open() {
    auto e = Engine::Open("mapped", options_);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? std::move(*e) : nullptr;
  }
  static uint64_t* Page(Engine& e, uint64_t p) { return static_cast<uint64_t*>(e.base()) + p * kWords; }
  static void Fill(Engine& e, uint64_t p, uint64_t gen) {
    for (uint64_t i = 0; i < kWords; ++i) Page(e, p)[i] = Word(p, i, gen);
  }
  static bool Holds(Engine& e, uint64_t p, uint64_t gen) {
    for (uint64_t i = 0; i < kWords; ++i)
      if (Page(e, p)[i] != Word(p, i, gen)) return false;
    return true;
  }
  static bool IsZero(Engine& e, uint64_t p) {
    for (uint64_t i = 0; i < kWords; ++i)
      if (Page(e, p)[i] != 0) return false;
    return true;
  }
  // One session that writes every page (generation 0) and commits.
  void WriteAll() {
    auto e = Open();
    ASSERT_TRUE(e);
    for (uint64_t p = 0; p < kPages; ++p) Fill(*e, p, 0);
    auto r = e->Commit();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  std::string dir_;
  EngineOptions options_;
};

TEST_F(MappedReopen, PagesReadBackAndWritesToThemAreCommitted) {
  WriteAll();
  {
    auto e = Open();
    ASSERT_TRUE(e);
    // A write as the first touch of a page: its fault maps the run, the
    // write then copies the page and is tracked.
    Fill(*e, 300, 1);
    for (uint64_t p = 0; p < kPages; ++p) ASSERT_TRUE(p == 300 ? Holds(*e, p, 1) : Holds(*e, p, 0)) << "page " << p;
    EXPECT_GE(e->pager().stats().pages_mapped, kPages / 2);
    Fill(*e, 5, 1);
    Fill(*e, 599, 1);
    auto r = e->Commit();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(e->pager().stats().last_dirty_pages, 3u);  // the reads made nothing dirty
  }
  auto e = Open();
  ASSERT_TRUE(e);
  for (uint64_t p = 0; p < kPages; ++p) {
    const bool rewritten = p == 5 || p == 300 || p == 599;
    ASSERT_TRUE(Holds(*e, p, rewritten ? 1 : 0)) << "page " << p;
  }
}

TEST_F(MappedReopen, DiscardedMappedPagesReadAsZerosAndStaySo) {
  WriteAll();
  {
    auto e = Open();
    ASSERT_TRUE(e);
    for (uint64_t p = 0; p < kPages; ++p) ASSERT_TRUE(Holds(*e, p, 0)) << "page " << p;
    ASSERT_GE(e->pager().stats().pages_mapped, kPages / 2);
    // A zapped page of a file mapping would show the file again.
    Status s = e->Discard(Page(*e, 100), 200 * kPageSize);
    ASSERT_TRUE(s.ok()) << s.ToString();
    for (uint64_t p = 100; p < 300; ++p) ASSERT_TRUE(IsZero(*e, p)) << "page " << p;
    Fill(*e, 150, 2);
    auto r = e->Commit();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  auto e = Open();
  ASSERT_TRUE(e);
  for (uint64_t p = 0; p < kPages; ++p) {
    if (p == 150) ASSERT_TRUE(Holds(*e, p, 2));
    else if (p >= 100 && p < 300) ASSERT_TRUE(IsZero(*e, p)) << "page " << p;
    else ASSERT_TRUE(Holds(*e, p, 0)) << "page " << p;
  }
}

// Threads that write pages as their first touch, all at once, while the
// fault service maps the runs under them: a write that lands between a
// run's mmap and its protection must still be committed.
TEST_F(MappedReopen, ConcurrentFirstWritesAreAllCommitted) {
  WriteAll();
  for (int round = 0; round < 3; ++round) {
    {
      auto e = Open();
      ASSERT_TRUE(e);
      std::vector<std::thread> writers;
      for (uint64_t t = 0; t < 3; ++t)
        writers.emplace_back([&, t] {
          uint64_t x = t * 7919 + static_cast<uint64_t>(round);
          for (uint64_t k = 0; k < kPages; ++k) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            const uint64_t p = (x >> 33) % kPages;
            if (p % 3 == t) Page(*e, p)[kWords - 1] = Word(p, kWords - 1, 10 + static_cast<uint64_t>(round));
          }
        });
      for (auto& w : writers) w.join();
      // Later rounds read pages scattered over the earlier rounds' epochs,
      // in runs mostly too short to map.
      if (round == 0) {
        EXPECT_GT(e->pager().stats().pages_mapped, 0u);
      }
      auto r = e->Commit();
      ASSERT_TRUE(r.ok()) << r.status().ToString();
    }
    // Every page's last word is the newest generation that wrote it; the
    // oracle replays the same choices.
    auto e = Open();
    ASSERT_TRUE(e);
    std::vector<uint64_t> last(kPages, 0);
    for (int g = 0; g <= round; ++g)
      for (uint64_t t = 0; t < 3; ++t) {
        uint64_t x = t * 7919 + static_cast<uint64_t>(g);
        for (uint64_t k = 0; k < kPages; ++k) {
          x = x * 6364136223846793005ull + 1442695040888963407ull;
          const uint64_t p = (x >> 33) % kPages;
          if (p % 3 == t) last[p] = 10 + static_cast<uint64_t>(g);
        }
      }
    for (uint64_t p = 0; p < kPages; ++p) {
      ASSERT_EQ(Page(*e, p)[kWords - 1], Word(p, kWords - 1, last[p])) << "round " << round << " page " << p;
      ASSERT_EQ(Page(*e, p)[0], Word(p, 0, 0)) << "page " << p;
    }
  }
}

// The instant between a run's mmap and its write protection, made to
// happen every time: right after the fault service maps a stored run, this
// Os writes into the run as a thread of the program could, once before the
// run is populated (page 10: absent, so the write copies it from the file)
// and once after (page 12: present, the file's page, copied on write).
// Both writes must be committed like any other. (Atomic accesses: the
// kernel's wake of the faulting thread is a hand-over ThreadSanitizer
// cannot see.)
class WriteInTheWindow : public Os {
 public:
  void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) override {
    void* p = Os::mmap(addr, len, prot, flags, fd, off);
    if (fd >= 0 && (flags & MAP_FIXED) != 0 && !MmapFailed(p) && len > 13 * kPageSize && run_.load() == 0) {
      __atomic_store_n(&static_cast<uint64_t*>(p)[10 * kWords + 7], kMark, __ATOMIC_RELAXED);
      run_.store(reinterpret_cast<uint64_t>(p));
    }
    return p;
  }
  int madvise(void* addr, size_t len, int advice) override {
    const int r = Os::madvise(addr, len, advice);
    if (advice == MADV_POPULATE_READ && reinterpret_cast<uint64_t>(addr) == run_.load() && !populated_.exchange(true))
      __atomic_store_n(&static_cast<uint64_t*>(addr)[12 * kWords + 7], kMark, __ATOMIC_RELAXED);
    return r;
  }
  static constexpr uint64_t kMark = 0xfeedface;
  std::atomic<uint64_t> run_{0};  // where the run written into was mapped
  std::atomic<bool> populated_{false};
};

TEST_F(MappedReopen, AWriteBeforeTheRunIsProtectedIsCommitted) {
  WriteAll();
  WriteInTheWindow os;
  Pgno written = 0;
  SetOsForTesting(&os);  // no pheap thread runs until Open, none after the engine closes
  {
    auto e = Open();
    ASSERT_TRUE(e);
    (void)*static_cast<volatile uint64_t*>(Page(*e, 0));  // maps the run of page 0
    ASSERT_NE(os.run_.load(), 0u) << "no stored run was mapped";
    ASSERT_TRUE(os.populated_.load()) << "the mapped run was not populated where expected";
    written = (os.run_.load() - reinterpret_cast<uint64_t>(e->base())) / kPageSize + 10;
    for (Pgno p : {written, written + 2})
      ASSERT_EQ(__atomic_load_n(&Page(*e, p)[7], __ATOMIC_RELAXED), WriteInTheWindow::kMark) << "page " << p;
    auto r = e->Commit();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(e->pager().stats().last_dirty_pages, 2u);
  }
  SetOsForTesting(nullptr);
  auto e = Open();
  ASSERT_TRUE(e);
  for (Pgno p : {written, written + 2}) {
    EXPECT_EQ(Page(*e, p)[7], WriteInTheWindow::kMark) << "page " << p;
    EXPECT_EQ(Page(*e, p)[8], Word(p, 8, 0)) << "page " << p;
  }
  EXPECT_EQ(Page(*e, written + 1)[7], Word(written + 1, 7, 0));
}

// A stored page whose bytes no longer match its checksum is never mapped:
// the run ends before it, and its own fault goes the copy path's way (the
// faulting thread gets SIGBUS where the kernel can poison a page).
TEST_F(MappedReopen, DamagedStoredPageIsNeverMapped) {
  if (!CachedKernelFeatures().poison) GTEST_SKIP() << "no UFFDIO_POISON: the faulting thread would block forever";
  WriteAll();
  // Find page 250's stored copy by its contents and flip one byte of it.
  const uint64_t want = Word(250, 0, 0);
  bool flipped = false;
  for (const auto& f : std::filesystem::directory_iterator(dir_ + "/mapped")) {
    if (f.path().filename().string().rfind("log-", 0) != 0) continue;
    std::fstream io(f.path(), std::ios::in | std::ios::out | std::ios::binary);
    std::vector<char> page(kPageSize);
    for (uint64_t off = 0; io.read(page.data(), kPageSize); off += kPageSize) {
      uint64_t w;
      std::memcpy(&w, page.data(), 8);
      if (w != want) continue;
      io.clear();
      io.seekp(static_cast<std::streamoff>(off + 100));
      io.put(static_cast<char>(page[100] ^ 0x40));
      flipped = true;
      break;
    }
  }
  ASSERT_TRUE(flipped) << "page 250 not found in the log";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    signal(SIGBUS, [](int) { _exit(42); });
    auto e = Engine::Open("mapped", options_);
    if (!e.ok()) _exit(1);
    for (uint64_t p = 0; p < 250; ++p)
      if (!Holds(**e, p, 0)) _exit(2);
    if ((*e)->pager().stats().pages_mapped == 0) _exit(3);
    volatile uint64_t v = Page(**e, 250)[0];  // damaged: never served
    (void)v;
    _exit(4);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 42) << "1: open failed, 2: wrong data, 3: nothing mapped, 4: damaged page served";
}

}  // namespace
}  // namespace pheap
