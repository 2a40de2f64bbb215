// `pheap compact`: compacts a heap's store now. It takes the store's lock
// as a writer does, so a heap open in a running process is refused, naming
// its pid: that process compacts its store in the background itself.
#include "tools/commands.h"

#include <fmt/format.h>

#include "heap/engine.h"
#include "store/page_store.h"

namespace pheap::tools {

int RunCompact(const std::string& dir, const std::string& name, const std::string& retain) {
  PageStoreOptions o;
  o.create_if_missing = false;
  if (!retain.empty()) {
    auto r = Engine::ParseRetain(retain);
    if (!r.ok()) {
      fmt::print(stderr, "pheap compact: {}\n", r.status().ToString());
      return 1;
    }
    o.retain_epochs = r->first;
    o.retain_ns = r->second;
  }
  PageStoreStats before, after;
  {
    auto store = PageStore::Open(dir, name, o);
    if (!store.ok()) {
      fmt::print(stderr, "pheap compact: {}\n", store.status().ToString());
      if (store.status().code() == Status::Code::kBusy)
        fmt::print(stderr, "pheap compact: a heap in use compacts itself in the background (config compact=on)\n");
      return 1;
    }
    before = (*store)->stats();
    if (Status s = (*store)->Compact(); !s.ok()) {
      fmt::print(stderr, "pheap compact: heap '{}': {}\n", name, s.ToString());
      return 1;
    }
  }
  // Read after the store closed: the session file it began is gone then.
  o.read_only = true;
  auto store = PageStore::Open(dir, name, o);
  if (!store.ok()) {
    fmt::print(stderr, "pheap compact: reopening to check: {}\n", store.status().ToString());
    return 1;
  }
  after = (*store)->stats();
  fmt::print("heap '{}': {} log files, {:.2f} MiB -> {} log files, {:.2f} MiB ({} live pages, {:.2f} MiB)\n", name,
             before.log_files - 1, before.file_bytes / 1048576.0, after.log_files, after.file_bytes / 1048576.0,
             after.live_pages, after.live_pages * kPageSize / 1048576.0);
  return 0;
}

}  // namespace pheap::tools
