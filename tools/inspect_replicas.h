// The replicas section of `pheap inspect`: for each peer of a heap's
// replica set, whether it answers, the (term, epoch) it holds, its lag
// behind the durable image, the bytes it stores and its last error.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/page_io.h"
#include "replication/replica_client.h"
#include "store/page_store.h"
#include "tools/commands.h"

namespace pheap::tools {

// Asks each replica of heap `name` (the set `args` names, else the one
// `heap_dir` records) as a reader that claims no term. `durable` is the
// newest image known (the local store's; a newer one a replica holds wins).
// `retained`, the local store's retained epochs (null: none here), gives
// each replica's lag in bytes: the pages of the epochs it lacks, which
// catching up ships (null where one of them is not retained).
// Returns the JSON array `replicas` (empty when the heap has no peers), and
// prints it as text unless `json`. Unreachable peers are rows, not errors;
// an error is a replica set that cannot be read or resolved.
// `dialed`, if not null, is a reader of that set already connected (its
// HELLO answers are the rows); else one is dialed here.
Result<nlohmann::json> InspectReplicas(const std::string& name, const ReplicaArgs& args, const std::string& heap_dir,
                                       ImageInfo durable, const std::vector<EpochRecord>* retained, bool json,
                                       ReplicaClient* dialed = nullptr);

}  // namespace pheap::tools
