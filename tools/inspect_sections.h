// Sections of `pheap inspect` beyond the store's own facts: the allocator
// (text and JSON) and the HTML page map. They render what heap/ (the
// stored image), store/ (each page's epoch) and base/ (the writer's
// residency) report; none of them reads the allocator's bytes itself.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "heap/stored_image.h"
#include "store/page_store.h"

namespace pheap::tools {

// The "allocator" object of `pheap inspect --json` (keys in docs/inspect.md).
nlohmann::json AllocatorJson(const StoredAllocatorFacts& f);
// The allocator's lines of `pheap inspect`.
void PrintAllocator(const StoredAllocatorFacts& f);

// Writes `file`: one self-contained HTML page drawing every page of the
// image below its high-water mark (what it holds, the epoch that wrote it,
// whether the writer `holder` (0: none) has it in memory). Returns the
// number of pages drawn.
// REQUIRES: `image` reads `store`'s durable image.
Result<uint64_t> WritePageMapHtml(const std::string& file, const std::string& heap, PageStore& store,
                                  const StoredImage& image, long holder);

}  // namespace pheap::tools
