// The replicas a `pheap` command reaches: named on its command line, or
// those the heap records in its directory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"
#include "heap/replication_record.h"
#include "replication/replica_client.h"
#include "tools/commands.h"

namespace pheap::tools {

// The set `args` names, if it names peers, else what `heap_dir` records
// (REPLICATION); no peers when neither names any (heap_dir may be empty:
// no local store).
Result<ReplicationRecord> ReplicaSetOf(const ReplicaArgs& args, const std::string& heap_dir);

// Opens heap `name` on the replica set `r`: as a reader (claims no term,
// never disturbs a running writer) or, with `claim`, as a writer that
// fences every older one. Peers off loopback need keys.
Result<std::unique_ptr<ReplicaClient>> DialReplicas(const std::string& name, const ReplicationRecord& r, bool claim);

}  // namespace pheap::tools
