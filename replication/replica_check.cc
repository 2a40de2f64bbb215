// The replica client for the pheap command: reads from one replica at a
// time and repairs that wait for the replica's answer (pheap check), and
// the removal of a heap from its replicas (pheap rm).
#include <fmt/format.h>

#include "replication/peer_channel.h"
#include "replication/replica_client.h"
#include "replication/replica_internal.h"
#include "replication/wire.h"

namespace pheap {

Status ReplicaClient::ReadRunFrom(size_t i, Pgno first, uint32_t count, uint8_t* out, uint64_t* present,
                                  Pgno* damaged) {
  if (i >= replicas_.size())
    return Status::InvalidArgument(fmt::format("heap '{}' has {} replicas, not {}", name_, replicas_.size(), i + 1));
  const Term want_term = durable_term_.load(std::memory_order_acquire);
  return FetchFrom(*replicas_[i], durable_.load(std::memory_order_acquire), want_term, first, count, out, present,
                   damaged);
}

Status ReplicaClient::RepairOn(size_t i, Pgno pgno, const uint8_t* page) {
  if (i >= replicas_.size())
    return Status::InvalidArgument(fmt::format("heap '{}' has {} replicas, not {}", name_, replicas_.size(), i + 1));
  Replica& r = *replicas_[i];
  auto taken = TakeFetchChannel(r);
  if (!taken.ok()) return taken.status();
  std::unique_ptr<PeerChannel> ch = std::move(*taken);
  const Pgno one[1] = {pgno};
  auto reply =
      ch->Call(wire::EncodeRepair(ch->NextRequestId(), heap_id_, durable_.load(), one, page), options_.fetch_timeout);
  if (!reply.ok()) return reply.status().Annotate(fmt::format("repairing page {} on replica {}", pgno, r.endpoint));
  Status result;
  const Received& m = **reply;
  if (Status e = ErrorStatus(m); !e.ok()) {
    result = e.Annotate(fmt::format("replica {} refused the repair of page {}", r.endpoint, pgno));
  } else if (const auto* ack = std::get_if<wire::RepairAckBody>(&m.msg.body); ack == nullptr) {
    result = Status::InvalidArgument(
        fmt::format("replica {} answered REPAIR with {}", r.endpoint, wire::TypeName(m.msg.header.type)));
  } else if (ack->repaired != 1) {
    result = Status::InvalidArgument(
        fmt::format("replica {} holds another version of page {} than the durable image's: it was not rewritten",
                    r.endpoint, pgno));
  }
  std::lock_guard l(r.fetch_mu);
  r.fetch_pool.push_back(std::move(ch));
  return result;
}

std::vector<Status> ReplicaClient::RemoveHeap() {
  std::vector<Status> out;
  for (auto& rp : replicas_) {
    Replica& r = *rp;
    auto taken = TakeFetchChannel(r);
    if (!taken.ok()) {
      out.push_back(taken.status());
      continue;
    }
    std::unique_ptr<PeerChannel> ch = std::move(*taken);
    auto reply = ch->Call(wire::EncodeDrop(ch->NextRequestId(), heap_id_, term_, claimant_), options_.timeout);
    if (!reply.ok()) {
      out.push_back(reply.status().Annotate(fmt::format("replica {}", r.endpoint)));
      continue;
    }
    const Received& m = **reply;
    if (Status e = ErrorStatus(m); !e.ok()) out.push_back(e.Annotate(fmt::format("replica {}", r.endpoint)));
    else if (m.msg.type != wire::Type::kDropAck)
      out.push_back(Status::InvalidArgument(
          fmt::format("replica {} answered DROP with {}", r.endpoint, wire::TypeName(m.msg.header.type))));
    else out.push_back(Status::Ok());
  }
  return out;
}

}  // namespace pheap
