#include "tools/replicas.h"

#include <fmt/format.h>

#include "base/config.h"
#include "replication/curve_auth.h"

namespace pheap::tools {

Result<ReplicationRecord> ReplicaSetOf(const ReplicaArgs& args, const std::string& heap_dir) {
  if (!args.peers.empty()) {
    auto c = ResolveReplication(SplitList(args.peers), args.replicas, 0);
    if (!c.ok()) return c.status();
    return ReplicationRecord{*c, args.keys};
  }
  if (!heap_dir.empty()) {
    auto rec = ReadReplicationRecord(heap_dir);
    if (!rec.ok()) return rec.status();
    if (*rec) return **rec;
  }
  return ReplicationRecord{};
}

Result<std::unique_ptr<ReplicaClient>> DialReplicas(const std::string& name, const ReplicationRecord& r, bool claim) {
  ReplicaClientOptions ro;
  ro.replication = r.replication;
  ro.claim = claim;
  ro.timeout = std::chrono::milliseconds(3000);
  if (!r.keys_dir.empty()) {
    auto keys = LoadClientKeys(r.keys_dir);
    if (!keys.ok()) return keys.status().Annotate("reading the CURVE keys");
    ro.keys = std::move(*keys);
  } else {
    for (const auto& ep : r.replication.peers)
      if (!IsLoopbackEndpoint(ep))
        return Status::InvalidArgument(
            fmt::format("peer {} is not on loopback: give the heap's key directory with --keys", ep));
  }
  return ReplicaClient::Open(name, ro);
}

}  // namespace pheap::tools
