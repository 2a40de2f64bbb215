// The kernel probe picks a mode and the pager reports it; a forced mode the
// kernel lacks is kUnsupported naming what is missing.
#include "pager/kernel_probe.h"

#include <gtest/gtest.h>

#include "tests/pager/fake_store.h"

namespace pheap::testing {
namespace {

TEST(KernelProbe, ReportsAModeAndThePagerRunsIt) {
  const KernelFeatures& k = Pager::Probe();
  EXPECT_EQ(&k, &Pager::Probe());  // cached
  auto mode = ChooseMode(k, TrackingMode::kAuto);
  ASSERT_TRUE(mode.ok());
  EXPECT_NE(*mode, TrackingMode::kAuto);
  if (k.wp_async && k.pagemap_scan) {
    EXPECT_EQ(*mode, TrackingMode::kAsyncWp);
  }
  if (!k.userfaultfd) {
    EXPECT_EQ(*mode, TrackingMode::kMprotect);
  }
  std::printf("probe: userfaultfd=%d via_dev=%d wp=%d wp_async=%d pagemap_scan=%d poison=%d -> %s\n",
              k.userfaultfd, k.via_dev, k.wp, k.wp_async, k.pagemap_scan, k.poison, TrackingModeName(*mode));

  FakeStore store(ImageInfo{1, 0, 1, kTestBase, 1 << 20, 0});
  auto pager = Pager::Open(store.image(), &store, &store, PagerOptions{});
  ASSERT_TRUE(pager.ok()) << pager.status().ToString();
  EXPECT_EQ(pager.value()->mode(), *mode);
  EXPECT_EQ(pager.value()->stats().mode, *mode);
}

TEST(KernelProbe, UncachedProbeAgreesWithTheCache) {
  KernelFeatures k = ProbeKernel();
  EXPECT_EQ(k.userfaultfd, Pager::Probe().userfaultfd);
  EXPECT_EQ(k.wp_async, Pager::Probe().wp_async);
  EXPECT_EQ(k.pagemap_scan, Pager::Probe().pagemap_scan);
}

TEST(KernelProbe, ForcedModeTheKernelLacksIsUnsupported) {
  KernelFeatures old_kernel;
  old_kernel.userfaultfd = true;
  old_kernel.wp = true;  // 5.7-era: sync WP, no async WP, no PAGEMAP_SCAN
  auto r = ChooseMode(old_kernel, TrackingMode::kAsyncWp);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kUnsupported);
  EXPECT_NE(r.status().message().find("UFFD_FEATURE_WP_ASYNC"), std::string::npos) << r.status().message();
  EXPECT_EQ(*ChooseMode(old_kernel, TrackingMode::kAuto), TrackingMode::kSyncWp);
  EXPECT_EQ(*ChooseMode(old_kernel, TrackingMode::kSyncWp), TrackingMode::kSyncWp);

  KernelFeatures none;
  none.why_not = "userfaultfd(2) and /dev/userfaultfd both refused: Operation not permitted";
  r = ChooseMode(none, TrackingMode::kSyncWp);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("userfaultfd"), std::string::npos) << r.status().message();
  EXPECT_EQ(*ChooseMode(none, TrackingMode::kAuto), TrackingMode::kMprotect);
  EXPECT_EQ(*ChooseMode(none, TrackingMode::kMprotect), TrackingMode::kMprotect);
}

}  // namespace
}  // namespace pheap::testing
