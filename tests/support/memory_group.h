// A child memory cgroup with a limit, for the tests and benchmarks that
// run a program under one: cgroup v2 (memory.max) where the process's
// group offers the memory controller, else v1 (memory.limit_in_bytes).
// Needs root; where none can be made, MakeMemoryGroup says why.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace pheaptest {

inline bool PutFile(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.flush();
  return f.good();
}

inline std::string GetFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// The number after `key ` in a "key value" per line file, or -1.
inline long FileField(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  for (std::string k; in >> k;) {
    long v;
    if (!(in >> v)) break;
    if (k == key) return v;
  }
  return -1;
}

struct MemoryGroup {
  std::string dir;     // the new cgroup; empty if none could be made
  std::string procs;   // where a pid goes to join it
  std::string events;  // where its OOM kills are counted (oom_kill)
  std::string peak;    // its peak usage in bytes
  std::string why_not;
  // Writes "0" to procs: the calling process joins the group.
  bool Join() const { return PutFile(procs, "0"); }
  long OomKills() const { return FileField(GetFile(events), "oom_kill"); }
  // Removes the group. REQUIRES: no process in it.
  void Remove() const { rmdir(dir.c_str()); }
};

// A child group of this process's own, named after `tag` and the pid,
// limited to `limit` bytes.
inline MemoryGroup MakeMemoryGroup(const std::string& tag, uint64_t limit_bytes) {
  MemoryGroup g;
  const std::string name = "/pheap-" + tag + "-" + std::to_string(getpid());
  std::istringstream in(GetFile("/proc/self/cgroup"));
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
  const std::string limit = std::to_string(limit_bytes);
  for (const char* root : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}) {
    if (v2_path.empty()) break;
    const std::string parent = root + (v2_path == "/" ? std::string() : v2_path);
    if (GetFile(parent + "/cgroup.controllers").find("memory") == std::string::npos) continue;
    PutFile(parent + "/cgroup.subtree_control", "+memory");  // may be on already
    const std::string dir = parent + name;
    if (mkdir(dir.c_str(), 0755) != 0) continue;
    PutFile(dir + "/memory.swap.max", "0");
    if (PutFile(dir + "/memory.max", limit) && GetFile(dir + "/memory.max").find(limit) == 0)
      return MemoryGroup{dir, dir + "/cgroup.procs", dir + "/memory.events", dir + "/memory.peak", ""};
    rmdir(dir.c_str());
  }
  if (!v1_path.empty()) {
    const std::string dir = "/sys/fs/cgroup/memory" + (v1_path == "/" ? std::string() : v1_path) + name;
    if (mkdir(dir.c_str(), 0755) == 0) {
      if (PutFile(dir + "/memory.limit_in_bytes", limit))
        return MemoryGroup{dir, dir + "/cgroup.procs", dir + "/memory.oom_control", dir + "/memory.max_usage_in_bytes",
                           ""};
      rmdir(dir.c_str());
    }
    g.why_not = "cannot make a v1 memory cgroup under /sys/fs/cgroup/memory" + v1_path + ": " + std::strerror(errno);
  } else {
    g.why_not = "no memory controller: neither cgroup v2 nor v1 offers one to this process";
  }
  return g;
}

}  // namespace pheaptest
