// Placement: which peers hold a heap, and how many must acknowledge an epoch.
//
// A heap's replica set is the k peers with the highest rendezvous score
// XXH3-64(endpoint, seed = heap id). Every client computes the same set from
// the same peer list, without coordination; removing a peer moves only the
// heaps it held (each to the next peer in its own order), and adding one
// takes over only the heaps for which it now scores in the top k.
//
// Configuration (base/config.h keys):
//   peers=EP,EP,...  ZeroMQ endpoints of the peers (order does not matter)
//   replicas=k       replica set size; default min(3, #peers)
//   quorum=W         COMMIT_ACKs that make an epoch durable; default k/2 + 1
// Opening the heap (learning its newest durable epoch, and for a writer
// claiming a term) needs k - W + 1 replicas: any k - W + 1 and any W of the
// k replicas share one (docs/design.md, "The quorum rule"). A small W makes
// commits need fewer replicas and opens more: W = 1 opens only with every
// replica answering, W = k with any one. Every client of a heap must use
// the same k and W.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/config.h"
#include "base/status.h"
#include "base/types.h"

namespace pheap {

struct ReplicationConfig {
  std::vector<std::string> peers;
  uint32_t replicas = 0;  // k
  uint32_t quorum = 0;    // W
};

// Fills in the defaults (0 means "default") and checks the rest: at least
// one peer, no endpoint twice, 1 <= k <= #peers, 1 <= W <= k. Errors name
// the key and the bound it broke.
Result<ReplicationConfig> ResolveReplication(std::vector<std::string> peers, uint64_t replicas,
                                             uint64_t quorum);

// The config keys read below.
const std::vector<std::string>& ReplicationConfigKeys();
// Reads peers, replicas, quorum. No peers configured: ok with an empty
// peers list (the heap is not replicated); replicas or quorum without peers
// is an error.
Result<ReplicationConfig> ReplicationFromConfig(const Config& config);

// The rendezvous score of `endpoint` for `heap`.
uint64_t RendezvousScore(HeapId heap, const std::string& endpoint);

// The `k` peers of `peers` with the highest scores for `heap`, highest
// first (ties, which need equal 64-bit hashes, go to the smaller endpoint).
// REQUIRES: k <= peers.size().
std::vector<std::string> ReplicaSet(HeapId heap, const std::vector<std::string>& peers, uint32_t k);

inline uint32_t Majority(uint32_t k) { return k / 2 + 1; }

// The replicas an open must hear from, and a writer's claim be granted by,
// with k replicas and write quorum W (1 <= W <= k): k - W + 1, the fewest
// that share a replica with every W of them. So the open sees every epoch
// W replicas acknowledged, and a claim fences every older writer out of W.
inline uint32_t ClaimQuorum(uint32_t k, uint32_t w) { return k - w + 1; }

}  // namespace pheap
