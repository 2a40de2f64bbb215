// The replica client's Persist: ship one epoch to every replica, count the
// COMMIT_ACKs, resend to the silent, catch up the behind, and give the
// sealed epoch's buffer back only once ZeroMQ holds no reference to it.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "base/log.h"
#include "replication/replica_client.h"
#include "replication/replica_internal.h"
#include "replication/wire.h"

namespace pheap {

using std::chrono::milliseconds;

namespace {

constexpr uint64_t kMinFramePages = 16;  // 64 KiB: smaller frames cap throughput
// A replica that acknowledged the commit has had every frame written, so
// ZeroMQ lets go of them at once; this only bounds a surprise.
constexpr milliseconds kReleaseWait{1000};

// ZeroMQ's I/O thread is done with one zero-copy frame.
void ReleaseFrame(void* /*data*/, void* hint) {
  static_cast<std::atomic<int64_t>*>(hint)->fetch_sub(1, std::memory_order_acq_rel);
}

// Waits until ZeroMQ holds no zero-copy frame counted by `in_flight`, or
// `limit` passes.
bool AwaitReleased(const std::atomic<int64_t>& in_flight, milliseconds limit) {
  const auto until = ReplicaClock::now() + limit;
  while (in_flight.load(std::memory_order_acquire) != 0) {
    if (ReplicaClock::now() >= until) return false;
    std::this_thread::sleep_for(milliseconds(1));
  }
  return true;
}

// Queues an epoch's messages on `ch`: the pages by reference when
// `in_flight` is given (counted until ZeroMQ releases them), else copied.
Status SendEncoded(PeerChannel* ch, const std::vector<wire::OutMessage>& pages, const wire::OutMessage& commit,
                   std::atomic<int64_t>* in_flight) {
  if (ch == nullptr) return Status::IoError("no connection (reconnecting failed earlier)", ENOTCONN);
  for (const auto& m : pages) {
    if (in_flight != nullptr) {
      // If the frame is not queued, its message's destructor releases it.
      in_flight->fetch_add(1, std::memory_order_acq_rel);
      PHEAP_RETURN_IF_ERROR(ch->SendZeroCopy(m, &ReleaseFrame, in_flight));
    } else {
      PHEAP_RETURN_IF_ERROR(ch->Send(m));
    }
  }
  return ch->Send(commit);
}

}  // namespace

// One replica's progress through one Persist.
struct ReplicaClient::Round {
  enum class State { kShipping, kDone, kOut };
  State state = State::kShipping;
  bool queued = false;           // the epoch's messages went onto the connection
  Epoch sent_from = 0;           // lowest epoch sent since the last resend: EPOCH_GAPs
                                 // naming it or later answer messages sent before
  bool resent = false;           // pages resent (MISSING_PAGES) since the last resend
  bool rehello = false;          // HELLO resent (UNKNOWN_HEAP) since the last resend
  ReplicaClock::time_point sent{};
  std::string why;               // the last problem: the reason when kOut
  Status refusal;                // kOut because the replica refused the epoch: its error
};

ReplicaClient::Encoded ReplicaClient::Encode(const ImageInfo& image, Term prev_term, const std::vector<Pgno>& pages,
                                             const uint8_t* data, const std::vector<Run>& discarded) {
  Encoded out;
  out.first_request_id = next_request_id_ + 1;
  // A short tail is folded into the frame before it, so leave it room.
  const uint64_t per = std::clamp<uint64_t>(options_.frame_bytes / kPageSize, kMinFramePages,
                                            max_frame_pages_ > 2 * kMinFramePages ? max_frame_pages_ - kMinFramePages
                                                                                  : kMinFramePages);
  for (size_t at = 0; at < pages.size();) {
    size_t n = std::min<size_t>(per, pages.size() - at);
    if (pages.size() - at - n < kMinFramePages) n = pages.size() - at;  // fold a short tail in
    out.pages.push_back(wire::EncodePages(++next_request_id_, heap_id_, term_, claimant_, image.epoch,
                                          std::span<const Pgno>(pages.data() + at, n), data + at * kPageSize));
    at += n;
  }
  wire::CommitBody c{image.base, image.size, image.hwm, pages.size(), 0, 0, prev_term};
  out.commit = wire::EncodeCommit(++next_request_id_, heap_id_, term_, claimant_, image.epoch, c, discarded);
  return out;
}

Status ReplicaClient::Persist(const SealedEpoch& e) {
  const Epoch epoch = e.image.epoch;
  if (!options_.claim)
    return Status::InvalidArgument(fmt::format("heap '{}': opened to read (claim=false); it cannot persist epochs", name_));
  if (epoch <= image_.epoch)
    return Status::InvalidArgument(
        fmt::format("heap '{}': epoch {} is not after the durable epoch {}", name_, epoch, image_.epoch));
  if (Status s = HoldTerm(epoch); !s.ok()) return s;
  attempting_.store(epoch, std::memory_order_release);
  // image_ is the durable image, the epoch before this one (epochs are
  // persisted in order, a failed one again before any later one).
  const Term prev_term = image_.term;
  const Encoded enc = Encode(e.image, prev_term, e.pages, e.data, e.discarded);
  const size_t k = replicas_.size();
  const uint32_t quorum = options_.replication.quorum;
  std::vector<Round> rounds(k);
  for (size_t i = 0; i < k; ++i) {
    if (!replicas_[i]->installing.load(std::memory_order_acquire)) continue;
    rounds[i].state = Round::State::kOut;  // counts again once installed
    rounds[i].why = "an image is being installed on it";
  }
  auto ship = [&](size_t i) {
    Round& rd = rounds[i];
    Status s = SendEncoded(replicas_[i]->ship.get(), enc.pages, enc.commit, &replicas_[i]->in_flight);
    rd.queued = s.ok();
    if (!s.ok()) rd.why = s.message();
    rd.sent = ReplicaClock::now();
    rd.sent_from = epoch;
  };
  for (size_t i = 0; i < k; ++i)
    if (rounds[i].state == Round::State::kShipping) ship(i);

  auto count = [&](Round::State st) {
    return static_cast<uint32_t>(std::count_if(rounds.begin(), rounds.end(), [&](const Round& r) { return r.state == st; }));
  };
  auto on_reply = [&](size_t i, const Received& m) { OnShipReply(e, enc, rounds, i, m); };
  // The promised term that fences this writer out (0: none): a newer one,
  // or this writer's own term promised to another claimant.
  auto superseded = [&] {
    Term t = 0;
    for (size_t i = 0; i < k; ++i) {
      if (rounds[i].state != Round::State::kOut) continue;
      const Term p = replicas_[i]->promised.load();
      if (p > term_ || rounds[i].refusal.code() == Status::Code::kSuperseded) t = std::max({t, p, term_});
    }
    return t;
  };
  const auto started = ReplicaClock::now();
  const auto deadline = started + options_.timeout;
  while (count(Round::State::kDone) < quorum && superseded() == 0 &&
         count(Round::State::kDone) + count(Round::State::kShipping) >= quorum && ReplicaClock::now() < deadline) {
    PollReplies(std::min(Left(deadline), options_.resend), on_reply);
    const auto now = ReplicaClock::now();
    for (size_t i = 0; i < k; ++i) {
      Round& rd = rounds[i];
      if (rd.state != Round::State::kShipping || now - std::max(rd.sent, replicas_[i]->heard) < options_.resend) continue;
      // Silent: the commit again (its MISSING_PAGES brings the pages), or
      // everything if it never went out.
      if (!rd.queued) {
        ship(i);
      } else {
        if (Status s = replicas_[i]->ship->Send(enc.commit); !s.ok()) rd.why = s.message();
        rd.sent = now;
        rd.sent_from = epoch;
      }
      rd.resent = rd.rehello = false;
    }
  }
  // Replicas still answering get a moment to finish, so a healthy but slower
  // one keeps its connection and needs no catch-up.
  const auto grace = ReplicaClock::now() + options_.straggler_wait;
  auto answering = [&] {
    const auto now = ReplicaClock::now();
    for (size_t i = 0; i < k; ++i)
      if (rounds[i].state == Round::State::kShipping && now - replicas_[i]->heard < options_.resend) return true;
    return false;
  };
  while (count(Round::State::kDone) >= quorum && superseded() == 0 && answering() && ReplicaClock::now() < grace)
    PollReplies(Left(grace), on_reply);

  const uint32_t acks = count(Round::State::kDone);
  const Term newer = superseded();
  if (acks >= quorum && newer == 0) {
    image_ = e.image;
    image_.term = term_;
    durable_.store(epoch, std::memory_order_release);
    durable_term_.store(term_, std::memory_order_release);
    NotifyInstalls(Retain(e, prev_term));
  }
  Settle(e, rounds);
  NoteFailures(epoch, rounds);
  if (newer != 0)
    return Status::Superseded(fmt::format(
        "heap '{}': epoch {} refused: a replica promised term {} to another writer (this writer holds term {}); "
        "this writer must stop, reopen the heap to write again",
        name_, epoch, newer, term_));
  if (acks >= quorum) return Status::Ok();
  // A replica's own failure (its errno: ENOSPC, EIO, ...) is the cause, not
  // a timeout: the error carries it, naming the replica.
  const auto refused = std::find_if(rounds.begin(), rounds.end(), [](const Round& r) { return !r.refusal.ok(); });
  std::string each;
  for (size_t i = 0; i < k; ++i) {
    const Round& rd = rounds[i];
    if (refused != rounds.end() && &rd == &*refused) continue;
    const char* st = rd.state == Round::State::kDone ? "acknowledged" : rd.state == Round::State::kOut ? "refused" : "no commit acknowledgement";
    each += fmt::format("{}{}: {}{}{}", each.empty() ? "" : "; ", replicas_[i]->endpoint, st, rd.why.empty() ? "" : ": ", rd.why);
  }
  if (refused != rounds.end())
    return refused->refusal.Annotate(fmt::format(
        "heap '{}': epoch {} acknowledged by {} of {} replicas, {} needed; it is not durable (retry the commit once "
        "the replicas are back): {}{}replica {} refused it",
        name_, epoch, acks, k, quorum, each, each.empty() ? "" : "; ", replicas_[refused - rounds.begin()]->endpoint));
  // Fewer than W replicas answering at all is a lost replica, not a slow
  // one: no retry helps until one is back or replaced.
  uint32_t reachable = 0;
  for (size_t i = 0; i < k; ++i)
    if (replicas_[i]->heard >= started || replicas_[i]->installing.load(std::memory_order_acquire)) ++reachable;
  if (reachable < quorum)
    return Status::Timeout(fmt::format(
        "heap '{}': epoch {} acknowledged by {} of {} replicas within {} ms, {} needed (quorum); only {} of them "
        "answered, so fewer than quorum={} replicas are reachable: it is not durable (restart or replace the silent "
        "replicas, then retry the commit): {}",
        name_, epoch, acks, k, options_.timeout.count(), quorum, reachable, quorum, each));
  return Status::Timeout(fmt::format(
      "heap '{}': epoch {} acknowledged by {} of {} replicas within {} ms, {} needed; it is not durable "
      "(retry the commit once the replicas are back): {}",
      name_, epoch, acks, k, options_.timeout.count(), quorum, each));
}

// A claim quorum smaller than a majority lets two writers claim one term
// on disjoint replicas. Neither can then get W grants, and neither ships:
// were each to leave an epoch of that term on its own replicas, two images
// would bear one name (term, epoch), which a later writer would take for
// one and extend.
Status ReplicaClient::HoldTerm(Epoch epoch) {
  if (owns_term_.load(std::memory_order_acquire)) return Status::Ok();
  const uint32_t w = options_.replication.quorum;
  Status s =
      Claim(ReplicaClock::now() + options_.timeout, w, w, " (quorum, before this writer ships)", options_.timeout);
  if (s.ok()) return s;
  const size_t answered = replicas_.size() - CountClaims(kNoClaimReply);
  if (s.code() == Status::Code::kTimeout && answered < w)
    return Status::Timeout(fmt::format(
        "heap '{}': epoch {} not shipped: {} of {} replicas answered within {} ms, {} needed (quorum), so fewer than "
        "quorum={} replicas are reachable: it is not durable (restart or replace the silent replicas, then retry the "
        "commit): {}",
        name_, epoch, answered, replicas_.size(), options_.timeout.count(), w, w, Describe()));
  return s.Annotate(fmt::format("epoch {} not shipped", epoch));
}

void ReplicaClient::OnShipReply(const SealedEpoch& e, const Encoded& enc, std::vector<Round>& rounds, size_t i,
                                const Received& m) {
  const Epoch epoch = e.image.epoch;
  Round& rd = rounds[i];
  Replica& r = *replicas_[i];
  r.heard = ReplicaClock::now();
  if (m.msg.header.term > r.promised.load()) r.promised.store(m.msg.header.term);
  if (const auto* t = std::get_if<wire::TermReplyBody>(&m.msg.body)) {
    NoteClaimReply(i, *t);  // a late answer to the claim
    return;
  }
  if (const auto* ack = std::get_if<wire::CommitAckBody>(&m.msg.body)) {
    if (ack->durable_epoch > r.durable.load()) r.durable.store(ack->durable_epoch);
    if (rd.state != Round::State::kShipping || ack->durable_epoch < epoch) return;  // an earlier epoch's ack
    if (ack->durable_epoch == epoch && ack->image_term == term_) {
      rd.state = Round::State::kDone;
      return;
    }
    // That epoch number, or a later one, from another writer: its image
    // diverged from this writer's.
    Diverged(rounds, i, fmt::format("holds epoch {} of term {}, not epoch {} of term {}", ack->durable_epoch,
                                    ack->image_term, epoch, term_));
    return;
  }
  const auto* err = std::get_if<wire::Error>(&m.msg.body);
  if (err == nullptr || rd.state != Round::State::kShipping) return;  // PAGES_ACK, late replies
  // An error's header carries the replica's durable epoch.
  const Epoch there = m.msg.header.epoch;
  if (there > r.durable.load()) r.durable.store(there);
  // An error answering an earlier Persist (a slow replica still replying to
  // resent commits) describes the replica as it was then: acting on it
  // would catch up, or install anew, a replica that is already current.
  if (m.msg.header.request_id < enc.first_request_id) return;
  switch (err->code) {
    case wire::ErrorCode::kEpochGap:
      if (err->detail >= rd.sent_from || err->detail > epoch) return;  // answers a message sent before the catch-up
      CatchUp(enc, rd, i, err->detail, epoch);
      return;
    case wire::ErrorCode::kMissingPages:
    case wire::ErrorCode::kPageChecksum: {
      // Both concern epoch there + 1, the only one in a replica's inbox.
      if (rd.resent) return;
      rd.resent = true;
      if (there + 1 == epoch) {
        Status s = SendEncoded(r.ship.get(), enc.pages, enc.commit, &r.in_flight);
        if (!s.ok()) rd.why = s.message();
      } else {
        CatchUp(enc, rd, i, there + 1, epoch);
      }
      return;
    }
    case wire::ErrorCode::kUnknownHeap: {
      // The replica restarted holding nothing of this heap.
      if (rd.rehello) return;
      rd.rehello = true;
      (void)r.ship->Send(wire::EncodeHello(++next_request_id_, name_));
      Status s = SendEncoded(r.ship.get(), enc.pages, enc.commit, &r.in_flight);
      if (!s.ok()) rd.why = s.message();
      return;
    }
    case wire::ErrorCode::kDiverged:
      Diverged(rounds, i, ErrorStatus(m).message());
      return;
    case wire::ErrorCode::kSuperseded:
      if (err->detail > r.promised.load()) r.promised.store(err->detail);
      [[fallthrough]];
    default:
      rd.state = Round::State::kOut;
      rd.refusal = ErrorStatus(m);
      rd.why = rd.refusal.message();
      return;
  }
}

// A replica that refuses epochs (its disk is full, its store broke) while
// the others make the quorum would go unnoticed: say so once per cause, and
// once more when it acknowledges again.
void ReplicaClient::NoteFailures(Epoch epoch, const std::vector<Round>& rounds) {
  for (size_t i = 0; i < rounds.size(); ++i) {
    Replica& r = *replicas_[i];
    const Round& rd = rounds[i];
    if (rd.state == Round::State::kDone && !r.failing.empty()) {
      PHEAP_LOG_WARN("heap '{}': replica {} acknowledges epochs again (epoch {})", name_, r.endpoint, epoch);
      r.failing.clear();
    }
    if (rd.refusal.ok() || rd.refusal.code() == Status::Code::kSuperseded) continue;  // superseded: the writer stops
    const std::string cause = fmt::format("{}/{}", static_cast<int>(rd.refusal.code()), rd.refusal.err());
    if (cause == r.failing) continue;
    r.failing = cause;
    PHEAP_LOG_WARN("heap '{}': replica {} failed epoch {} ({}; logged again only for another cause): {}", name_,
                   r.endpoint, epoch, std::strerror(rd.refusal.err()), rd.refusal.message());
  }
}

void ReplicaClient::Diverged(std::vector<Round>& rounds, size_t i, std::string why) {
  Round& rd = rounds[i];
  rd.state = Round::State::kOut;
  rd.why = std::move(why) + ": its image diverged from this writer's; installing this writer's image on it";
  PHEAP_LOG_WARN("heap '{}': replica {} {}", name_, replicas_[i]->endpoint, rd.why);
  StartInstall(i);
}

// Sends epochs [from, to) from the retained copies, then epoch `to` again.
void ReplicaClient::CatchUp(const Encoded& enc, Round& rd, size_t i, Epoch from, Epoch to) {
  Replica& r = *replicas_[i];
  for (Epoch x = from; x < to; ++x) {
    if (FindRetained(x) == nullptr) {
      rd.state = Round::State::kOut;
      rd.why = fmt::format(
          "behind at epoch {}, and epoch {} is no longer held by this writer: it cannot catch up epoch by epoch; "
          "installing the whole image on it",
          from - 1, x);
      PHEAP_LOG_WARN("heap '{}': replica {} {}", name_, r.endpoint, rd.why);
      StartInstall(i);
      return;
    }
  }
  PHEAP_LOG_INFO("heap '{}': catching up replica {} from epoch {} to {}", name_, r.endpoint, from, to);
  for (Epoch x = from; x < to; ++x) {
    const Retained& old = *FindRetained(x);
    const Encoded copy = Encode(old.image, old.prev_term, old.pages, old.data.data(), old.discarded);
    Status s = SendEncoded(r.ship.get(), copy.pages, copy.commit, nullptr);
    if (!s.ok()) rd.why = s.message();
  }
  Status s = SendEncoded(r.ship.get(), enc.pages, enc.commit, &r.in_flight);
  if (!s.ok()) rd.why = s.message();
  rd.sent_from = from;
  rd.sent = ReplicaClock::now();
}

// Keeps a copy of `e` while some replica lacks it, and forgets the epochs
// every replica holds or that exceed the budget (oldest first).
std::shared_ptr<const ReplicaClient::Retained> ReplicaClient::Retain(const SealedEpoch& e, Term prev_term) {
  Epoch all_have = e.image.epoch;
  for (const auto& r : replicas_)
    all_have = std::min(all_have, r->installing.load() ? r->install_floor.load() : r->durable.load());
  while (!retained_.empty() && retained_.front()->image.epoch <= all_have) {
    retained_bytes_ -= retained_.front()->data.size();
    retained_.pop_front();
  }
  if (all_have >= e.image.epoch) return nullptr;
  const uint64_t bytes = e.pages.size() * kPageSize;
  // Catch-up needs every epoch from the laggard's on: a gap makes the older
  // copies useless, so an epoch beyond the budget clears them all.
  while (!retained_.empty() && retained_bytes_ + bytes > options_.retain_max) {
    PHEAP_LOG_WARN("heap '{}': dropping the retained copy of epoch {} (retain_max {} bytes): a replica that lacks it "
                   "can no longer be caught up",
                   name_, retained_.front()->image.epoch, options_.retain_max);
    retained_bytes_ -= retained_.front()->data.size();
    retained_.pop_front();
  }
  if (bytes > options_.retain_max) return nullptr;
  auto copy = std::make_shared<Retained>();
  copy->image = e.image;
  copy->image.term = term_;
  copy->prev_term = prev_term;
  copy->pages = e.pages;
  copy->data.assign(e.data, e.data + bytes);
  copy->discarded = e.discarded;
  retained_bytes_ += bytes;
  retained_.push_back(copy);
  return copy;
}

// Returns only when ZeroMQ holds no reference into e.data. A replica that
// acknowledged has let go (or does so at once); any other has its
// connection closed, which drops its queued frames, and reopened. So is a
// connection that refused the epoch's messages outright: a socket whose
// queue stays full after a network cut heals is not reliably redialled by
// ZeroMQ, while a new one connects as soon as there is a route.
void ReplicaClient::Settle(const SealedEpoch& e, const std::vector<Round>& rounds) {
  for (size_t i = 0; i < replicas_.size(); ++i) {
    Replica& r = *replicas_[i];
    const Round& rd = rounds[i];
    const bool done = rd.state == Round::State::kDone;
    const bool refused = rd.state == Round::State::kShipping && !rd.queued;
    if (AwaitReleased(r.in_flight, done ? kReleaseWait : milliseconds(0)) && !refused) continue;
    PHEAP_LOG_INFO("heap '{}': replica {} did not take all of epoch {}: reconnecting, which drops the frames queued for it",
                   name_, r.endpoint, e.image.epoch);
    r.ship.reset();
    for (int waited = 0; !AwaitReleased(r.in_flight, milliseconds(5000)); ++waited)
      PHEAP_LOG_WARN("heap '{}': ZeroMQ still holds {} frames of epoch {} for replica {}", name_, r.in_flight.load(),
                     e.image.epoch, r.endpoint);
    auto ch = DialReplica(ctx_, r.endpoint, options_.keys);
    if (!ch.ok()) {
      PHEAP_LOG_ERROR("heap '{}': reconnecting to replica {}: {}", name_, r.endpoint, ch.status().message());
      continue;
    }
    r.ship = std::move(ch.value());
    r.ship->socket().set(zmq::sockopt::sndtimeo, 0);
  }
}

}  // namespace pheap
