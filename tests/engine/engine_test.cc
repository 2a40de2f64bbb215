// The engine end to end in one process: round trip through a reopen, and a
// clear error for each kind of bad input.
#include "heap/engine.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "pager/pager.h"
#include "pager/uapi_compat.h"
#include "tests/support/nobody.h"

namespace pheap {
namespace {

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pheap-engine-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    options_.dir = dir_;
    options_.size = uint64_t{1} << 30;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static bool Mentions(const Status& s, const std::string& what) {
    return s.message().find(what) != std::string::npos;
  }

  std::string dir_;
  EngineOptions options_;
};

TEST_F(EngineTest, CommittedDataSurvivesReopenAtTheSameAddress) {
  void* base = nullptr;
  {
    auto e = Engine::Open("roundtrip", options_);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    base = (*e)->base();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(base), Engine::DefaultBase("roundtrip"));
    auto* words = static_cast<uint64_t*>(base);
    for (uint64_t i = 0; i < 300000; ++i) words[i * 7] = i ^ 0x5a5a;  // ~16 MiB spread
    std::strcpy(static_cast<char*>(base) + (uint64_t{512} << 20), "far away");
    auto r = (*e)->Commit();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(*r, 1u);
    words[0] = 0xdead;  // never committed
  }
  auto e = Engine::Open("roundtrip", options_);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ((*e)->base(), base);
  EXPECT_EQ((*e)->durable_epoch(), 1u);
  auto* words = static_cast<uint64_t*>((*e)->base());
  EXPECT_EQ(words[0], 0x5a5au);
  for (uint64_t i = 1; i < 300000; ++i) ASSERT_EQ(words[i * 7], i ^ 0x5a5a) << i;
  EXPECT_STREQ(static_cast<char*>((*e)->base()) + (uint64_t{512} << 20), "far away");
}

// Each open starts threads that commits must not pause; a closed heap's
// must not stay listed, or a program thread that reuses one's id would be
// left out of every cut.
TEST_F(EngineTest, AClosedHeapLeavesNoThreadExempt) {
  const int before = Pager::ExemptThreads();
  for (int i = 0; i < 3; ++i) {
    auto e = Engine::Open("exempt", options_);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    ASSERT_TRUE((*e)->Commit().ok());
    EXPECT_GT(Pager::ExemptThreads(), before);
  }
  EXPECT_EQ(Pager::ExemptThreads(), before);
}

TEST_F(EngineTest, BadHeapNamesAreRefusedByName) {
  for (std::string bad : {std::string(""), std::string("a/b"), std::string(300, 'x'),
                          std::string(".."), std::string("sp ace")}) {
    auto e = Engine::Open(bad, options_);
    ASSERT_FALSE(e.ok()) << "accepted '" << bad << "'";
    EXPECT_EQ(e.status().code(), Status::Code::kInvalidArgument) << e.status().ToString();
    EXPECT_TRUE(Mentions(e.status(), "name")) << e.status().ToString();
  }
}

TEST_F(EngineTest, SizeZeroAndBeyondTheAddressSpaceAreRefused) {
  auto cfg = Config::Parse("size=0", Engine::ConfigKeys());
  ASSERT_TRUE(cfg.ok());
  auto zero = Engine::OptionsFromConfig(*cfg);
  ASSERT_FALSE(zero.ok());
  EXPECT_TRUE(Mentions(zero.status(), "size=0")) << zero.status().ToString();

  options_.size = uint64_t{1} << 50;
  auto huge = Engine::Open("huge", options_);
  ASSERT_FALSE(huge.ok());
  EXPECT_TRUE(Mentions(huge.status(), "address space")) << huge.status().ToString();
}

TEST_F(EngineTest, UnwritableDirectoryIsNamed) {
  // Root ignores permission bits, so use a path under a regular file.
  std::string file = dir_ + "/plain-file";
  FILE* f = fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fclose(f);
  options_.dir = file + "/store";
  auto e = Engine::Open("x", options_);
  ASSERT_FALSE(e.ok());
  EXPECT_TRUE(Mentions(e.status(), file)) << e.status().ToString();
}

