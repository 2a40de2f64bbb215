// Installing the whole durable image on a replica the writer cannot catch
// up epoch by epoch (INSTALL_BEGIN, INSTALL_PAGES, INSTALL_COMMIT), on a
// thread and a connection of its own.
//
// Why the installed image is the durable one: every page of the region is
// sent in an image run labelled with the durable epoch before its read,
// and read where that epoch or a later one is held (absent pages, and
// pages past the hwm, as discards); every epoch made durable after the
// install began (its floor) is sent as a part labelled with itself. The
// peer keeps each page at its newest label, a tie going to the later
// message. A page last written (or discarded) by an epoch after the floor
// thus holds that part's content, or that of a run read at or after it,
// which is the same; any other page holds its run's content, which no
// epoch up to the close changed. The install closes at a durable epoch
// whose parts were all sent and that no read can have been newer than
// (`ceiling`): a read may see an epoch in flight, which must be durable
// before the image that holds it is. A local image source that lags the
// replicas is not read: its versions may be older than the floor, and no
// part would correct them.
#include <fmt/format.h>

#include <cstdlib>
#include <random>
#include <thread>

#include "base/log.h"
#include "base/thread.h"
#include "replication/replica_client.h"
#include "replication/replica_internal.h"
#include "replication/wire.h"

namespace pheap {

using std::chrono::milliseconds;

namespace {

constexpr uint32_t kInstallRun = 256;  // pages per image run: 1 MiB

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};

// Runs of the pages in [first, first + count) whose bit in `present` is clear.
std::vector<Run> AbsentRuns(Pgno first, uint32_t count, const uint64_t* present) {
  std::vector<Run> runs;
  for (uint32_t i = 0; i < count; ++i) {
    if ((present[i / 64] >> (i % 64)) & 1) continue;
    if (!runs.empty() && runs.back().end() == first + i) ++runs.back().count;
    else runs.push_back(Run{first + i, 1});
  }
  return runs;
}

}  // namespace

void ReplicaClient::SetImageSource(PageSource* source, std::function<ImageInfo()> source_image) {
  std::lock_guard lock(source_mu_);
  image_source_ = source;
  source_image_ = std::move(source_image);
}

void ReplicaClient::StartInstall(size_t i) {
  Replica& r = *replicas_[i];
  if (!options_.claim || r.installing.load()) return;
  if (r.install_thread.joinable()) r.install_thread.join();  // an earlier install, finished
  r.install_floor.store(durable_.load());
  r.installing.store(true, std::memory_order_release);
  PHEAP_LOG_INFO("heap '{}': installing the durable image on replica {}", name_, r.endpoint);
  r.install_thread = StartThread([this, i] { InstallLoop(i); });
}

void ReplicaClient::InstallLoop(size_t i) {
  Replica& r = *replicas_[i];
  for (int attempt = 1; !stopping_.load(std::memory_order_acquire); ++attempt) {
    Status s = InstallOnce(i);
    if (s.ok()) break;
    if (s.code() == Status::Code::kSuperseded) {
      PHEAP_LOG_WARN("heap '{}': installing replica {}: {}; this writer no longer holds the heap", name_, r.endpoint,
                     s.message());
      break;
    }
    PHEAP_LOG_WARN("heap '{}': installing replica {} (attempt {}): {}; beginning again", name_, r.endpoint, attempt,
                   s.ToString());
    for (int w = 0; w < 4 && !stopping_.load(std::memory_order_acquire); ++w) std::this_thread::sleep_for(options_.resend / 2);
  }
  r.installing.store(false, std::memory_order_release);
}

