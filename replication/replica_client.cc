// The replica client's writer side: Open (HELLO, CLAIM_TERM) and Persist
// (PAGES, COMMIT, quorum). Demand fetches are in replica_fetch.cc.
#include "replication/replica_client.h"

#include <xxhash.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <random>
#include <thread>

#include "base/log.h"
#include "store/page_store.h"
#include "replication/replica_internal.h"
#include "replication/wire.h"

namespace pheap {

using std::chrono::milliseconds;

Result<std::unique_ptr<PeerChannel>> DialReplica(zmq::context_t& ctx, const std::string& endpoint,
                                                 const std::optional<CurveClientKeys>& keys) {
  auto ch = PeerChannel::Connect(ctx, endpoint, keys ? &*keys : nullptr);
  if (!ch.ok()) return ch.status();
  return std::move(ch.value());
}

void ReplicaClient::PollReplies(milliseconds wait, const std::function<void(size_t, const Received&)>& on) {
  std::vector<zmq::pollitem_t> items;
  std::vector<size_t> index;
  for (size_t i = 0; i < replicas_.size(); ++i) {
    if (!replicas_[i]->ship) continue;
    items.push_back({replicas_[i]->ship->socket().handle(), 0, ZMQ_POLLIN, 0});
    index.push_back(i);
  }
  try {
    if (items.empty()) {
      std::this_thread::sleep_for(wait);
      return;
    }
    if (zmq::poll(items.data(), items.size(), wait) <= 0) return;
  } catch (const zmq::error_t&) {
    return;  // EINTR: the caller's loop polls again
  }
  for (size_t j = 0; j < items.size(); ++j) {
    if ((items[j].revents & ZMQ_POLLIN) == 0) continue;
    Replica& r = *replicas_[index[j]];
    for (;;) {
      auto m = r.ship->Receive(milliseconds(0));
      if (m.ok()) {
        on(index[j], **m);
      } else if (m.status().code() == Status::Code::kTimeout) {
        break;
      } else {
        PHEAP_LOG_WARN("heap '{}': replica {}: {}", name_, r.endpoint, m.status().message());
      }
    }
  }
}

ReplicaClient::ReplicaClient(std::string name, const ReplicaClientOptions& options)
    : name_(std::move(name)), options_(options) {
  heap_id_ = XXH3_64bits(name_.data(), name_.size());
  std::random_device rd;
  claimant_[0] = (uint64_t{rd()} << 32) | rd();
  claimant_[1] = (uint64_t{rd()} << 32) | rd();
  if (claimant_[0] == 0 && claimant_[1] == 0) claimant_[1] = 1;  // 0 means "no claimant" to a peer
}

ReplicaClient::~ReplicaClient() {
  // Installs stop at their next step (each wait is bounded by `resend`).
  stopping_.store(true, std::memory_order_release);
  for (auto& r : replicas_)
    if (r->install_thread.joinable()) r->install_thread.join();
  // Outside Persist no zero-copy frame is held (Settle), so closing the
  // sockets (before the context, which outlives them) is all there is.
  replicas_.clear();
}

Result<std::unique_ptr<ReplicaClient>> ReplicaClient::Open(const std::string& name, const ReplicaClientOptions& options) {
  PHEAP_RETURN_IF_ERROR(PageStore::ValidateHeapName(name));
  const ReplicationConfig& rc = options.replication;
  if (rc.peers.empty() || rc.replicas == 0 || rc.replicas > rc.peers.size() || rc.quorum == 0 || rc.quorum > rc.replicas)
    return Status::InvalidArgument(fmt::format(
        "heap '{}': replication config not resolved (peers={}, replicas={}, quorum={}); pass it through ResolveReplication",
        name, rc.peers.size(), rc.replicas, rc.quorum));
  std::unique_ptr<ReplicaClient> c;
  try {
    c.reset(new ReplicaClient(name, options));
  } catch (const zmq::error_t& e) {  // no ZeroMQ context: libzmq missing or out of resources
    return Status::IoError(fmt::format("heap '{}': starting ZeroMQ: {}", name, e.what()), e.num());
  }
  c->endpoints_ = ReplicaSet(c->heap_id_, rc.peers, rc.replicas);
  for (const auto& ep : c->endpoints_) {
    auto r = std::make_unique<Replica>();
    r->endpoint = ep;
    auto ch = DialReplica(c->ctx_, ep, options.keys);
    if (!ch.ok()) return ch.status().Annotate(fmt::format("heap '{}'", name));
    r->ship = std::move(ch.value());
    // Shipping never blocks on one replica: a full queue is that replica's
    // problem, met by the resend timer.
    r->ship->socket().set(zmq::sockopt::sndtimeo, 0);
    c->replicas_.push_back(std::move(r));
  }
  const auto deadline = ReplicaClock::now() + c->OpenTimeout();
  PHEAP_RETURN_IF_ERROR(c->Hello(deadline));
  if (options.claim) {
    Term top = 0;
    for (const auto& r : c->replicas_) top = std::max(top, r->promised.load());
    c->term_ = top + 1;
    // k - W + 1 grants own the term; the writer ships once W granted it
    // (Persist), which those that answer now usually have.
    const uint32_t w = options.replication.quorum;
    PHEAP_RETURN_IF_ERROR(c->Claim(deadline, ClaimQuorum(rc.replicas, w), w, c->WhyNeeded(), c->OpenTimeout()));
    // A writer of an older term may have made an epoch durable between the
    // HELLOs and the claim; once k - W + 1 replicas promised this term it
    // cannot any more (any W include one of them), and they hold every
    // durable epoch. Ask again.
    if (c->newer_at_claim_) {
      for (auto& r : c->replicas_) r->answered = false;
      PHEAP_RETURN_IF_ERROR(c->Hello(deadline));
    }
    // A replica behind the durable image holds epochs this new writer never
    // had to retain, and one holding another image (an older writer's epoch
    // that never became durable) must not be extended: either is installed
    // (in the background) before it counts.
    for (size_t i = 0; i < c->replicas_.size(); ++i) {
      const wire::ManifestBody& m = c->replicas_[i]->manifest;
      const bool same = m.epoch == c->image_.epoch && (m.epoch == 0 || m.image_term == c->image_.term);
      if (c->replicas_[i]->answered && !same) c->StartInstall(i);
    }
  }
  PHEAP_LOG_INFO("heap '{}': replicas {}; durable epoch {}, term {}", name, fmt::join(c->endpoints_, ","),
                 c->image_.epoch, c->term_);
  return c;
}

Status ReplicaClient::Hello(ReplicaClock::time_point deadline) {
  const size_t k = replicas_.size();
  const size_t needed = ClaimQuorum(static_cast<uint32_t>(k), options_.replication.quorum);
  auto sent = ReplicaClock::now() - options_.resend;  // send at once
  std::optional<ReplicaClock::time_point> enough_at;
  size_t answered = 0;
  // Past the needed answers, the others get one resend interval more: a
  // dead replica must not hold the open for the whole timeout.
  while (answered < k && ReplicaClock::now() < deadline &&
         !(enough_at && ReplicaClock::now() >= *enough_at + options_.resend)) {
    if (ReplicaClock::now() - sent >= options_.resend) {
      for (auto& r : replicas_)
        if (!r->answered) (void)r->ship->Send(wire::EncodeHello(++next_request_id_, name_));
      sent = ReplicaClock::now();
    }
    PollReplies(std::min(Left(deadline), options_.resend), [&](size_t i, const Received& m) {
      Replica& r = *replicas_[i];
      const auto* mb = std::get_if<wire::ManifestBody>(&m.msg.body);
      if (mb == nullptr || r.answered) return;
      r.answered = true;
      r.manifest = *mb;
      r.durable.store(mb->epoch);
      r.promised.store(mb->promised_term);
      if (++answered == needed) enough_at = ReplicaClock::now();
    });
  }
  if (answered < needed)
    return Status::Timeout(fmt::format("heap '{}': {} of {} replicas answered HELLO within {} ms, {} needed{}: {}",
                                       name_, answered, k, OpenTimeout().count(), needed, WhyNeeded(), Describe()));
  // No PAGES message may exceed what any replica accepts.
  for (const auto& r : replicas_)
    if (r->answered && r->manifest.max_message_bytes != 0)
      max_frame_pages_ = std::min<uint64_t>(max_frame_pages_, r->manifest.max_message_bytes / (kPageSize + sizeof(wire::PageRef)) - 1);
  // Recover from the newest durable image any replica holds: the one of
  // the highest term, then the highest epoch. An epoch of an older term
  // that a newer writer's epoch numbers overtake, or equal, never reached
  // a quorum (the newer writer started from every durable epoch), so it
  // must not win on its number alone.
  image_ = ImageInfo{heap_id_, 0, 0, 0, 0, 0};
  for (const auto& r : replicas_) {
    const wire::ManifestBody& m = r->manifest;
    const ImageInfo theirs{heap_id_, m.epoch, m.image_term, m.base, m.size, m.hwm};
    if (r->answered && (m.flags & wire::kManifestHeld) != 0 && (NewerImage(theirs, image_) || image_.size == 0))
      image_ = theirs;
  }
  durable_.store(image_.epoch, std::memory_order_release);
  durable_term_.store(image_.term, std::memory_order_release);
  attempting_.store(image_.epoch, std::memory_order_release);
  std::lock_guard lock(install_mu_);
  durable_image_ = image_;
  return Status::Ok();
}

size_t ReplicaClient::CountClaims(int verdict) const {
  return static_cast<size_t>(
      std::count_if(replicas_.begin(), replicas_.end(), [&](const auto& r) { return r->claim.load() == verdict; }));
}

void ReplicaClient::NoteClaimReply(size_t i, const wire::TermReplyBody& t) {
  Replica& r = *replicas_[i];
  if (t.promised_term > r.promised.load()) r.promised.store(t.promised_term);
  r.durable.store(std::max(r.durable.load(), t.durable_epoch));
  int none = kNoClaimReply;
  if (!r.claim.compare_exchange_strong(none, t.granted != 0 ? kClaimGranted : kClaimRefused)) return;
  if (t.granted != 0 && std::tie(t.image_term, t.durable_epoch) > std::tie(image_.term, image_.epoch))
    newer_at_claim_ = true;
  if (CountClaims(kClaimGranted) >= options_.replication.quorum) owns_term_.store(true, std::memory_order_release);
}

Status ReplicaClient::Claim(ReplicaClock::time_point deadline, size_t needed, size_t want, const std::string& why,
                            milliseconds waited) {
  const size_t k = replicas_.size();
  auto sent = ReplicaClock::now() - options_.resend;  // send at once
  std::optional<ReplicaClock::time_point> enough_at;
  for (;;) {
    const size_t granted = CountClaims(kClaimGranted), refused = CountClaims(kClaimRefused);
    const auto now = ReplicaClock::now();
    if (granted >= needed && !enough_at) enough_at = now;
    // Past `needed`, the silent get one resend interval more: a dead
    // replica must not hold the open; the rest learn the term from PAGES.
    if (granted >= std::max(needed, want) || granted + refused == k || refused > k - needed || now >= deadline ||
        (enough_at && now >= *enough_at + options_.resend))
      break;
    if (now - sent >= options_.resend) {
      for (size_t i = 0; i < k; ++i) {
        if (replicas_[i]->claim.load() != kNoClaimReply) continue;
        // A replica that did not answer HELLO may not know the heap yet.
        if (!replicas_[i]->answered) (void)replicas_[i]->ship->Send(wire::EncodeHello(++next_request_id_, name_));
        (void)replicas_[i]->ship->Send(wire::EncodeClaimTerm(++next_request_id_, heap_id_, term_, claimant_));
      }
      sent = now;
    }
    PollReplies(std::min(Left(deadline), options_.resend), [&](size_t i, const Received& m) {
      if (const auto* t = std::get_if<wire::TermReplyBody>(&m.msg.body)) NoteClaimReply(i, *t);
    });
  }
  const size_t granted = CountClaims(kClaimGranted);
  if (granted >= needed) return Status::Ok();
  Term newer = 0;
  for (const auto& r : replicas_)
    if (r->claim.load() == kClaimRefused) newer = std::max(newer, r->promised.load());
  if (newer != 0)
    return Status::Superseded(fmt::format(
        "heap '{}': term {} granted by {} of {} replicas, {} needed{}; a replica promised term {} to another writer: "
        "close that writer (or wait until it is gone) and open again",
        name_, term_, granted, k, needed, why, newer));
  return Status::Timeout(fmt::format("heap '{}': term {} granted by {} of {} replicas within {} ms, {} needed{}: {}",
                                     name_, term_, granted, k, waited.count(), needed, why, Describe()));
}

std::string ReplicaClient::WhyNeeded() const {
  const uint32_t k = options_.replication.replicas, w = options_.replication.quorum;
  return fmt::format(" (replicas={} - quorum={} + 1)", k, w);
}

ImageInfo ReplicaClient::image() const { return image_; }

void ReplicaClient::AdoptImage(const ImageInfo& local) {
  if (!options_.claim || !NewerImage(local, image_)) return;
  image_ = local;
  image_.heap_id = heap_id_;
  // A store that lived without peers wrote its epochs in no term (0). Term
  // 0 names no image on the replicas: two such stores of one heap may each
  // hold a different epoch E of term 0. The image becomes this writer's,
  // and no other writer writes in its term, so (term_, E) names it alone;
  // the install closes under that name even if no epoch follows.
  if (image_.term == 0) image_.term = term_;
  durable_.store(image_.epoch, std::memory_order_release);
  durable_term_.store(image_.term, std::memory_order_release);
  attempting_.store(image_.epoch, std::memory_order_release);
  {
    std::lock_guard lock(install_mu_);
    durable_image_ = image_;
  }
  for (size_t i = 0; i < replicas_.size(); ++i) StartInstall(i);
}

std::vector<ReplicaState> ReplicaClient::state() const {
  std::vector<ReplicaState> out;
  for (const auto& r : replicas_)
    out.push_back({r->endpoint, r->answered, r->durable.load(), r->promised.load(),
                   r->answered ? r->manifest.image_term : 0, r->installing.load()});
  return out;
}

std::string ReplicaClient::Describe() const {
  std::string s;
  for (const auto& r : replicas_) {
    if (!s.empty()) s += "; ";
    s += r->answered ? fmt::format("{} (durable epoch {}, promised term {}{})", r->endpoint, r->durable.load(),
                                   r->promised.load(), r->installing.load() ? ", being installed" : "")
                     : fmt::format("{} (no answer)", r->endpoint);
  }
  return s;
}

const ReplicaClient::Retained* ReplicaClient::FindRetained(Epoch epoch) const {
  for (const auto& r : retained_)
    if (r->image.epoch == epoch) return r.get();
  return nullptr;
}

}  // namespace pheap