TEST_F(EngineTest, TakenAddressRangeIsNamed) {
  uint64_t base = Engine::DefaultBase("collide");
  void* squatter = mmap(reinterpret_cast<void*>(base + (uint64_t{64} << 20)), 4096, PROT_READ,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  ASSERT_NE(squatter, MAP_FAILED);
  auto e = Engine::Open("collide", options_);
  munmap(squatter, 4096);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), Status::Code::kBusy) << e.status().ToString();
  char hex[32];
  snprintf(hex, sizeof(hex), "%#llx", static_cast<unsigned long long>(base));
  EXPECT_TRUE(Mentions(e.status(), hex)) << e.status().ToString();
  EXPECT_TRUE(Mentions(e.status(), "base=")) << e.status().ToString();
}

// A store whose creator never committed (it crashed, or its open failed
// before this removed it) records a region nothing depends on: the next
// open's region replaces it, and commits go through.
TEST_F(EngineTest, AStoreWithNoDurableEpochTakesTheNextOpensRegion) {
  {
    PageStoreOptions so;
    so.base = Engine::DefaultBase("regrown");
    so.size = uint64_t{1} << 20;
    auto store = PageStore::Open(dir_, "regrown", so);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
  }
  options_.size = uint64_t{64} << 20;
  {
    auto e = Engine::Open("regrown", options_);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    EXPECT_EQ((*e)->size(), options_.size);
    std::strcpy(static_cast<char*>((*e)->base()) + (uint64_t{32} << 20), "beyond 1 MiB");
    auto r = (*e)->Commit();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  options_.size = 0;
  auto e = Engine::Open("regrown", options_);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ((*e)->size(), uint64_t{64} << 20);
  EXPECT_STREQ(static_cast<char*>((*e)->base()) + (uint64_t{32} << 20), "beyond 1 MiB");
}

// A first open that fails leaves no directory behind: peers that do not
// answer, or a region that cannot be mapped.
TEST_F(EngineTest, AFailedFirstOpenLeavesNoDirectory) {
  auto unreachable = ResolveReplication({"tcp://127.0.0.1:1"}, 1, 1);
  ASSERT_TRUE(unreachable.ok());
  EngineOptions o = options_;
  o.replication = *unreachable;
  o.replica_timeout_ms = 300;
  auto e = Engine::Open("nopeers", o);
  ASSERT_FALSE(e.ok());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/nopeers")) << e.status().ToString();
  EXPECT_TRUE(std::filesystem::is_empty(dir_));

  uint64_t base = Engine::DefaultBase("squatted");
  void* squatter =
      mmap(reinterpret_cast<void*>(base), 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  ASSERT_NE(squatter, MAP_FAILED);
  e = Engine::Open("squatted", options_);
  munmap(squatter, 4096);
  ASSERT_FALSE(e.ok());
  EXPECT_TRUE(std::filesystem::is_empty(dir_)) << e.status().ToString();
  // Nor does a failed open of an existing heap remove it.
  {
    auto made = Engine::Open("squatted", options_);
    ASSERT_TRUE(made.ok()) << made.status().ToString();
  }
  e = Engine::Open("squatted", o);
  ASSERT_FALSE(e.ok());
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/squatted"));
}

TEST_F(EngineTest, UnknownConfigKeyAndBadTrackingModeAreRefused) {
  EXPECT_FALSE(Config::Parse("sise=1G", Engine::ConfigKeys()).ok());
  auto cfg = Config::Parse("tracking=fast", Engine::ConfigKeys());
  ASSERT_TRUE(cfg.ok());
  auto o = Engine::OptionsFromConfig(*cfg);
  ASSERT_FALSE(o.ok());
  EXPECT_TRUE(Mentions(o.status(), "tracking")) << o.status().ToString();
}

TEST_F(EngineTest, StagingKeysReachThePager) {
  auto cfg = Config::Parse("staging_max=2M;staging_wait_ms=250;staging_keep=1M", Engine::ConfigKeys());
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  auto o = Engine::OptionsFromConfig(*cfg);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->pager.staging_max, uint64_t{2} << 20);
  EXPECT_EQ(o->pager.staging_wait_ms, 250u);
  EXPECT_EQ(o->pager.staging_keep, uint64_t{1} << 20);
  cfg = Config::Parse("staging_wait_ms=soon", Engine::ConfigKeys());
  ASSERT_TRUE(cfg.ok());
  o = Engine::OptionsFromConfig(*cfg);
  ASSERT_FALSE(o.ok());
  EXPECT_TRUE(Mentions(o.status(), "staging_wait_ms")) << o.status().ToString();
}

TEST_F(EngineTest, SecondWriterInAnotherProcessGetsThePid) {
  // The child is forked before the engine starts its threads and waits for
  // the open: a fork of a process with running threads may inherit a lock
  // one of them held, and the child would hang on it.
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(go[1]);
    char byte = 0;
    if (read(go[0], &byte, 1) != 1) _exit(2);
    // The parent's region is not mapped here, but only the store is tried:
    // the lock is the store's.
    auto s = PageStore::Open(dir_, "held", PageStoreOptions{});
    bool ok = !s.ok() && s.status().code() == Status::Code::kBusy &&
              s.status().message().find(std::to_string(getppid())) != std::string::npos;
    _exit(ok ? 0 : 1);
  }
  close(go[0]);
  auto e = Engine::Open("held", options_);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  char byte = 1;
  EXPECT_EQ(write(go[1], &byte, 1), 1);
  close(go[1]);
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the second opener did not get a busy error naming pid " << getpid() << " (status " << status << ")";
}

