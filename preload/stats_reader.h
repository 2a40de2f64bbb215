// Reads a heap's preload statistics record (preload_stats.h) from its store
// without mapping the region: the root directory in the superblock pages,
// then the page(s) the root points at.
#pragma once

#include "base/status.h"
#include "preload/preload_stats.h"
#include "store/page_store.h"

namespace pheap {

// The record as of the store's durable image. NotFound if the heap has no
// such root (it never ran under the preload library); Corruption if the
// root points outside the region or at bytes that are not a record.
Result<PreloadStats> ReadPreloadStats(PageStore& store);

}  // namespace pheap
