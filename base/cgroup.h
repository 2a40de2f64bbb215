// The memory limit of the process's cgroup, the default of a heap's memory
// budget (config memory_max). Read from /proc/self/cgroup: under cgroup v2
// the `memory.max` of the process's group and of every ancestor (the
// smallest holds), under v1 `memory.limit_in_bytes` of the memory
// hierarchy's group and its ancestors.
#pragma once

#include <cstdint>
#include <string>

namespace pheap {

// Where the hierarchies are mounted; the defaults are the usual places.
struct CgroupRoots {
  std::string v2 = "/sys/fs/cgroup";  // also tried: v2 + "/unified"
  std::string v1_memory = "/sys/fs/cgroup/memory";
};

// The smallest memory limit set on the group of this process or one of its
// ancestors, in bytes; 0 when none is set or none can be read (no cgroup
// file system, "max", v1's "no limit" of about 2^63).
// `proc_cgroup` is the text of /proc/self/cgroup, read when empty.
uint64_t MemoryCgroupLimit(const std::string& proc_cgroup = "", const CgroupRoots& roots = {});

}  // namespace pheap
