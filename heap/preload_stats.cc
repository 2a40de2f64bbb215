#include "heap/preload_stats.h"

#include <fmt/format.h>

#include "heap/stored_image.h"

namespace pheap {

Result<PreloadStats> ReadPreloadStats(PageStore& store) {
  auto image = StoredImage::Open(store);
  if (!image.ok()) return image.status();
  auto ptr = (*image)->Root(kPreloadStatsRoot);
  if (!ptr.ok()) return ptr.status();
  PreloadStats s;
  Status st = (*image)->Read(*ptr, &s, sizeof(s));
  if (!st.ok()) return st.Annotate(fmt::format("root '{}' = {:#x}", kPreloadStatsRoot, *ptr));
  if (s.magic != kPreloadStatsMagic || s.version != 1)
    return Status::Corruption(
        fmt::format("root '{}' points at something else (magic {:#x})", kPreloadStatsRoot, s.magic));
  s.program[sizeof(s.program) - 1] = '\0';
  return s;
}

}  // namespace pheap
