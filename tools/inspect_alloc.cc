// `pheap inspect`'s allocator section: StoredAllocatorFacts as JSON and text.
#include <fmt/format.h>

#include "tools/inspect_sections.h"

namespace pheap::tools {
namespace {

std::string Bytes(uint64_t n) {
  if (n < 1024) return fmt::format("{} B", n);
  if (n < (uint64_t{1} << 20)) return fmt::format("{:.1f} KiB", n / 1024.0);
  if (n < (uint64_t{1} << 30)) return fmt::format("{:.1f} MiB", n / 1048576.0);
  return fmt::format("{:.2f} GiB", n / 1073741824.0);
}

}  // namespace

nlohmann::json AllocatorJson(const StoredAllocatorFacts& f) {
  nlohmann::json classes = nlohmann::json::array();
  for (const StoredSizeClass& c : f.size_classes)
    classes.push_back({{"bin", c.bin},
                       {"block_size", c.block_size},
                       {"heap_pages", c.heap_pages},
                       {"live_blocks", c.live_blocks},
                       {"free_blocks", c.free_blocks}});
  return {
      {"arena_base", fmt::format("{:#x}", f.arena_base)},
      {"arena_bytes", f.arena_bytes},
      {"segments", f.segments},
      {"segments_used", f.segments_used},
      {"live_bytes", f.live_bytes},
      {"live_blocks", f.live_blocks},
      {"free_bytes", f.free_bytes},
      {"untouched_bytes", f.untouched_bytes},
      {"used_bytes", f.used_bytes},
      {"reserved_bytes", f.reserved_bytes},
      {"fragmentation", f.fragmentation},
      {"largest_free_run", {{"bytes", f.largest_free_run}, {"address", fmt::format("{:#x}", f.largest_free_address)}}},
      {"size_classes", std::move(classes)},
      {"large", {{"objects", f.large_objects}, {"bytes", f.large_bytes}}},
      {"huge", {{"objects", f.huge_objects}, {"bytes", f.huge_bytes}}},
      {"thread_heaps",
       {{"incarnation", f.incarnation},
        {"live", f.thread_heaps_live},
        {"earlier", f.thread_heaps_earlier},
        {"owned_pages", f.owned_pages},
        {"abandoned_pages", f.abandoned_pages},
        {"reclaimed_pages", f.reclaimed_pages}}},
      {"damaged_descs", f.damaged_descs},
      {"corruptions", f.corruptions}};
}

void PrintAllocator(const StoredAllocatorFacts& f) {
  fmt::print("allocator     {} live in {} blocks, {} free; {} in use ({:.2f}x live), {} of {} segments used\n",
             Bytes(f.live_bytes), f.live_blocks, Bytes(f.free_bytes), Bytes(f.used_bytes), f.fragmentation,
             f.segments_used, f.segments);
  fmt::print("  largest free run {} at {:#x}\n", Bytes(f.largest_free_run), f.largest_free_address);
  fmt::print("  large objects {} ({}), huge objects {} ({})\n", f.large_objects, Bytes(f.large_bytes), f.huge_objects,
             Bytes(f.huge_bytes));
  fmt::print(
      "  thread heaps  {} of incarnation {}, {} left by earlier ones; heap pages {} owned, {} abandoned, "
      "{} ever reclaimed\n",
      f.thread_heaps_live, f.incarnation, f.thread_heaps_earlier, f.owned_pages, f.abandoned_pages, f.reclaimed_pages);
  if (f.damaged_descs != 0 || f.corruptions != 0)
    fmt::print("  damaged heap page descs {}, corruptions reported {}\n", f.damaged_descs, f.corruptions);
  if (f.size_classes.empty()) return;
  fmt::print("  {:>10}  {:>10}  {:>10}  {:>10}  {:>12}\n", "block size", "heap pages", "live", "free", "live bytes");
  for (const StoredSizeClass& c : f.size_classes)
    fmt::print("  {:>10}  {:>10}  {:>10}  {:>10}  {:>12}\n", c.block_size, c.heap_pages, c.live_blocks, c.free_blocks,
               Bytes(c.live_blocks * c.block_size));
}

}  // namespace pheap::tools
