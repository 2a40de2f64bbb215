// Without userfaultfd (the syscall refused, /dev/userfaultfd absent: an Os
// that says so), the pager falls back to mprotect tracking and loads the
// stored image eagerly; a forced userfaultfd mode is refused.
#include <fcntl.h>

#include <cstring>

#include <gtest/gtest.h>

#include "base/os.h"
#include "pager/pager.h"
#include "tests/pager/fake_store.h"

namespace pheap::testing {
namespace {

class NoUserfaultfdOs : public Os {
 public:
  int userfaultfd(int) override { ++refusals; return -ENOSYS; }
  int open(const char* path, int flags, mode_t mode) override {
    if (std::strcmp(path, "/dev/userfaultfd") == 0) { ++refusals; return -ENOENT; }
    return Os::open(path, flags, mode);
  }
  int refusals = 0;
};

class NoUserfaultfd : public ::testing::Test {
 protected:
  void SetUp() override {
    (void)Pager::Probe();  // the real probe, before the kernel is taken away
    SetOsForTesting(&os_);
  }
  void TearDown() override { SetOsForTesting(nullptr); }
  NoUserfaultfdOs os_;
  FakeStore store_{ImageInfo{1, 3, 1, kTestBase, uint64_t{16} << 20, 0}};
};

TEST_F(NoUserfaultfd, FallsBackToMprotectWithTheImageLoaded) {
  PHEAP_SKIP_IF_TSAN();
  for (Pgno p = 0; p < 40; ++p) store_.PutPage(p, static_cast<uint8_t>(p + 1));
  store_.PutPage(2000, 0xEE);
  auto r = Pager::Open(store_.image(), &store_, &store_, PagerOptions{});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Pager& pager = *r.value();
  EXPECT_EQ(pager.mode(), TrackingMode::kMprotect);
  EXPECT_GT(os_.refusals, 0);
  auto* base = static_cast<uint8_t*>(pager.base());
  for (Pgno p = 0; p < 40; ++p) ASSERT_EQ(base[p * kPageSize + 99], p + 1) << p;
  EXPECT_EQ(base[2000 * kPageSize], 0xEE);
  EXPECT_EQ(base[1000 * kPageSize], 0);
  // Loading is not writing: nothing is dirty until the program writes.
  base[5 * kPageSize] = 0x55;
  base[3000 * kPageSize] = 0x56;
  auto e = pager.Commit();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(*e, 4u);
  EXPECT_EQ(store_.LastPages(), (std::vector<Pgno>{5, 3000}));
  EXPECT_EQ(store_.Read(5)[0], 0x55);
  EXPECT_EQ(store_.Read(5)[1], 6);
  EXPECT_EQ(store_.contract_error(), "");
}

TEST_F(NoUserfaultfd, ForcedUserfaultfdModeIsUnsupported) {
  store_.PutPage(0, 1);
  for (TrackingMode m : {TrackingMode::kAsyncWp, TrackingMode::kSyncWp}) {
    PagerOptions o;
    o.mode = m;
    auto r = Pager::Open(store_.image(), &store_, &store_, o);
    ASSERT_FALSE(r.ok()) << TrackingModeName(m);
    EXPECT_EQ(r.status().code(), Status::Code::kUnsupported);
    if (m == TrackingMode::kSyncWp ? Pager::Probe().wp : Pager::Probe().wp_async) {
      // The kernel has the mode: it is refused at open, for want of a userfaultfd.
      EXPECT_NE(r.status().message().find("userfaultfd"), std::string::npos) << r.status().message();
    }
  }
}

}  // namespace
}  // namespace pheap::testing
