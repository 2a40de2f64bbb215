// A heap whose store fills its disk (a 20 MiB tmpfs), through the C API:
// every commit returns within a bound with ENOSPC named, however many failed
// epochs are held (past staging_max too), synchronous and asynchronous;
// once space is freed the next commit succeeds, and a reopen shows what it
// acknowledged.
//
// The heap runs in a child process, in its own mount namespace (so the
// tmpfs goes with it), with an alarm around each commit: a commit that
// never returns kills the child instead of hanging the suite.
#include <pheap/pheap.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/test_util.h"

namespace {

using pheaptest::TempDir;

constexpr unsigned kCommitBoundS = 60;  // a commit on a full disk takes well under a second
constexpr int kSkip = 77;
constexpr size_t kBlock = size_t{1} << 20;
constexpr int kMaxBlocks = 40;
constexpr int kFailuresWanted = 6;  // > staging_max (2 MiB) of failed 1 MiB epochs

struct Table {
  int count;
  unsigned char* blocks[kMaxBlocks];
};

[[noreturn, gnu::format(printf, 2, 3)]] void Fail(int line, const char* fmt, ...) {
  std::fprintf(stderr, "full_disk_test.cc:%d: ", line);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, " (errno %d, pheap_last_error: %s)\n", errno, pheap_last_error());
  _exit(1);
}
#define CHILD_CHECK(cond, ...) \
  do {                         \
    if (!(cond)) Fail(__LINE__, __VA_ARGS__); \
  } while (0)

// One commit, by pheap_commit or by pheap_commit_async and pheap_wait,
// under an alarm.
int64_t Commit(pheap* h, bool async) {
  alarm(kCommitBoundS);
  int64_t e = async ? pheap_commit_async(h) : pheap_commit(h);
  if (async && e >= 0) e = pheap_wait(h, e);
  const int err = errno;
  alarm(0);
  errno = err;
  return e;
}

bool WriteFile(const std::string& path, size_t bytes) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return false;
  std::vector<char> buf(kBlock, 'b');
  bool ok = true;
  for (size_t done = 0; ok && done < bytes; done += buf.size()) ok = write(fd, buf.data(), buf.size()) == ssize_t(buf.size());
  return close(fd) == 0 && ok;
}

void CheckBlocks(const Table* t, int count) {
  CHILD_CHECK(t->count == count, "the table holds %d blocks, not %d", t->count, count);
  for (int i = 0; i < count; ++i) {
    const unsigned char* b = t->blocks[i];
    CHILD_CHECK(b != nullptr, "block %d is missing", i);
    for (size_t j = 0; j < kBlock; j += 512)
      CHILD_CHECK(b[j] == static_cast<unsigned char>(i + 1), "block %d byte %zu is %d", i, j, b[j]);
  }
}

[[noreturn]] void Child(const std::string& dir) {
  if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
      mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=20m") != 0) {
    std::fprintf(stderr, "cannot mount a tmpfs on %s: %s (needs root)\n", dir.c_str(), std::strerror(errno));
    _exit(kSkip);
  }
  // Ballast leaves the heap about 10 MiB; deleting it frees room for every
  // failed epoch and the commit after them.
  const std::string ballast = dir + "/ballast";
  CHILD_CHECK(WriteFile(ballast, 10 * kBlock), "writing %s", ballast.c_str());
  const std::string cfg = "dir=" + dir + ";size=256M;staging_max=2M";
  pheap* h = pheap_open("full", cfg.c_str());
  CHILD_CHECK(h != nullptr, "opening the heap");
  auto* t = static_cast<Table*>(pheap_calloc(h, 1, sizeof(Table)));
  CHILD_CHECK(t != nullptr && pheap_set_root(h, "table", t) == 0, "the table");
  CHILD_CHECK(Commit(h, false) > 0, "the first commit");

  int failures = 0;
  while (failures < kFailuresWanted) {
    const int i = t->count;
    CHILD_CHECK(i < kMaxBlocks, "%d MiB committed and no ENOSPC", i);
    auto* b = static_cast<unsigned char*>(pheap_malloc(h, kBlock));
    CHILD_CHECK(b != nullptr, "block %d", i);
    std::memset(b, i + 1, kBlock);
    t->blocks[i] = b;
    t->count = i + 1;
    const bool async = i % 2 == 1;
    errno = 0;
    const int64_t e = Commit(h, async);
    if (e > 0) {
      CHILD_CHECK(failures == 0, "commit of block %d succeeded after %d failed on a full disk", i, failures);
      continue;
    }
    ++failures;
    CHILD_CHECK(errno == ENOSPC, "%s commit of block %d: errno is not ENOSPC", async ? "async" : "sync", i);
    CHILD_CHECK(std::strstr(pheap_last_error(), "No space left on device") != nullptr,
                "%s commit of block %d: the error does not name ENOSPC", async ? "async" : "sync", i);
  }
  std::fprintf(stderr, "%d blocks written, the last %d in failed commits; the last said: %s\n", t->count, failures,
               pheap_last_error());

  CHILD_CHECK(unlink(ballast.c_str()) == 0, "deleting %s", ballast.c_str());
  const int64_t e = Commit(h, false);
  CHILD_CHECK(e > 0, "the commit after space was freed");
  CHILD_CHECK(pheap_epoch(h) == e, "the durable epoch is %lld, not %lld", static_cast<long long>(pheap_epoch(h)),
              static_cast<long long>(e));
  const int count = t->count;
  CHILD_CHECK(pheap_close(h) == 0, "closing");

  h = pheap_open("full", cfg.c_str());
  CHILD_CHECK(h != nullptr, "reopening");
  CHILD_CHECK(pheap_epoch(h) >= e, "reopened at epoch %lld", static_cast<long long>(pheap_epoch(h)));
  t = static_cast<Table*>(pheap_root(h, "table"));
  CHILD_CHECK(t != nullptr, "the table root after reopening");
  CheckBlocks(t, count);
  CHILD_CHECK(pheap_close(h) == 0, "closing after reopening");
  _exit(0);
}

TEST(FullDisk, CommitsReturnEnospcAndSucceedOnceSpaceIsFreed) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  pid_t child = fork();
  ASSERT_GE(child, 0) << std::strerror(errno);
  if (child == 0) Child(dir.path());
  // The child bounds each commit itself; this bounds the rest generously.
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(4);
  pid_t r = 0;
  while ((r = waitpid(child, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (r == 0) {
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    FAIL() << "the child did not finish within 4 minutes";
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == kSkip) GTEST_SKIP() << "cannot mount a tmpfs (needs root)";
  ASSERT_FALSE(WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
      << "a commit did not return within " << kCommitBoundS << " s (see the child's output above)";
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child failed: see its output above";
}

}  // namespace
