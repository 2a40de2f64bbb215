#include "replication/placement.h"

#include <xxhash.h>

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace pheap {

Result<ReplicationConfig> ResolveReplication(std::vector<std::string> peers, uint64_t replicas,
                                             uint64_t quorum) {
  if (peers.empty()) return Status::InvalidArgument("config peers is empty: list at least one peer endpoint");
  std::set<std::string> seen;
  for (const auto& p : peers)
    if (!seen.insert(p).second)
      return Status::InvalidArgument(fmt::format("config peers lists '{}' twice: give each peer once", p));
  const uint64_t n = peers.size();
  const uint64_t k = replicas != 0 ? replicas : std::min<uint64_t>(3, n);
  if (k > n)
    return Status::InvalidArgument(
        fmt::format("config replicas={} but only {} peers are listed: lower replicas or add peers", k, n));
  const uint64_t w = quorum != 0 ? quorum : Majority(static_cast<uint32_t>(k));
  if (w > k)
    return Status::InvalidArgument(
        fmt::format("config quorum={} exceeds replicas={}: a quorum is at most the replica count", w, k));
  ReplicationConfig c;
  c.peers = std::move(peers);
  c.replicas = static_cast<uint32_t>(k);
  c.quorum = static_cast<uint32_t>(w);
  return c;
}

const std::vector<std::string>& ReplicationConfigKeys() {
  static const std::vector<std::string> kKeys = {"peers", "replicas", "quorum"};
  return kKeys;
}

Result<ReplicationConfig> ReplicationFromConfig(const Config& config) {
  auto replicas = config.GetU64("replicas", 0);
  if (!replicas.ok()) return replicas.status();
  auto quorum = config.GetU64("quorum", 0);
  if (!quorum.ok()) return quorum.status();
  auto peers = SplitList(config.GetOr("peers", ""));
  if (peers.empty()) {
    if (config.Get("replicas") || config.Get("quorum"))
      return Status::InvalidArgument("config replicas/quorum given without peers: list the peers (peers=EP,EP,...)");
    return ReplicationConfig{};
  }
  if (config.Get("replicas") && *replicas == 0)
    return Status::InvalidArgument("config replicas=0: a replicated heap needs at least one replica");
  if (config.Get("quorum") && *quorum == 0)
    return Status::InvalidArgument("config quorum=0: an epoch needs at least one acknowledgement");
  return ResolveReplication(std::move(peers), *replicas, *quorum);
}

uint64_t RendezvousScore(HeapId heap, const std::string& endpoint) {
  return XXH3_64bits_withSeed(endpoint.data(), endpoint.size(), heap);
}

std::vector<std::string> ReplicaSet(HeapId heap, const std::vector<std::string>& peers, uint32_t k) {
  std::vector<std::pair<uint64_t, const std::string*>> scored;
  scored.reserve(peers.size());
  for (const auto& p : peers) scored.emplace_back(RendezvousScore(heap, p), &p);
  const size_t take = std::min<size_t>(k, scored.size());
  std::partial_sort(scored.begin(), scored.begin() + take, scored.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : *a.second < *b.second;
  });
  std::vector<std::string> out;
  out.reserve(take);
  for (size_t i = 0; i < take; ++i) out.push_back(*scored[i].second);
  return out;
}

}  // namespace pheap
