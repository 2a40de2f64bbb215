// The replica client as a PageSource: demand fetches (FETCH) from the
// replicas, on connections of their own, checked page by page.
#include <xxhash.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "base/log.h"
#include "base/page_hash.h"
#include "replication/replica_client.h"
#include "replication/replica_internal.h"
#include "replication/wire.h"

namespace pheap {

namespace {

// A replica whose fetch failed is asked last for this long.
constexpr int64_t kAvoidMs = 5000;
constexpr Pgno kNoPage = ~Pgno{0};

}  // namespace

Status ReplicaClient::ReadRun(Pgno first, uint32_t count, uint8_t* out, uint64_t* present) {
  // The term first: Persist stores it after the epoch, so a term this new
  // comes with its epoch (an older term with a newer epoch is still right
  // for FetchFrom: that epoch is also the one attempted, in term_).
  const Term want_term = durable_term_.load(std::memory_order_acquire);
  const Epoch want = durable_.load(std::memory_order_acquire);
  const int64_t now = NowMs();
  // Placement order, those known to hold `want` and not failing lately first.
  // Ranks are read once: other threads change them while we sort.
  std::vector<size_t> order(replicas_.size());
  std::vector<int> rank(replicas_.size());
  for (size_t i = 0; i < order.size(); ++i) {
    const Replica& r = *replicas_[i];
    order[i] = i;
    rank[i] = (r.avoid_until_ms.load(std::memory_order_relaxed) > now ? 2 : 0) + (r.durable.load() < want ? 1 : 0);
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return rank[a] < rank[b]; });

  std::string why;
  bool damaged = false;
  std::vector<std::pair<Replica*, Pgno>> to_repair;  // replicas that served a damaged page
  for (size_t i : order) {
    Replica& r = *replicas_[i];
    Pgno bad = kNoPage;
    Status s = FetchFrom(r, want, want_term, first, count, out, present, &bad);
    if (s.ok()) {
      for (const auto& [where, pgno] : to_repair) SendRepair(*where, want, pgno, out + (pgno - first) * kPageSize);
      return s;
    }
    r.avoid_until_ms.store(NowMs() + kAvoidMs, std::memory_order_relaxed);
    damaged |= s.code() == Status::Code::kCorruption;
    if (bad != kNoPage && bad >= first && bad - first < count) to_repair.emplace_back(&r, bad);
    why += fmt::format("; {}: {}", r.endpoint, s.message());
  }
  std::string text = fmt::format("heap '{}': pages [{}, {}) of epoch {}: no replica served them{}", name_, first,
                                 first + count, want, why);
  return damaged ? Status::Corruption(std::move(text)) : Status::Timeout(std::move(text));
}

// A fetch connection to `r`: an idle one from its pool, else a new one. The
// caller puts it back when it is still in step (no reply outstanding).
Result<std::unique_ptr<PeerChannel>> ReplicaClient::TakeFetchChannel(Replica& r) {
  {
    std::lock_guard l(r.fetch_mu);
    if (!r.fetch_pool.empty()) {
      std::unique_ptr<PeerChannel> ch = std::move(r.fetch_pool.back());
      r.fetch_pool.pop_back();
      return ch;
    }
  }
  return DialReplica(ctx_, r.endpoint, options_.keys);
}

// Sends `page`, read good elsewhere, to the replica that served it damaged;
// it rewrites its stored copy. The reply is not waited for (the next Call on
// the connection drops it): a fault never waits for a repair.
void ReplicaClient::SendRepair(Replica& r, Epoch epoch, Pgno pgno, const uint8_t* page) {
  auto taken = TakeFetchChannel(r);
  if (!taken.ok()) return;
  std::unique_ptr<PeerChannel> ch = std::move(*taken);
  const Pgno one[1] = {pgno};
  if (Status s = ch->Send(wire::EncodeRepair(ch->NextRequestId(), heap_id_, epoch, one, page)); !s.ok()) return;
  PHEAP_LOG_INFO("heap '{}': sent replica {} a good copy of page {} to repair its damaged one", name_, r.endpoint, pgno);
  std::lock_guard l(r.fetch_mu);
  r.fetch_pool.push_back(std::move(ch));
}

Status ReplicaClient::FetchFrom(Replica& r, Epoch want, Term want_term, Pgno first, uint32_t count, uint8_t* out,
                                uint64_t* present, Pgno* damaged) {
  auto taken = TakeFetchChannel(r);
  if (!taken.ok()) return taken.status();
  std::unique_ptr<PeerChannel> ch = std::move(*taken);
  // A reader wants exactly its epoch. The writer asks for whatever is
  // durable (epoch 0): a replica may already hold the epoch being persisted,
  // and a page not resident in the writer's region is the same in both.
  const Epoch ask = options_.claim ? 0 : want;
  auto reply = ch->Call(wire::EncodeFetch(ch->NextRequestId(), heap_id_, ask, first, count), options_.fetch_timeout);
  // A connection that timed out may still carry the request: dropped.
  if (!reply.ok()) return reply.status();
  auto give_back = [&] {
    std::lock_guard l(r.fetch_mu);
    r.fetch_pool.push_back(std::move(ch));
  };
  const Received& m = **reply;
  if (Status e = ErrorStatus(m); !e.ok()) {
    if (const auto* err = std::get_if<wire::Error>(&m.msg.body); err != nullptr && err->code == wire::ErrorCode::kCorruptPage)
      *damaged = err->detail;
    give_back();
    return e;
  }
  const auto* fr = std::get_if<wire::FetchReply>(&m.msg.body);
  if (fr == nullptr || fr->first != first || fr->count != count) {
    give_back();
    return Status::InvalidArgument(fmt::format("answered FETCH with {} for another run", wire::TypeName(m.msg.header.type)));
  }
  const Epoch served = m.msg.header.epoch;
  if (served < want) {
    give_back();
    return Status::NotFound(fmt::format("serves epoch {}, behind the durable epoch {}", served, want));
  }
  // Only this heap's image: its durable epoch, or a later one this writer
  // wrote (every epoch after the one it opened is its own). Anything else,
  // an epoch another writer left there that never became durable, holds
  // pages this image never had.
  const bool ours = served == want ? fr->image_term == want_term
                                   : options_.claim && fr->image_term == term_ &&
                                         served <= attempting_.load(std::memory_order_acquire);
  if (!ours) {
    give_back();
    return Status::NotFound(fmt::format("serves epoch {} of term {}, not this image's epoch {} of term {}: its image "
                                        "diverged",
                                        served, fr->image_term, want, want_term));
  }
  if (served > r.durable.load()) r.durable.store(served);
  uint32_t k = 0;
  for (uint32_t i = 0; i < count; ++i) {
    uint8_t* dst = out + uint64_t{i} * kPageSize;
    if (!fr->present(i)) {
      std::memset(dst, 0, kPageSize);
      continue;
    }
    const uint8_t* src = fr->data + uint64_t{k} * kPageSize;
    if (PageHash(src) != fr->checksum(k)) {
      *damaged = first + i;
      give_back();
      return Status::Corruption(fmt::format("page {} arrived damaged (XXH3 mismatch)", first + i));
    }
    std::memcpy(dst, src, kPageSize);
    ++k;
  }
  if (present != nullptr) {
    const uint32_t words = (count + 63) / 64;
    std::memset(present, 0, words * sizeof(uint64_t));
    for (uint32_t i = 0; i < count; ++i)
      if (fr->present(i)) present[i / 64] |= uint64_t{1} << (i % 64);
  }
  give_back();
  return Status::Ok();
}

}  // namespace pheap
