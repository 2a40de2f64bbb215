#include "tools/inspect_replicas.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "replication/peer_server.h"
#include "tools/replicas.h"

namespace pheap::tools {

namespace {

// The bytes of the pages the epochs (from, to] wrote, if `retained` holds
// every one of them.
std::optional<uint64_t> LagBytes(const std::vector<EpochRecord>* retained, Epoch from, Epoch to) {
  if (from >= to) return 0;
  if (retained == nullptr) return std::nullopt;
  uint64_t bytes = 0, seen = 0;
  for (const EpochRecord& e : *retained) {
    if (e.epoch <= from || e.epoch > to) continue;
    bytes += e.pages * kPageSize;
    ++seen;
  }
  if (seen != to - from) return std::nullopt;
  return bytes;
}

}  // namespace

Result<nlohmann::json> InspectReplicas(const std::string& name, const ReplicaArgs& args, const std::string& heap_dir,
                                       ImageInfo durable, const std::vector<EpochRecord>* retained, bool json,
                                       ReplicaClient* dialed) {
  nlohmann::json rows = nlohmann::json::array();
  auto set = ReplicaSetOf(args, heap_dir);
  if (!set.ok()) return set.status();
  if (set->replication.peers.empty()) return rows;
  std::unique_ptr<ReplicaClient> own;
  if (dialed == nullptr) {
    auto client = DialReplicas(name, *set, /*claim=*/false);
    if (!client.ok()) {
      // Too few answered (k - W + 1 needed): still say which peers did not.
      for (const std::string& ep : set->replication.peers)
        rows.push_back({{"endpoint", ep}, {"reachable", false}, {"error", client.status().message()}});
      if (!json) fmt::print("replicas      none readable: {}\n", client.status().message());
      return rows;
    }
    own = std::move(client.value());
    dialed = own.get();
  }
  const ImageInfo theirs = dialed->image();
  if (NewerImage(theirs, durable)) durable = theirs;
  if (!json)
    fmt::print("replicas      {} (durable epoch {}, term {})\n", DescribeReplication(set->replication), durable.epoch,
               durable.term);
  for (const ReplicaState& r : dialed->state()) {
    nlohmann::json row = {{"endpoint", r.endpoint}, {"reachable", r.answered}};
    std::string error;
    uint64_t bytes = 0, live = 0;
    if (r.answered) {
      row["epoch"] = r.durable;
      row["term"] = r.image_term;
      row["lag_epochs"] = durable.epoch > r.durable ? durable.epoch - r.durable : 0;
      const auto lag_bytes = LagBytes(retained, r.durable, durable.epoch);
      row["lag_bytes"] = lag_bytes ? nlohmann::json(*lag_bytes) : nlohmann::json(nullptr);
      row["being_installed"] = r.installing;
      // What it stores: its STATUS names every heap it holds.
      auto st = QueryPeerStatus(r.endpoint, set->keys_dir, std::chrono::milliseconds(2000));
      if (st.ok()) {
        auto it = std::find_if(st->heaps.begin(), st->heaps.end(), [&](const auto& h) { return h.name == name; });
        if (it != st->heaps.end()) {
          bytes = it->status.bytes_on_disk;
          live = it->status.live_pages;
          error = it->error;
        }
      } else {
        error = st.status().message();
      }
      row["bytes_on_disk"] = bytes;
      row["live_pages"] = live;
    } else {
      error = "did not answer HELLO";
    }
    row["error"] = error;
    rows.push_back(row);
    if (json) continue;
    if (!r.answered) {
      fmt::print("  {:<40} not reachable\n", r.endpoint);
      continue;
    }
    const std::string lag_bytes =
        row["lag_bytes"].is_null() ? "" : fmt::format(" ({:.1f} MiB)", row["lag_bytes"].get<uint64_t>() / 1048576.0);
    fmt::print("  {:<40} epoch {} (term {}), {} behind{}, {:.1f} MiB stored{}{}\n", r.endpoint, r.durable, r.image_term,
               row["lag_epochs"].get<uint64_t>(), lag_bytes, bytes / 1048576.0, r.installing ? ", being installed" : "",
               error.empty() ? "" : ", last error: " + error);
  }
  return rows;
}

}  // namespace pheap::tools
