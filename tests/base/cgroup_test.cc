// MemoryCgroupLimit over a made-up hierarchy: the smallest limit of the
// group and its ancestors, under v2 and v1, and "none" spelt every way.
#include "base/cgroup.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/support/test_util.h"

namespace pheap {
namespace {

void Put(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

TEST(MemoryCgroupLimit, V2TakesTheSmallestOfTheGroupAndItsAncestors) {
  pheaptest::TempDir d;
  CgroupRoots roots{d.path() + "/v2", d.path() + "/v1"};
  Put(d.path() + "/v2/a/memory.max", "67108864\n");
  Put(d.path() + "/v2/a/b/memory.max", "max\n");
  EXPECT_EQ(MemoryCgroupLimit("0::/a/b\n", roots), uint64_t{64} << 20);
  Put(d.path() + "/v2/a/b/memory.max", "33554432\n");
  EXPECT_EQ(MemoryCgroupLimit("0::/a/b\n", roots), uint64_t{32} << 20);
  EXPECT_EQ(MemoryCgroupLimit("0::/\n", roots), 0u);  // the root has no limit file
}

TEST(MemoryCgroupLimit, V1ReadsTheMemoryHierarchyOnly) {
  pheaptest::TempDir d;
  CgroupRoots roots{d.path() + "/v2", d.path() + "/v1"};
  Put(d.path() + "/v1/job/memory.limit_in_bytes", "9223372036854771712\n");  // v1's "none"
  const std::string text = "5:cpu,cpuacct:/other\n4:memory:/job\n0::/\n";
  EXPECT_EQ(MemoryCgroupLimit(text, roots), 0u);
  Put(d.path() + "/v1/job/memory.limit_in_bytes", "16777216\n");
  EXPECT_EQ(MemoryCgroupLimit(text, roots), uint64_t{16} << 20);
  Put(d.path() + "/v1/other/memory.limit_in_bytes", "4096\n");  // not the memory line's group
  EXPECT_EQ(MemoryCgroupLimit(text, roots), uint64_t{16} << 20);
}

TEST(MemoryCgroupLimit, NoneWhereNothingIsMounted) {
  CgroupRoots roots{"/nonexistent-v2", "/nonexistent-v1"};
  EXPECT_EQ(MemoryCgroupLimit("0::/x\n3:memory:/y\n", roots), 0u);
  EXPECT_EQ(MemoryCgroupLimit("garbage", roots), 0u);
}

}  // namespace
}  // namespace pheap
