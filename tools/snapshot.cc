// `pheap snapshot`: a new heap from a durable epoch of another, read from
// its store without its lock, so a writer running in another process keeps
// committing meanwhile (heap/snapshot.h).
#include "tools/commands.h"

#include <fmt/format.h>

#include "heap/snapshot.h"

namespace pheap::tools {

int RunSnapshot(const std::string& dir, const std::string& name, const std::string& dest, const std::string& dest_dir,
                uint64_t epoch) {
  const std::string to = dest_dir.empty() ? dir : dest_dir;
  auto made = SnapshotHeap(dir, name, epoch, to, dest);
  if (!made.ok()) {
    fmt::print(stderr, "pheap snapshot: {}\n", made.status().ToString());
    return 1;
  }
  fmt::print("heap '{}' in {}: heap '{}' as of epoch {}\n", dest, to, name, made->epoch);
  return 0;
}

}  // namespace pheap::tools
