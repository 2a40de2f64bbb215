#include "base/types.h"

#include <cstring>
#include <initializer_list>

namespace pheap {

const char* TrackingModeName(TrackingMode m) {
  switch (m) {
    case TrackingMode::kAuto: return "auto";
    case TrackingMode::kAsyncWp: return "async-wp";
    case TrackingMode::kSyncWp: return "sync-wp";
    case TrackingMode::kMprotect: return "mprotect";
    case TrackingMode::kAsyncWpUser: return "async-wp-user";
    case TrackingMode::kHybridWp: return "hybrid-wp";
  }
  return "?";
}

bool ParseTrackingMode(const char* s, TrackingMode* out) {
  for (TrackingMode m : {TrackingMode::kAuto, TrackingMode::kAsyncWp, TrackingMode::kSyncWp, TrackingMode::kMprotect,
                         TrackingMode::kAsyncWpUser, TrackingMode::kHybridWp}) {
    if (std::strcmp(s, TrackingModeName(m)) == 0) { *out = m; return true; }
  }
  return false;
}

}  // namespace pheap