// Sends `m` until its reply comes (resending on silence) or the timeout
// passes; an error reply is returned as a Status, its code in *refused.
Result<std::unique_ptr<Received>> ReplicaClient::InstallCall(PeerChannel& ch, const wire::OutMessage& m,
                                                             wire::Error* refused) {
  const auto deadline = ReplicaClock::now() + options_.timeout;
  Status last = Status::Timeout("no answer");
  while (ReplicaClock::now() < deadline && !stopping_.load(std::memory_order_acquire)) {
    auto reply = ch.Call(m, std::min(options_.resend, Left(deadline)));
    if (reply.ok()) {
      if (Status e = ErrorStatus(**reply); !e.ok()) {
        if (const auto* err = std::get_if<wire::Error>(&(*reply)->msg.body); err != nullptr && refused != nullptr)
          *refused = *err;
        return e;
      }
      return reply;
    }
    last = reply.status();
  }
  return Status::Timeout(fmt::format("{} unanswered for {} ms: {}", wire::TypeName(m.header.type),
                                     options_.timeout.count(), last.message()));
}

// Reads an image run, labelled with the durable epoch before the read:
// from the image source if it holds that epoch or a later one, else from
// the replicas, which serve that epoch or a later one. The local store can
// lag the replicas (its write of an epoch they made durable still runs, or
// failed); a run read there would hold versions older than the install's
// floor, whose epochs are sent as no part.
Status ReplicaClient::ReadImageRun(Pgno first, uint32_t count, uint8_t* out, uint64_t* present, Epoch* label,
                                   Epoch* newest, Epoch* whole_at) {
  Status s;
  *label = durable_.load(std::memory_order_acquire);
  {
    std::lock_guard lock(source_mu_);
    const bool has_source = image_source_ != nullptr && source_image_;
    const Epoch before = has_source ? source_image_().epoch : 0;
    const bool from_source = has_source && before >= *label;
    s = from_source ? image_source_->ReadRun(first, count, out, present) : ReadRun(first, count, out, present);
    *newest = from_source ? source_image_().epoch : 0;
    *whole_at = from_source && before == *newest ? before : 0;
  }
  // A replica (or the source) may already hold the epoch Persist works on.
  *newest = std::max(*newest, attempting_.load(std::memory_order_acquire));
  return s;
}

// Sends the parts queued so far, each epoch's pages in frames of about
// frame_bytes.
Status ReplicaClient::SendParts(PeerChannel& ch, Install& inst) {
  const uint64_t per = std::clamp<uint64_t>(options_.frame_bytes / kPageSize, 1, max_frame_pages_);
  for (;;) {
    std::shared_ptr<const Retained> part;
    {
      std::lock_guard lock(install_mu_);
      if (inst.lost) return Status::Busy("fell more than retain_max bytes behind the writer");
      if (inst.parts.empty()) return Status::Ok();
      part = inst.parts.front();
    }
    const Epoch e = part->image.epoch;
    size_t at = 0;
    do {
      const size_t n = std::min<size_t>(per, part->pages.size() - at);
      std::span<const Run> discarded;
      if (at == 0) discarded = part->discarded;
      auto m = wire::EncodeInstallPages(ch.NextRequestId(), heap_id_, term_, claimant_, e,
                                        std::span<const Pgno>(part->pages.data() + at, n),
                                        part->data.data() + at * kPageSize, discarded);
      auto reply = InstallCall(ch, m);
      if (!reply.ok()) return reply.status().Annotate(fmt::format("sending epoch {}", e));
      at += n;
    } while (at < part->pages.size());
    std::lock_guard lock(install_mu_);
    inst.part_bytes -= part->data.size();
    inst.parts.pop_front();
  }
}

// Feeds a durable epoch to every install (called by Persist once the epoch
// is durable; `kept` null when it could not be retained).
void ReplicaClient::NotifyInstalls(std::shared_ptr<const Retained> kept) {
  std::lock_guard lock(install_mu_);
  durable_image_ = image_;
  for (Install* inst : installs_) {
    if (kept == nullptr || inst->part_bytes + kept->data.size() > options_.retain_max) {
      inst->lost = true;
      continue;
    }
    inst->parts.push_back(kept);
    inst->part_bytes += kept->data.size();
    inst->covered = image_;
  }
}

