#include "base/cgroup.h"

#include <fcntl.h>

#include <cstdlib>
#include <sstream>

#include "base/os.h"

namespace pheap {
namespace {

// v1 reports "no limit" as the largest page-aligned long; anything this
// large is no limit either.
constexpr uint64_t kNoLimit = uint64_t{1} << 62;

std::string ReadSmall(const std::string& path) {
  int fd = os().open(path.c_str(), O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return "";
  char buf[4096];
  ssize_t n = os().pread(fd, buf, sizeof(buf) - 1, 0);
  os().close(fd);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

// The value of a limit file, 0 for none ("max", absent, unreadable).
uint64_t ReadLimit(const std::string& path) {
  const std::string s = ReadSmall(path);
  if (s.empty() || s.compare(0, 3, "max") == 0) return 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (end == s.c_str() || v == 0 || v >= kNoLimit) return 0;
  return v;
}

// The smallest limit of `file` in `dir` and in each ancestor up to `root`.
uint64_t SmallestUpTo(const std::string& root, std::string rel, const char* file) {
  uint64_t best = 0;
  for (;;) {
    while (!rel.empty() && rel.back() == '/') rel.pop_back();
    const uint64_t v = ReadLimit(root + rel + "/" + file);
    if (v != 0 && (best == 0 || v < best)) best = v;
    if (rel.empty()) return best;
    const size_t slash = rel.rfind('/');
    rel.resize(slash == std::string::npos ? 0 : slash);
  }
}

}  // namespace

uint64_t MemoryCgroupLimit(const std::string& proc_cgroup, const CgroupRoots& roots) {
  const std::string text = proc_cgroup.empty() ? ReadSmall("/proc/self/cgroup") : proc_cgroup;
  std::istringstream in(text);
  std::string line;
  uint64_t best = 0;
  auto take = [&best](uint64_t v) {
    if (v != 0 && (best == 0 || v < best)) best = v;
  };
  // Lines are ID:CONTROLLERS:PATH; v2's is 0::PATH, v1's memory line names
  // "memory" among its controllers.
  while (std::getline(in, line)) {
    const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (line.compare(0, a, "0") == 0 && controllers.empty()) {
      take(SmallestUpTo(roots.v2, path, "memory.max"));
      take(SmallestUpTo(roots.v2 + "/unified", path, "memory.max"));
      continue;
    }
    std::istringstream list(controllers);
    for (std::string c; std::getline(list, c, ',');)
      if (c == "memory") take(SmallestUpTo(roots.v1_memory, path, "memory.limit_in_bytes"));
  }
  return best;
}

}  // namespace pheap
