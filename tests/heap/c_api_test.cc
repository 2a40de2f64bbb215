// The C interface, function by function, as a C caller sees it.
#include <pheap/pheap.h>

#include <errno.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/test_util.h"

namespace {

using pheaptest::TempDir;

bool Says(const char* what) { return std::strstr(pheap_last_error(), what) != nullptr; }

TEST(CApi, AllocateRootCommitReopen) {
  TempDir dir;
  std::string cfg = dir.config();
  pheap* h = pheap_open("capi", cfg.c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  EXPECT_EQ(pheap_epoch(h), 0);
  EXPECT_EQ(pheap_root(h, "list"), nullptr);
  EXPECT_EQ(errno, ENOENT);

  // A linked list of 1000 nodes with raw pointers.
  struct Node { Node* next; uint64_t value; };
  Node* head = nullptr;
  for (uint64_t i = 0; i < 1000; ++i) {
    auto* n = static_cast<Node*>(pheap_malloc(h, sizeof(Node)));
    ASSERT_NE(n, nullptr);
    n->next = head;
    n->value = i;
    head = n;
  }
  ASSERT_EQ(pheap_set_root(h, "list", head), 0) << pheap_last_error();
  auto* zeros = static_cast<uint64_t*>(pheap_calloc(h, 512, 8));
  ASSERT_NE(zeros, nullptr);
  for (int i = 0; i < 512; ++i) ASSERT_EQ(zeros[i], 0u);
  ASSERT_EQ(pheap_set_root(h, "zeros", zeros), 0);
  void* big = pheap_aligned_alloc(h, 1 << 20, 3 << 20);
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(big) % (1 << 20), 0u);
  EXPECT_GE(pheap_usable_size(h, big), size_t{3} << 20);
  std::memset(big, 0x5c, 3 << 20);
  ASSERT_EQ(pheap_set_root(h, "big", big), 0);
  char* s = static_cast<char*>(pheap_malloc(h, 8));
  std::strcpy(s, "grow");
  s = static_cast<char*>(pheap_realloc(h, s, 100000));
  ASSERT_NE(s, nullptr);
  EXPECT_STREQ(s, "grow");
  ASSERT_EQ(pheap_set_root(h, "s", s), 0);
  int64_t e = pheap_commit(h);
  EXPECT_EQ(e, 1) << pheap_last_error();
  EXPECT_EQ(pheap_epoch(h), 1);
  EXPECT_EQ(pheap_of(head), h);
  EXPECT_EQ(pheap_of(big), h);
  EXPECT_LE(pheap_base(h), static_cast<void*>(head));
  ASSERT_EQ(pheap_close(h), 0) << pheap_last_error();

  h = pheap_open("capi", cfg.c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  EXPECT_GE(pheap_epoch(h), 1);  // close commits once more
  auto* n = static_cast<Node*>(pheap_root(h, "list"));
  ASSERT_EQ(n, head);  // same address
  for (uint64_t i = 1000; i-- > 0; n = n->next) {
    ASSERT_NE(n, nullptr);
    ASSERT_EQ(n->value, i);
  }
  EXPECT_EQ(n, nullptr);
  auto* b = static_cast<unsigned char*>(pheap_root(h, "big"));
  EXPECT_EQ(b[0], 0x5c);
  EXPECT_EQ(b[(3 << 20) - 1], 0x5c);
  EXPECT_STREQ(static_cast<char*>(pheap_root(h, "s")), "grow");
  // Clearing a root.
  ASSERT_EQ(pheap_set_root(h, "s", nullptr), 0);
  EXPECT_EQ(pheap_root(h, "s"), nullptr);
  pheap_free(h, s);
  ASSERT_EQ(pheap_close(h), 0);
}

TEST(CApi, UncommittedChangesDieWithTheProcess) {
  TempDir dir;
  std::string cfg = dir.config();
  pid_t child = fork();
  if (child == 0) {
    pheap* h = pheap_open("uncommitted", cfg.c_str());
    if (h == nullptr) _exit(1);
    auto* v = static_cast<uint64_t*>(pheap_malloc(h, 8));
    *v = 1;
    pheap_set_root(h, "v", v);
    if (pheap_commit(h) != 1) _exit(1);
    *v = 2;
    pheap_set_root(h, "w", pheap_malloc(h, 64));
    _exit(0);  // dies without a commit, as a crash would
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  pheap* h = pheap_open("uncommitted", cfg.c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  EXPECT_EQ(pheap_epoch(h), 1);
  auto* v = static_cast<uint64_t*>(pheap_root(h, "v"));
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(*v, 1u);
  EXPECT_EQ(pheap_root(h, "w"), nullptr);
  pheap_close(h);
}

// A child of fork() works on its copy of the heap while the parent's
// background commits go on: it frees and allocates blocks that give pages
// back (which never waits for a lock a parent's commit held at the fork),
// and its commits and its close are refused with an error, never a hang.
TEST(CApi, AForkedChildUsesItsCopyAndCannotCommit) {
  TempDir dir;
  const std::string cfg = dir.config() + ";commit_ms=1";
  pheap* h = pheap_open("forked", cfg.c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  constexpr size_t kBig = size_t{5} << 20;  // past the largest segment run: its pages go back on free
  constexpr int kBlocks = 4;
  char* big[kBlocks];
  for (char*& b : big) {
    b = static_cast<char*>(pheap_malloc(h, kBig));
    ASSERT_NE(b, nullptr) << pheap_last_error();
    std::memset(b, 0x5a, kBig);
  }
  std::atomic<bool> stop{false};
  std::thread writer([&] {  // keeps every cut busy
    for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) big[i % kBlocks][(i * 4096) % kBig] = 1;
  });
  int hung = 0, failed = 0;
  for (int i = 0; i < 200; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      pheap_free(h, big[i % kBlocks]);
      auto* z = static_cast<unsigned char*>(pheap_calloc(h, 1, kBig));
      if (z == nullptr) _exit(2);
      for (size_t o = 0; o < kBig; o += 512)
        if (z[o] != 0) _exit(3);
      if (pheap_commit(h) != -1 || !Says("fork")) _exit(4);
      if (pheap_close(h) != -1 || !Says("fork")) _exit(5);
      _exit(0);
    }
    ASSERT_GT(pid, 0);
    int status = 0;
    for (int ms = 0; ms < 10000 && waitpid(pid, &status, WNOHANG) == 0; ++ms) usleep(1000);
    if (kill(pid, 0) == 0 && waitpid(pid, &status, WNOHANG) == 0) {
      ++hung;
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (failed == 1 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) ADD_FAILURE() << "child status " << status;
  }
  stop = true;
  writer.join();
  EXPECT_EQ(hung, 0) << "children stuck for 10 s";
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(static_cast<unsigned char>(big[0][kBig - 1]), 0x5a) << "the parent's copy is its own";
  ASSERT_EQ(pheap_close(h), 0) << pheap_last_error();
}

// A child of fork() reads the heap as the parent sees it, although the
// parent reopened it and had not yet touched its pages (the child has no
// userfaultfd to fill them), and allocates although a parent thread
// allocated and freed at the fork (its locks are not caught held).
TEST(CApi, AForkedChildSeesPagesTheParentNeverTouched) {
  TempDir dir;
  constexpr size_t kBytes = size_t{8} << 20;
  {
    pheap* h = pheap_open("fork-lazy", dir.config().c_str());
    ASSERT_NE(h, nullptr) << pheap_last_error();
    auto* b = static_cast<uint64_t*>(pheap_malloc(h, kBytes));
    ASSERT_NE(b, nullptr) << pheap_last_error();
    for (size_t i = 0; i < kBytes / 8; ++i) b[i] = i * 7 + 1;
    ASSERT_EQ(pheap_set_root(h, "b", b), 0) << pheap_last_error();
    ASSERT_EQ(pheap_close(h), 0) << pheap_last_error();
  }
  pheap* h = pheap_open("fork-lazy", dir.config().c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  auto* b = static_cast<const uint64_t*>(pheap_root(h, "b"));
  ASSERT_NE(b, nullptr);
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    while (!stop.load(std::memory_order_relaxed)) pheap_free(h, pheap_malloc(h, 4096 + 64));
  });
  int bad = 0;
  for (int i = 0; i < 20; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      alarm(10);  // a lock caught held would hang the child
      for (size_t k = 0; k < kBytes / 8; k += 509)
        if (b[k] != k * 7 + 1) _exit(2);
      void* p = pheap_malloc(h, 4096 + 64);
      _exit(p == nullptr ? 3 : 0);
    }
    ASSERT_GT(pid, 0);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) && bad++ == 0) ADD_FAILURE() << "child status " << status;
  }
  stop = true;
  churn.join();
  EXPECT_EQ(bad, 0);
  ASSERT_EQ(pheap_close(h), 0) << pheap_last_error();
}

