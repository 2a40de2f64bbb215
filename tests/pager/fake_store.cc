#include "tests/pager/fake_store.h"

#include "pager/kernel_probe.h"

namespace pheap::testing {

std::vector<TrackingMode> SupportedModes() {
  std::vector<TrackingMode> out;
  for (TrackingMode m : {TrackingMode::kAsyncWp, TrackingMode::kSyncWp, TrackingMode::kMprotect,
                         TrackingMode::kAsyncWpUser, TrackingMode::kHybridWp})
    if (ChooseMode(CachedKernelFeatures(), m).ok()) out.push_back(m);
  return out;
}

std::string ModeTestName(TrackingMode m) {
  std::string n = TrackingModeName(m);
  std::erase(n, '-');
  return n;
}

}  // namespace pheap::testing
