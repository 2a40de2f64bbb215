// A heap four times its memory cgroup's limit: the worker
// (memory_limit_worker.cc) runs in a new cgroup with memory.max (v2) or
// memory.limit_in_bytes (v1, where only v1 has the memory controller) of
// kLimitMiB, and must finish, every page checked, without being OOM-killed.
// Exits 77 (a skip) where no such cgroup can be made (not root, no memory
// controller). Each tracking mode named runs in a cgroup of its own.
//
// usage: heap_memory_limit_test PATH-OF-memory_limit_worker MODE...
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "tests/support/memory_group.h"
#include "tests/support/test_util.h"

namespace {

constexpr int kLimitMiB = 32, kHeapMiB = 128;

// Runs the worker under PHEAP_TRACKING=mode in a new limited group; 0 if
// it finished with every page checked and no OOM kill, 1 if not, 77 if no
// group can be made.
int RunMode(const char* worker, const char* mode) {
  const pheaptest::MemoryGroup g = pheaptest::MakeMemoryGroup("memory-limit", uint64_t{kLimitMiB} << 20);
  if (g.dir.empty()) {
    std::printf("skipped: %s\n", g.why_not.c_str());
    return 77;
  }
  pheaptest::TempDir dir;
  pid_t pid = fork();
  if (pid == 0) {
    if (!g.Join()) _exit(3);
    setenv("PHEAP_TRACKING", mode, 1);
    execl(worker, worker, dir.path().c_str(), std::to_string(kHeapMiB).c_str(), static_cast<char*>(nullptr));
    _exit(4);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  const long oom_kills = g.OomKills();
  const std::string peak = pheaptest::GetFile(g.peak);
  g.Remove();
  std::printf("%s: cgroup %s, limit %d MiB, heap %d MiB: worker status %d, %ld OOM kills, peak %s\n", mode,
              g.dir.c_str(), kLimitMiB, kHeapMiB, status, oom_kills, peak.c_str());
  if (WIFSIGNALED(status)) {
    std::printf("FAIL (%s): the worker died of signal %d%s\n", mode, WTERMSIG(status),
                WTERMSIG(status) == SIGKILL ? " (OOM-killed?)" : "");
    return 1;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::printf("FAIL (%s): the worker exited with %d\n", mode, WEXITSTATUS(status));
    return 1;
  }
  if (oom_kills > 0) {
    std::printf("FAIL (%s): %ld OOM kills in the group\n", mode, oom_kills);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: heap_memory_limit_test PATH-OF-memory_limit_worker MODE...\n");
    return 2;
  }
  int failed = 0;
  for (int i = 2; i < argc; ++i) {
    const int r = RunMode(argv[1], argv[i]);
    if (r == 77) return 77;
    failed += r;
  }
  return failed == 0 ? 0 : 1;
}
