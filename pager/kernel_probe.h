// What the running kernel offers the pager, and which tracking mode follows.
// The build's headers say nothing about the kernel the program runs on, so
// every feature is tried for real: a userfaultfd is opened, UFFDIO_API asked
// for its features, a scratch mapping registered, PAGEMAP_SCAN called.
#pragma once

#include "base/status.h"
#include "base/types.h"
#include "pager/pager.h"

namespace pheap {

// Probes now, through pheap::os(); does not touch the cache.
KernelFeatures ProbeKernel();

// The probe of this process, taken on first use. Thread-safe.
const KernelFeatures& CachedKernelFeatures();

// Whether async write-protect registers on a private mapping of a regular
// file (Linux 6.7+ allows it in WP-only mode for any memory), so that stored
// pages can be mapped into the region instead of copied. Tried once per
// process on a page of the running executable, on first use. Thread-safe.
bool CachedWpAsyncOnFiles();

// The mode to run: kAuto picks async-wp, then sync-wp, then async-wp-user
// (only a user-mode-only userfaultfd), then mprotect. A
// forced mode the kernel lacks is kUnsupported naming what is missing.
Result<TrackingMode> ChooseMode(const KernelFeatures& k, TrackingMode requested);

}  // namespace pheap