Status ReplicaClient::InstallOnce(size_t i) {
  Replica& r = *replicas_[i];
  auto dialed = DialReplica(ctx_, r.endpoint, options_.keys);
  if (!dialed.ok()) return dialed.status();
  PeerChannel& ch = **dialed;
  // The peer may have restarted knowing nothing of the heap.
  if (auto hello = InstallCall(ch, wire::EncodeHello(ch.NextRequestId(), name_)); !hello.ok()) return hello.status();

  Install inst;
  ImageInfo from;  // the image at the floor (inst.covered moves on under install_mu_)
  {
    std::lock_guard lock(install_mu_);
    from = durable_image_;
    inst.floor = from.epoch;
    inst.covered = from;
    installs_.push_back(&inst);
  }
  r.install_floor.store(inst.floor);
  struct Unregister {
    ReplicaClient* c;
    Install* inst;
    ~Unregister() {
      std::lock_guard lock(c->install_mu_);
      std::erase(c->installs_, inst);
    }
  } unregister{this, &inst};
  if (inst.floor == 0) return Status::Ok();  // nothing durable to install
  // An image named by this writer's term (a store that lived without peers,
  // taken as of this term) goes nowhere before W replicas granted the term,
  // as an epoch does not (HoldTerm).
  if (from.term == term_ && !owns_term_.load(std::memory_order_acquire)) {
    auto reply = InstallCall(ch, wire::EncodeClaimTerm(ch.NextRequestId(), heap_id_, term_, claimant_));
    if (!reply.ok()) return reply.status().Annotate("CLAIM_TERM");
    const auto* t = std::get_if<wire::TermReplyBody>(&(*reply)->msg.body);
    if (t == nullptr) return Status::InvalidArgument("CLAIM_TERM answered with another message");
    int none = kNoClaimReply;
    r.claim.compare_exchange_strong(none, t->granted != 0 ? kClaimGranted : kClaimRefused);
    if (r.claim.load() != kClaimGranted)
      return Status::Superseded(fmt::format("term {} is promised to another writer there", term_));
    const uint32_t w = options_.replication.quorum;
    if (CountClaims(kClaimGranted) >= w) owns_term_.store(true, std::memory_order_release);
    if (!owns_term_.load(std::memory_order_acquire))
      return Status::Busy(
          fmt::format("term {} is granted by {} of {} replicas, quorum={} needed before an image "
                      "named by it is installed",
                      term_, CountClaims(kClaimGranted), replicas_.size(), w));
  }

  wire::Error refused;
  auto begun = InstallCall(ch,
                           wire::EncodeInstallBegin(ch.NextRequestId(), heap_id_, term_, claimant_, from.epoch,
                                                    {from.base, from.size, from.term}),
                           &refused);
  if (!begun.ok() && refused.code == wire::ErrorCode::kEpochMismatch) {
    // Not behind after all (it holds the epoch or later): shipping serves it.
    r.durable.store(refused.detail);
    return Status::Ok();
  }
  if (!begun.ok()) return begun.status().Annotate("INSTALL_BEGIN");
  // Pages at or past the hwm read as zeros: labelled so, every page of the
  // region is covered by this install, whatever an earlier attempt left.
  const Pgno region_pages = from.size / kPageSize;
  if (from.hwm < region_pages) {
    const Run tail{from.hwm, region_pages - from.hwm};
    auto m = wire::EncodeInstallPages(ch.NextRequestId(), heap_id_, term_, claimant_, from.epoch, {}, nullptr,
                                      std::span<const Run>(&tail, 1));
    if (auto reply = InstallCall(ch, m); !reply.ok()) return reply.status();
  }

  std::unique_ptr<uint8_t, FreeDeleter> buf(static_cast<uint8_t*>(std::aligned_alloc(kPageSize, kInstallRun * kPageSize)));
  uint64_t present[kInstallRun / 64];
  std::vector<Pgno> pgnos;
  Epoch ceiling = from.epoch;
  Epoch read_whole_at = ~Epoch{0};  // the one epoch every run was read whole at, else 0
  for (Pgno first = 0; first < from.hwm; first += kInstallRun) {
    if (stopping_.load(std::memory_order_acquire)) return Status::Busy("the client is closing");
    PHEAP_RETURN_IF_ERROR(SendParts(ch, inst));
    const auto count = static_cast<uint32_t>(std::min<Pgno>(kInstallRun, from.hwm - first));
    Epoch label = 0, newest = 0, whole_at = 0;
    Status s = ReadImageRun(first, count, buf.get(), present, &label, &newest, &whole_at);
    read_whole_at = read_whole_at == ~Epoch{0} || read_whole_at == whole_at ? whole_at : 0;
    if (!s.ok()) return s.Annotate(fmt::format("reading image pages [{}, {})", first, first + count));
    ceiling = std::max(ceiling, newest);
    // Present pages packed at the front, the absent ones as discards.
    pgnos.clear();
    PackPresentPages(first, count, present, buf.get(), &pgnos);
    const std::vector<Run> absent = AbsentRuns(first, count, present);
    auto m = wire::EncodeInstallPages(ch.NextRequestId(), heap_id_, term_, claimant_, label, pgnos, buf.get(), absent);
    if (auto reply = InstallCall(ch, m); !reply.ok()) return reply.status().Annotate("sending image pages");
  }

  // Close at a durable epoch every part up to which was sent, and that no
  // read can have been newer than. Or at the epoch in flight, read whole
  // from a source that holds it: when every replica is being installed
  // (new peers, or a local store ahead of them all) that epoch cannot
  // become durable before an install closes, and the writer's own epoch is
  // what a replica holds before the quorum anyway.
  ImageInfo at;
  for (;;) {
    if (stopping_.load(std::memory_order_acquire)) return Status::Busy("the client is closing");
    PHEAP_RETURN_IF_ERROR(SendParts(ch, inst));
    {
      std::lock_guard lock(install_mu_);
      if (inst.parts.empty() && inst.covered.epoch >= ceiling) {
        at = inst.covered;
        break;
      }
      if (inst.parts.empty() && inst.covered.epoch + 1 == ceiling && ceiling == attempting_.load()) {
        std::lock_guard source_lock(source_mu_);
        if (image_source_ != nullptr && source_image_ && source_image_().epoch == ceiling) {
          // Only if every run was read with that whole epoch in the source;
          // a run read before it landed there is read again.
          if (read_whole_at != ceiling)
            return Status::Busy(fmt::format("epoch {} reached the image source while the image was read; reading "
                                            "it again",
                                            ceiling));
          at = source_image_();
          at.term = term_;
          break;
        }
      }
    }
    std::this_thread::sleep_for(std::min(options_.resend, milliseconds(20)));
  }
  auto done = InstallCall(ch, wire::EncodeInstallCommit(ch.NextRequestId(), heap_id_, term_, claimant_, at.epoch,
                                                        {at.base, at.size, at.hwm, at.term}));
  if (!done.ok()) return done.status().Annotate("INSTALL_COMMIT");
  const auto* ack = std::get_if<wire::InstallAckBody>(&(*done)->msg.body);
  if (ack == nullptr || ack->durable_epoch < at.epoch)
    return Status::InvalidArgument(fmt::format("INSTALL_COMMIT of epoch {} answered with {}", at.epoch,
                                               wire::TypeName((*done)->msg.header.type)));
  r.durable.store(ack->durable_epoch);
  PHEAP_LOG_INFO("heap '{}': replica {} installed at epoch {}; it counts again once caught up from there", name_,
                 r.endpoint, ack->durable_epoch);
  return Status::Ok();
}

}  // namespace pheap
