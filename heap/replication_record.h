// The replication settings a heap records in its directory, in the file
// REPLICATION (format: docs/store-format.md), so that the heap stays
// replicated on the same peers when an open names none, and a move to other
// peers is a deliberate step (config replication=change). A heap that has
// never been opened with peers has no such file.
#pragma once

#include <optional>
#include <string>

#include "base/status.h"
#include "replication/placement.h"

namespace pheap {

inline constexpr const char* kReplicationFileName = "REPLICATION";

struct ReplicationRecord {
  ReplicationConfig replication;  // resolved: peers non-empty, replicas and quorum set
  std::string keys_dir;           // empty: no keys (loopback peers)
};

// Reads heap_dir/REPLICATION. nullopt when there is none. Errors name the
// file and the line that is not understood, and say to fix or remove it.
Result<std::optional<ReplicationRecord>> ReadReplicationRecord(const std::string& heap_dir);
// Replaces heap_dir/REPLICATION in one step: a temporary file written and
// fsynced, renamed over it, then the directory fsynced. A crash leaves the
// old record or the new one (and at most a REPLICATION.tmp, overwritten by
// the next write).
Status WriteReplicationRecord(const std::string& heap_dir, const ReplicationRecord& r);
// Removes heap_dir/REPLICATION (durably); none there is not an error.
Status RemoveReplicationRecord(const std::string& heap_dir);

// Whether a and b name the same peers (in any order), replicas and quorum.
bool SameReplicaSet(const ReplicationConfig& a, const ReplicationConfig& b);
// "peers=A,B,C replicas=3 quorum=2", or "no peers" when there are none.
std::string DescribeReplication(const ReplicationConfig& c);

}  // namespace pheap