// An unprivileged user on a kernel that refuses it a full userfaultfd
// (vm.unprivileged_userfaultfd=0, /dev/userfaultfd root's only) gets
// async-wp-user tracking under tracking=auto: the heap opens, a read(2) into
// it works, it commits, and it reopens intact. The test runs as root and
// drops to uid 65534 in a fresh process of this binary, before anything has
// probed the kernel there.
constexpr const char* kNobodyDirVar = "PHEAP_TEST_NOBODY_DIR";

TEST(EngineAsNobody, AutoTrackingOpensCommitsAndReopens) {
  const char* dir = std::getenv(kNobodyDirVar);
  if (dir == nullptr) {  // the parent: prepares, runs the child, reports it
    if (getuid() != 0) GTEST_SKIP() << "needs root to drop to uid 65534";
    if (!pheaptest::NobodyHasUserModeWpAsync())
      GTEST_SKIP() << "no user-mode-only userfaultfd with UFFD_FEATURE_WP_ASYNC for uid 65534 (Linux 6.7+)";
    char tmpl[] = "/tmp/pheap-nobody-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    ASSERT_EQ(chmod(tmpl, 0777), 0);
    pid_t child = fork();
    if (child == 0) {
      setenv(kNobodyDirVar, tmpl, 1);
      execl("/proc/self/exe", "engine_open_test", "--gtest_filter=EngineAsNobody.*", nullptr);
      _exit(127);
    }
    int status = 0;
    waitpid(child, &status, 0);
    std::filesystem::remove_all(tmpl);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status << " (see its output above)";
    return;
  }
  ASSERT_TRUE(pheaptest::DropToNobody());
  ASSERT_EQ(getuid(), pheaptest::kNobody);
  EngineOptions o;
  o.dir = dir;
  o.size = uint64_t{256} << 20;
  ASSERT_EQ(o.pager.mode, TrackingMode::kAuto);
  int in = open("/proc/self/exe", O_RDONLY);
  ASSERT_GE(in, 0);
  char want[4096];
  ASSERT_EQ(pread(in, want, sizeof want, 0), 4096);
  {
    auto e = Engine::Open("nobody", o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    EXPECT_EQ((*e)->mode(), TrackingMode::kAsyncWpUser);
    auto* base = static_cast<uint8_t*>((*e)->base());
    for (uint64_t i = 0; i < 2048; ++i) base[i * kPageSize + 1] = static_cast<uint8_t>(i);  // 8 MiB stored
    ASSERT_TRUE((*e)->Commit().ok());
  }
  {
    auto e = Engine::Open("nobody", o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    EXPECT_EQ((*e)->mode(), TrackingMode::kAsyncWpUser);
    auto* base = static_cast<uint8_t*>((*e)->base());
    for (uint64_t i = 0; i < 2048; ++i) ASSERT_EQ(base[i * kPageSize + 1], static_cast<uint8_t>(i)) << i;
    // The kernel writes into a stored page and into one never touched.
    ASSERT_EQ(pread(in, base + 5 * kPageSize, 4096, 0), 4096) << std::strerror(errno);
    ASSERT_EQ(pread(in, base + (uint64_t{100} << 20), 4096, 0), 4096) << std::strerror(errno);
    auto r = (*e)->Commit();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(*r, 2u);
  }
  auto e = Engine::Open("nobody", o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  auto* base = static_cast<uint8_t*>((*e)->base());
  EXPECT_EQ(std::memcmp(base + 5 * kPageSize, want, 4096), 0);
  EXPECT_EQ(std::memcmp(base + (uint64_t{100} << 20), want, 4096), 0);
  EXPECT_EQ(base[6 * kPageSize + 1], 6);
  close(in);
}

}  // namespace
}  // namespace pheap