// A larger size grows the heap in place: its objects stay where they are,
// and blocks that only fit the larger region come from it. A crash during
// the first commit after growing (here: before any) leaves the heap as it
// was, and it grows again on the next open. A smaller size never shrinks it.
TEST(CApi, ALargerSizeGrowsTheHeap) {
  TempDir dir;
  const std::string small = dir.config("", "64M"), large = dir.config("", "192M");
  pheap* h = pheap_open("grow", small.c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  auto* v = static_cast<uint64_t*>(pheap_malloc(h, 8));
  *v = 7;
  ASSERT_EQ(pheap_set_root(h, "v", v), 0);
  EXPECT_EQ(pheap_malloc(h, size_t{96} << 20), nullptr) << "96 MiB do not fit 64 MiB";
  ASSERT_GE(pheap_commit(h), 1) << pheap_last_error();
  ASSERT_EQ(pheap_close(h), 0);

  pid_t child = fork();
  if (child == 0) {  // grows, writes, and dies before its first commit
    pheap* g = pheap_open("grow", large.c_str());
    if (g == nullptr) _exit(1);
    void* big = pheap_malloc(g, size_t{96} << 20);
    if (big == nullptr) _exit(2);
    std::memset(big, 1, size_t{96} << 20);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  h = pheap_open("grow", dir.config("", "").c_str());  // the recorded size: still 64 MiB
  ASSERT_NE(h, nullptr) << pheap_last_error();
  EXPECT_EQ(*static_cast<uint64_t*>(pheap_root(h, "v")), 7u);
  EXPECT_EQ(pheap_malloc(h, size_t{96} << 20), nullptr) << "the growth was never committed";
  ASSERT_EQ(pheap_close(h), 0);

  h = pheap_open("grow", large.c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  auto* big = static_cast<uint8_t*>(pheap_malloc(h, size_t{96} << 20));
  ASSERT_NE(big, nullptr) << pheap_last_error();
  std::memset(big, 0x3c, size_t{96} << 20);
  ASSERT_EQ(pheap_set_root(h, "big", big), 0);
  ASSERT_GE(pheap_commit(h), 2) << pheap_last_error();
  ASSERT_EQ(pheap_close(h), 0);

  h = pheap_open("grow", small.c_str());  // smaller: keeps 192M
  ASSERT_NE(h, nullptr) << pheap_last_error();
  EXPECT_EQ(*static_cast<uint64_t*>(pheap_root(h, "v")), 7u);
  auto* again = static_cast<uint8_t*>(pheap_root(h, "big"));
  ASSERT_EQ(again, big);
  EXPECT_EQ(again[0], 0x3c);
  EXPECT_EQ(again[(size_t{96} << 20) - 1], 0x3c);
  EXPECT_NE(pheap_malloc(h, size_t{64} << 20), nullptr) << "the grown region still has room";
  ASSERT_EQ(pheap_close(h), 0);
}

TEST(CApi, ConfigComesFromTheEnvironmentAndTheStringWins) {
  TempDir env_dir, str_dir;
  setenv("PHEAP_DIR", env_dir.path().c_str(), 1);
  setenv("PHEAP_SIZE", "64M", 1);
  pheap* h = pheap_open("envheap", nullptr);
  ASSERT_NE(h, nullptr) << pheap_last_error();
  pheap_close(h);
  EXPECT_TRUE(std::filesystem::exists(env_dir.path() + "/envheap"));
  std::string cfg = "dir=" + str_dir.path();
  h = pheap_open("strheap", cfg.c_str());
  unsetenv("PHEAP_DIR");
  unsetenv("PHEAP_SIZE");
  ASSERT_NE(h, nullptr) << pheap_last_error();
  pheap_close(h);
  EXPECT_TRUE(std::filesystem::exists(str_dir.path() + "/strheap"));
  EXPECT_FALSE(std::filesystem::exists(env_dir.path() + "/strheap"));
}

TEST(CApi, CommitMsCommitsInTheBackgroundUntilClose) {
  TempDir dir;
  std::string cfg = dir.config() + ";commit_ms=20";
  pheap* h = pheap_open("background", cfg.c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  ASSERT_NE(pheap_malloc(h, 64), nullptr);
  for (int i = 0; i < 500 && pheap_epoch(h) < 2; ++i) usleep(10000);
  EXPECT_GE(pheap_epoch(h), 2) << "no background commit within 5 s";
  ASSERT_EQ(pheap_close(h), 0);  // stops the committer
}

TEST(CApi, ErrorsSetErrnoAndSayWhy) {
  TempDir dir;
  errno = 0;
  EXPECT_EQ(pheap_open("bad/name", dir.config().c_str()), nullptr);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_TRUE(Says("name")) << pheap_last_error();
  EXPECT_EQ(pheap_open("x", "bogus=1"), nullptr);
  EXPECT_TRUE(Says("bogus")) << pheap_last_error();
  EXPECT_EQ(pheap_open("x", (dir.config() + ";size=0").c_str()), nullptr);
  EXPECT_TRUE(Says("size")) << pheap_last_error();

  std::string cfg = dir.config("", "16M");
  pheap* h = pheap_open("small", cfg.c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  errno = 0;
  EXPECT_EQ(pheap_malloc(h, size_t{1} << 30), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_TRUE(Says("size=")) << pheap_last_error();
  EXPECT_EQ(pheap_aligned_alloc(h, 3, 8), nullptr);
  EXPECT_EQ(errno, EINVAL);
  int outside = 0;
  EXPECT_EQ(pheap_set_root(h, "r", &outside), -1);
  EXPECT_TRUE(Says("not inside")) << pheap_last_error();
  EXPECT_EQ(pheap_set_root(h, "", pheap_malloc(h, 8)), -1);
  EXPECT_EQ(pheap_of(&outside), nullptr);
  EXPECT_EQ(pheap_default(), nullptr);
  pheap_close(h);
}

// A create that fails leaves nothing that shapes the next open: a heap
// too small for the allocator, then the same heap with room, which commits.
TEST(CApi, AFailedCreateLeavesNothingBehind) {
  TempDir dir;
  EXPECT_EQ(pheap_open("lifecycle", dir.config("", "1M").c_str()), nullptr);
  EXPECT_TRUE(Says("at least")) << pheap_last_error();
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/lifecycle"));
  pheap* h = pheap_open("lifecycle", dir.config("", "64M").c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  auto* p = static_cast<char*>(pheap_malloc(h, 64));
  ASSERT_NE(p, nullptr);
  std::strcpy(p, "kept");
  ASSERT_EQ(pheap_set_root(h, "p", p), 0) << pheap_last_error();
  EXPECT_EQ(pheap_commit(h), 1) << pheap_last_error();
  ASSERT_EQ(pheap_close(h), 0) << pheap_last_error();
  h = pheap_open("lifecycle", dir.config("", "").c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  EXPECT_STREQ(static_cast<char*>(pheap_root(h, "p")), "kept");
  EXPECT_EQ(pheap_close(h), 0) << pheap_last_error();
}

TEST(CApi, RootErrorsSetErrnoAndNameTheProblem) {
  TempDir dir;
  pheap* h = pheap_open("roots", dir.config("", "16M").c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  void* p = pheap_malloc(h, 8);
  errno = 0;
  EXPECT_EQ(pheap_set_root(h, "", p), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_TRUE(Says("root name is empty")) << pheap_last_error();
  const std::string longest(127, 'n'), too_long(128, 'n');
  EXPECT_EQ(pheap_set_root(h, longest.c_str(), p), 0) << pheap_last_error();
  EXPECT_EQ(pheap_root(h, longest.c_str()), p);
  errno = 0;
  EXPECT_EQ(pheap_set_root(h, too_long.c_str(), p), -1);
  EXPECT_EQ(errno, ENAMETOOLONG);
  EXPECT_TRUE(Says("is 128 bytes, longer than 127")) << pheap_last_error();
  errno = 0;
  EXPECT_EQ(pheap_root(h, too_long.c_str()), nullptr);
  EXPECT_EQ(errno, ENAMETOOLONG);
  // A type of any length is kept apart from one that differs only at its end.
  const std::string long_type(400, 't'), other_long_type = std::string(399, 't') + "u";
  EXPECT_EQ(pheap_set_root_typed(h, "t", p, long_type.c_str()), 0) << pheap_last_error();
  EXPECT_EQ(pheap_root_typed(h, "t", long_type.c_str()), p) << pheap_last_error();
  errno = 0;
  EXPECT_EQ(pheap_root_typed(h, "t", other_long_type.c_str()), nullptr);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_TRUE(Says("root 't' holds a")) << pheap_last_error();
  int outside = 0;
  errno = 0;
  EXPECT_EQ(pheap_set_root(h, "r", &outside), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_TRUE(Says("is not inside heap 'roots'")) << pheap_last_error();
  errno = 0;
  EXPECT_EQ(pheap_set_root(h, nullptr, p), -1);
  EXPECT_EQ(errno, EINVAL);
  pheap_close(h);
}

TEST(CApi, NoRoomNamesTheSizeAndTheAlignmentAsked) {
  TempDir dir;
  pheap* h = pheap_open("noroom", dir.config("", "16M").c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  errno = 0;
  EXPECT_EQ(pheap_aligned_alloc(h, size_t{1} << 40, 64), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_TRUE(Says("no room for 64 bytes aligned to 1099511627776 (region 16 MiB)")) << pheap_last_error();
  EXPECT_TRUE(Says("smaller alignment")) << pheap_last_error();
  errno = 0;
  EXPECT_EQ(pheap_aligned_alloc(h, 64, size_t{1} << 40), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_TRUE(Says("no room for 1099511627776 bytes aligned to 64 (region 16 MiB)")) << pheap_last_error();
  errno = 0;
  EXPECT_EQ(pheap_calloc(h, size_t{1} << 20, size_t{1} << 10), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_TRUE(Says("no room for 1073741824 bytes (region 16 MiB)")) << pheap_last_error();
  void* p = pheap_malloc(h, 8);
  errno = 0;
  EXPECT_EQ(pheap_realloc(h, p, size_t{1} << 40), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_TRUE(Says("no room for 1099511627776 bytes (region 16 MiB)")) << pheap_last_error();
  pheap_close(h);
}

// Roots can be listed (the callback may set roots, and stops the walk by
// returning non-zero) and freed by name; a close without a commit leaves
// the heap at its last durable epoch.
TEST(CApi, RootsListedFreedByNameAndACloseWithoutCommit) {
  TempDir dir;
  const std::string cfg = dir.config("", "16M");
  pheap* h = pheap_open("listed", cfg.c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  ASSERT_EQ(pheap_set_root_typed(h, "a", pheap_malloc(h, 8), "A"), 0);
  ASSERT_EQ(pheap_set_root(h, "b", pheap_malloc(h, 8)), 0);
  struct Seen {
    pheap* h;
    std::string names;
  } seen{h, ""};
  auto collect = [](const char* name, const char* type, void*, void* ctx) {
    auto* s = static_cast<Seen*>(ctx);
    s->names += std::string(name) + ":" + type + " ";
    return pheap_set_root(s->h, "c", pheap_malloc(s->h, 8));  // setting roots from inside the walk works
  };
  EXPECT_EQ(pheap_roots(h, collect, &seen), 0);
  EXPECT_EQ(seen.names, "a:A b: ");
  EXPECT_EQ(pheap_roots(
                h, [](const char*, const char*, void*, void*) { return 7; }, nullptr),
            7);
  ASSERT_GE(pheap_commit(h), 1) << pheap_last_error();
  EXPECT_EQ(pheap_free_root(h, "a"), 0) << pheap_last_error();
  EXPECT_EQ(pheap_root(h, "a"), nullptr);
  errno = 0;
  EXPECT_EQ(pheap_free_root(h, "a"), -1);
  EXPECT_EQ(errno, ENOENT);
  const int64_t durable = pheap_epoch(h);
  ASSERT_EQ(pheap_close_uncommitted(h), 0);
  h = pheap_open("listed", cfg.c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  EXPECT_EQ(pheap_epoch(h), durable);
  EXPECT_NE(pheap_root(h, "a"), nullptr) << "the free was never committed";
  ASSERT_EQ(pheap_close(h), 0);
}

// create=0 opens only a heap that exists, create=only makes only a new one;
// neither leaves a directory behind when it refuses.
TEST(CApi, CreateSaysWhetherAnOpenMayOrMustCreate) {
  TempDir dir;
  errno = 0;
  EXPECT_EQ(pheap_open("made", dir.config("create=0", "16M").c_str()), nullptr);
  EXPECT_EQ(errno, ENOENT) << pheap_last_error();
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/made"));
  pheap* h = pheap_open("made", dir.config("create=only", "16M").c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  ASSERT_EQ(pheap_close(h), 0);
  errno = 0;
  EXPECT_EQ(pheap_open("made", dir.config("create=only", "16M").c_str()), nullptr);
  EXPECT_EQ(errno, EEXIST) << pheap_last_error();
  EXPECT_TRUE(Says("create=only")) << pheap_last_error();
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/made")) << "a refused create removed the heap";
  h = pheap_open("made", dir.config("create=0", "").c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  ASSERT_EQ(pheap_close(h), 0);
  errno = 0;
  EXPECT_EQ(pheap_open("made", dir.config("create=sometimes").c_str()), nullptr);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_TRUE(Says("create='sometimes'")) << pheap_last_error();
}

TEST(CApi, RemoveDeletesAClosedHeapAndRefusesAnOpenOne) {
  TempDir dir;
  const std::string cfg = dir.config("", "16M");
  errno = 0;
  EXPECT_EQ(pheap_remove("gone", cfg.c_str()), -1);
  EXPECT_EQ(errno, ENOENT) << pheap_last_error();
  pheap* h = pheap_open("gone", cfg.c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  errno = 0;
  EXPECT_EQ(pheap_remove("gone", cfg.c_str()), -1);
  EXPECT_EQ(errno, EBUSY) << pheap_last_error();
  ASSERT_EQ(pheap_close(h), 0);
  EXPECT_EQ(pheap_remove("gone", cfg.c_str()), 0) << pheap_last_error();
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/gone"));
}

TEST(CApi, SpaceAllocatorCheckAndOpenHeaps) {
  TempDir dir;
  EXPECT_EQ(pheap_open_heaps(nullptr, 0), 0);
  pheap* h = pheap_open("space", dir.config("", "64M").c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  pheap_space before{};
  ASSERT_EQ(pheap_get_space(h, &before), 0);
  EXPECT_EQ(before.region, uint64_t{64} << 20);
  EXPECT_GT(before.capacity, uint64_t{32} << 20);
  EXPECT_LT(before.capacity, before.region);
  void* big = pheap_malloc(h, 8 << 20);
  ASSERT_NE(big, nullptr);
  pheap_space after{};
  ASSERT_EQ(pheap_get_space(h, &after), 0);
  EXPECT_GE(after.live, before.live + (8 << 20));
  EXPECT_EQ(after.capacity, before.capacity);
  EXPECT_EQ(pheap_check_allocator(h), 0) << pheap_last_error();
  pheap* open[2] = {nullptr, nullptr};
  EXPECT_EQ(pheap_open_heaps(open, 2), 1);
  EXPECT_EQ(open[0], h);
  pheap_free(h, big);
  ASSERT_EQ(pheap_close(h), 0);
  EXPECT_EQ(pheap_open_heaps(open, 2), 0);
}

TEST(CApi, CommitAsyncThenWait) {
  TempDir dir;
  pheap* h = pheap_open("async", dir.config().c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  auto* v = static_cast<uint64_t*>(pheap_malloc(h, 8));
  pheap_set_root(h, "v", v);
  int64_t last = 0;
  for (uint64_t i = 1; i <= 20; ++i) {
    *v = i;
    int64_t e = pheap_commit_async(h);
    ASSERT_GT(e, last) << pheap_last_error();
    last = e;
  }
  EXPECT_EQ(pheap_wait(h, last), last) << pheap_last_error();
  EXPECT_GE(pheap_epoch(h), last);
  pheap_close(h);
  h = pheap_open("async", dir.config().c_str());
  EXPECT_EQ(*static_cast<uint64_t*>(pheap_root(h, "v")), 20u);
  pheap_close(h);
}

// Opens heap `name` in a child: its exit code, or 128 + the signal that
// killed it; *error gets pheap_last_error() of a failed open.
int OpenInChild(const std::string& name, const std::string& cfg, std::string* error) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    pheap* h = pheap_open(name.c_str(), cfg.c_str());
    if (h != nullptr) _exit(0);
    const char* e = pheap_last_error();
    (void)!write(fds[1], e, std::strlen(e));
    _exit(1);
  }
  close(fds[1]);
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) error->append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

// A stored page the open itself reads (the superblock, the allocator's
// first metadata page) that fails its checksum, with no replica to read it
// from: the open fails naming the page and what to run, never SIGBUS.
TEST(CApi, DamagedPageReadAtOpenFailsWithAnErrorNotASignal) {
  constexpr uint64_t kMagic = 0x31424b4150454850ull;  // the superblock's first word
  for (const int which : {0, 1}) {
    SCOPED_TRACE(which == 0 ? "superblock" : "allocator metadata");
    TempDir dir;
    const std::string cfg = dir.config();
    const std::string snapshot = dir.path() + "/page";
    pid_t pid = fork();
    if (pid == 0) {  // writes, commits, records the metadata page as committed, dies
      pheap* h = pheap_open("damaged", cfg.c_str());
      if (h == nullptr) _exit(1);
      for (int i = 0; i < 100; ++i) pheap_set_root(h, "r", pheap_malloc(h, 64 + i));
      if (pheap_commit(h) < 1) _exit(2);
      std::ofstream(snapshot, std::ios::binary)
          .write(static_cast<const char*>(pheap_base(h)) + (256 << 10), 4096);  // the arena's first page
      _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    std::vector<char> meta(4096);
    std::ifstream(snapshot, std::ios::binary).read(meta.data(), 4096);
    const int flipped = pheaptest::DamageStoredCopies(dir.path(), [&](const char* page) {
      if (which == 1) return std::memcmp(page, meta.data(), 4096) == 0;
      uint64_t w;
      std::memcpy(&w, page, 8);
      return w == kMagic;
    });
    ASSERT_GE(flipped, 1) << "no stored copy of the page found";
    std::string error;
    EXPECT_EQ(OpenInChild("damaged", cfg, &error), 1) << "1: a failed open; 0: opened over a damaged page; "
                                                         "128+7: SIGBUS";
    EXPECT_NE(error.find("heap 'damaged' cannot be opened"), std::string::npos) << error;
    EXPECT_NE(error.find("pheap check damaged"), std::string::npos) << error;
    EXPECT_NE(error.find("checksum"), std::string::npos) << error;
  }
}

}  // namespace
