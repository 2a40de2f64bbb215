// `pheap ls` and `pheap rm`: the heaps of a directory, and removing one.
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "store/page_store.h"
#include "tools/commands.h"
#include "tools/replicas.h"

namespace pheap::tools {
namespace {

// 40K, 12.5M, 3.2G: a size a person reads at a glance.
std::string Size(uint64_t bytes) {
  if (bytes < (uint64_t{1} << 20)) return fmt::format("{}K", (bytes + 1023) >> 10);
  if (bytes < (uint64_t{1} << 30)) return fmt::format("{:.1f}M", bytes / 1048576.0);
  return fmt::format("{:.1f}G", bytes / 1073741824.0);
}

}  // namespace

int Fail(const std::string& command, const Status& s, bool json, int exit_status) {
  if (json) {
    nlohmann::json j = {{"error", {{"code", s.CodeName()}, {"errno", s.err()}, {"message", s.ToString()}}}};
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print(stderr, "pheap {}: {}\n", command, s.ToString());
  }
  return exit_status;
}

int RunList(const std::string& dir, bool json) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    return Fail("ls", Status::NotFound(fmt::format("no directory {}: give the store directory with --dir", dir)), json);
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory(ec) && name[0] != '.' && PageStore::ValidateHeapName(name).ok()) names.push_back(name);
  }
  if (ec) return Fail("ls", Status::FromErrno(fmt::format("listing {}", dir), ec.value()), json);
  std::sort(names.begin(), names.end());

  nlohmann::json heaps = nlohmann::json::array();
  if (!json)
    fmt::print("{:<24} {:>8} {:>6} {:>10} {:>10} {:>10}  {}\n", "NAME", "EPOCH", "TERM", "SIZE", "LIVE", "ON DISK",
               "HOLDER");
  for (const std::string& name : names) {
    PageStoreOptions o;
    o.read_only = true;
    o.create_if_missing = false;
    auto store = PageStore::Open(dir, name, o);
    const long holder = PageStore::Holder(dir, name);
    const bool aside = PageStore::IsSetAside(name);
    if (!store.ok()) {
      if (json) {
        heaps.push_back({{"name", name}, {"set_aside", aside}, {"error", store.status().ToString()}});
        continue;
      }
      fmt::print("{:<24} unreadable{}: {}\n", name, aside ? " (set aside by recovery)" : "", store.status().ToString());
      continue;
    }
    const ImageInfo im = (*store)->image();
    const PageStoreStats st = (*store)->stats();
    if (json) {
      heaps.push_back({{"name", name},
                       {"set_aside", aside},
                       {"epoch", im.epoch},
                       {"term", im.term},
                       {"base", fmt::format("{:#x}", im.base)},
                       {"size", im.size},
                       {"live_bytes", st.live_pages * kPageSize},
                       {"bytes_on_disk", st.bytes_on_disk},
                       {"holder_pid", holder}});
      continue;
    }
    fmt::print("{:<24} {:>8} {:>6} {:>10} {:>10} {:>10}  {}{}\n", name, im.epoch, im.term, Size(im.size),
               Size(st.live_pages * kPageSize), Size(st.bytes_on_disk),
               holder > 0 ? fmt::format("pid {}", holder) : "-", aside ? "  (set aside by recovery)" : "");
  }
  if (json) fmt::print("{}\n", nlohmann::json{{"dir", dir}, {"heaps", heaps}}.dump(2));
  return 0;
}

int RunRemove(const std::string& dir, const std::string& name, bool on_replicas, const ReplicaArgs& replicas,
              bool json) {
  const std::string heap_dir = (std::filesystem::path(dir) / name).string();
  std::error_code ec;
  const bool have_local = std::filesystem::is_directory(heap_dir, ec);
  nlohmann::json removed = nlohmann::json::array();
  if (on_replicas) {
    // The replicas go first, while the local record still names them; a
    // store held open here is refused before any replica is touched.
    if (const long holder = PageStore::Holder(dir, name); holder > 0)
      return Fail("rm", Status::Busy(fmt::format("heap '{}' is open in process {}: close it first", name, holder)),
                  json);
    auto set = ReplicaSetOf(replicas, have_local ? heap_dir : "");
    if (!set.ok()) return Fail("rm", set.status(), json);
    if (set->replication.peers.empty())
      return Fail("rm",
                  Status::InvalidArgument(fmt::format(
                      "heap '{}' records no replicas: name them with --peers, or drop --on-replicas", name)),
                  json);
    auto client = DialReplicas(name, *set, /*claim=*/true);
    if (!client.ok()) return Fail("rm", client.status().Annotate(fmt::format("removing heap '{}'", name)), json);
    const std::vector<Status> done = (*client)->RemoveHeap();
    bool all = true;
    for (size_t i = 0; i < done.size(); ++i) {
      const std::string& ep = (*client)->replicas()[i];
      all &= done[i].ok();
      removed.push_back({{"replica", ep}, {"removed", done[i].ok()}, {"error", done[i].ok() ? "" : done[i].message()}});
      if (!json) fmt::print("{}: {}\n", ep, done[i].ok() ? "removed" : "NOT removed: " + done[i].ToString());
    }
    if (!all) {
      if (json) fmt::print("{}\n", nlohmann::json{{"heap", name}, {"replicas", removed}, {"local", false}}.dump(2));
      else fmt::print(stderr, "pheap rm: heap '{}' stays on the replicas above and here; run it again\n", name);
      return 1;
    }
  }
  if (have_local || !on_replicas)
    if (Status s = PageStore::Remove(dir, name); !s.ok()) return Fail("rm", s, json);
  if (json) {
    nlohmann::json j{{"removed", name}, {"dir", dir}, {"local", have_local || !on_replicas}};
    if (on_replicas) j["replicas"] = removed;
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  fmt::print("heap '{}' removed from {}{}\n", name, have_local || !on_replicas ? dir : "",
             on_replicas ? (have_local ? " and its replicas" : "its replicas") : "");
  return 0;
}

}  // namespace pheap::tools
