// A heap four times its memory cgroup's limit: the worker
// (memory_limit_worker.cc) runs in a new cgroup with memory.max (v2) or
// memory.limit_in_bytes (v1, where only v1 has the memory controller) of
// kLimitMiB, and must finish, every page checked, without being OOM-killed.
// Exits 77 (a skip) where no such cgroup can be made (not root, no memory
// controller). Each tracking mode named runs in a cgroup of its own.
//
// usage: heap_memory_limit_test PATH-OF-memory_limit_worker MODE...
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/support/test_util.h"

namespace {

constexpr int kLimitMiB = 32, kHeapMiB = 128;

bool Put(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.flush();
  return f.good();
}

std::string Get(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// The number after `key ` in a "key value" per line file, or -1.
long Field(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  for (std::string k; in >> k;) {
    long v;
    if (!(in >> v)) break;
    if (k == key) return v;
  }
  return -1;
}

struct Group {
  std::string dir;     // the new cgroup
  std::string procs;   // where a pid goes to join it
  std::string events;  // where the OOM kills are counted
  std::string why_not;
};

// A child group of this process's own, limited to kLimitMiB.
Group MakeGroup() {
  Group g;
  const std::string name = "/pheap-memory-limit-" + std::to_string(getpid());
  std::istringstream in(Get("/proc/self/cgroup"));
  std::string v2_path, v1_path;
  for (std::string line; std::getline(in, line);) {
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string ctl = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (line.compare(0, a, "0") == 0 && ctl.empty()) v2_path = path;
    std::istringstream list(ctl);
    for (std::string c; std::getline(list, c, ',');)
      if (c == "memory") v1_path = path;
  }
  const std::string limit = std::to_string(kLimitMiB << 20);
  for (const char* root : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}) {
    if (v2_path.empty()) break;
    const std::string parent = root + (v2_path == "/" ? std::string() : v2_path);
    if (Get(parent + "/cgroup.controllers").find("memory") == std::string::npos) continue;
    Put(parent + "/cgroup.subtree_control", "+memory");  // may be on already
    const std::string dir = parent + name;
    if (mkdir(dir.c_str(), 0755) != 0) continue;
    if (Put(dir + "/memory.max", limit) && Put(dir + "/memory.swap.max", "0") | true) {
      if (Get(dir + "/memory.max").find(limit) == 0)
        return Group{dir, dir + "/cgroup.procs", dir + "/memory.events", ""};
    }
    rmdir(dir.c_str());
  }
  if (!v1_path.empty()) {
    const std::string dir = "/sys/fs/cgroup/memory" + (v1_path == "/" ? std::string() : v1_path) + name;
    if (mkdir(dir.c_str(), 0755) == 0) {
      if (Put(dir + "/memory.limit_in_bytes", limit))
        return Group{dir, dir + "/cgroup.procs", dir + "/memory.oom_control", ""};
      rmdir(dir.c_str());
    }
    g.why_not = "cannot make a v1 memory cgroup under /sys/fs/cgroup/memory" + v1_path + ": " + std::strerror(errno);
  } else {
    g.why_not = "no memory controller: neither cgroup v2 nor v1 offers one to this process";
  }
  return g;
}

// Runs the worker under PHEAP_TRACKING=mode in a new limited group; 0 if
// it finished with every page checked and no OOM kill, 1 if not, 77 if no
// group can be made.
int RunMode(const char* worker, const char* mode) {
  Group g = MakeGroup();
  if (g.dir.empty()) {
    std::printf("skipped: %s\n", g.why_not.c_str());
    return 77;
  }
  pheaptest::TempDir dir;
  pid_t pid = fork();
  if (pid == 0) {
    if (!Put(g.procs, "0")) _exit(3);  // this process joins the group
    setenv("PHEAP_TRACKING", mode, 1);
    execl(worker, worker, dir.path().c_str(), std::to_string(kHeapMiB).c_str(), static_cast<char*>(nullptr));
    _exit(4);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  const long oom_kills = Field(Get(g.events), "oom_kill");
  const std::string peak =
      Get(g.dir + (g.procs.find("memory/") != std::string::npos ? "/memory.max_usage_in_bytes" : "/memory.peak"));
  rmdir(g.dir.c_str());
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
