// Sections of `pheap inspect` beyond the store's own facts: the allocator
// (text and JSON). They render what heap/ (the stored image) reports;
// none of them reads the allocator's bytes itself.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "heap/stored_image.h"

namespace pheap::tools {

// The "allocator" object of `pheap inspect --json` (keys in docs/inspect.md).
nlohmann::json AllocatorJson(const StoredAllocatorFacts& f);
// The allocator's lines of `pheap inspect`.
void PrintAllocator(const StoredAllocatorFacts& f);

}  // namespace pheap::tools
