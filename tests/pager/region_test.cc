// The fixed-address region: a collision is kBusy naming the range and the
// fix; bad geometry is refused before anything is mapped.
#include "pager/region.h"

#include <sys/mman.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "base/types.h"
#include "tests/pager/fake_store.h"

namespace pheap::testing {
namespace {

TEST(Region, MapsAtItsBase) {
  auto r = Region::Map(kTestBase, 1 << 20);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->data(), reinterpret_cast<uint8_t*>(kTestBase));
  r->data()[(1 << 20) - 1] = 1;
  EXPECT_TRUE(r->contains(kTestBase));
  EXPECT_FALSE(r->contains(kTestBase + (1 << 20)));
}

TEST(Region, CollisionIsBusyAndNamesTheRange) {
  void* other = mmap(reinterpret_cast<void*>(kTestBase + 0x10000), kPageSize, PROT_READ,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  ASSERT_NE(other, MAP_FAILED);
  auto r = Region::Map(kTestBase, 1 << 20);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kBusy);
  const std::string& m = r.status().message();
  EXPECT_NE(m.find(fmt::format("[{:#x}, {:#x})", kTestBase, kTestBase + (1 << 20))), std::string::npos) << m;
  EXPECT_NE(m.find("base="), std::string::npos) << m;
  munmap(other, kPageSize);
  // Nothing of the failed attempt stays mapped: the range is free again.
  EXPECT_TRUE(Region::Map(kTestBase, 1 << 20).ok());
}

TEST(Region, RefusesBadGeometry) {
  EXPECT_EQ(Region::Map(kTestBase, 0).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(Region::Map(kTestBase, 100).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(Region::Map(kTestBase + 1, kPageSize).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(Region::Map(kUserAddressLimit - kPageSize, 2 * kPageSize).status().code(),
            Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace pheap::testing
