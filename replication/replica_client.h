// ReplicaClient: a heap's view of its replica set (placement.h), speaking
// the peer protocol (docs/wire-protocol.md) to each replica.
//
// As an EpochSink it is the writer: Open claims a term from k - W + 1
// replicas of the set (ClaimQuorum), and Persist ships each sealed epoch to every replica and
// returns once `quorum` replicas acknowledged its commit. As a PageSource it
// serves the newest durable image among the replicas (recovery into an empty
// directory, or faults on a machine without a local store), checking every
// page's XXH3 and failing over between replicas.
//
// Shipping: an epoch's pages go in PAGES messages of about `frame_bytes`
// (never below 64 KiB where the epoch has that much), sent with zero copy
// from the sealed epoch's buffer, all replicas at once, then COMMIT. A
// replica that stays silent for `resend` gets the COMMIT again; its
// MISSING_PAGES answer brings the pages again (peers are idempotent). A
// replica that answers EPOCH_GAP is behind: it is sent the epochs it lacks
// from copies this client retains (an epoch is copied only when some replica
// did not acknowledge it in its own Persist, up to `retain_max` bytes).
//
// A replica missing an epoch no longer retained (a peer restarted empty or
// from an old disk, a new peer in the set) is installed: on a thread and a
// connection of its own, never blocking Persist, the client streams it the
// durable image (from the image source, SetImageSource, else from the other
// replicas) in runs labelled with the epoch durable before each was read,
// then the epochs committed meanwhile (retained while it lacks them), then
// INSTALL_COMMIT at a durable epoch those cover. A replica is found behind
// when a writer opens (its manifest is older than the durable image) or
// when an epoch shipped to it meets EPOCH_GAP. The peer builds the image
// beside the one it holds and keeps serving that until the install's
// closing record is durable, so a crash of either side leaves the replica
// as it was, never empty or torn; the install starts again. While installed a replica does
// not count toward the quorum; afterwards it is caught up from the retained
// epochs and counts again.
//
// A page a replica serves damaged (CORRUPT_PAGE, or an XXH3 mismatch) is
// read from another, and the good copy is sent back to the damaged replica
// (REPAIR), which rewrites its stored copy in place.
//
// The sealed epoch's buffer is referenced by ZeroMQ until each frame is
// written. Persist returns only once no frame is held: replicas past the
// quorum that still answer get `straggler_wait` to finish; any other replica
// holding frames (stopped, dead, slow) has its connection closed, which
// drops them, and reopened; it is caught up on a later Persist.
//
// A failed Persist may have made the epoch durable on fewer than `quorum`
// replicas; the retry (same epoch, same pages) is acknowledged by those as a
// resend, and a later reader may recover that epoch. A Persist refused as
// superseded may likewise have reached a quorum; either way the writer is
// fenced and must stop.
//
// Thread safety: Persist is called by one thread at a time; ReadRun by any
// number of threads at once, also during Persist (fetches use their own
// connections, never the shipping ones).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "base/page_io.h"
#include "base/status.h"
#include "replication/curve_auth.h"
#include "replication/placement.h"
#include "replication/wire.h"

namespace pheap {

struct Received;
class PeerChannel;

struct ReplicaClientOptions {
  ReplicationConfig replication;  // resolved: ResolveReplication or ReplicationFromConfig
  std::optional<CurveClientKeys> keys;  // absent: no encryption (loopback peers only)
  // Writer: claim a term at Open. A reader (recovery into another process,
  // inspection) does not, and its Persist is refused.
  bool claim = true;
  // Persist gives up after this long without a quorum, with an error naming
  // every replica's state.
  std::chrono::milliseconds timeout{5000};
  // Open gives up after this long without k - W + 1 replicas (HELLO and
  // the claim together); absent: `timeout`. Replicas that are up answer within a few
  // round trips, so a program that would rather start without its peers
  // than wait for them sets it short.
  std::optional<std::chrono::milliseconds> open_timeout;
  // A replica silent this long is sent its request again.
  std::chrono::milliseconds resend{500};
  // One FETCH on one replica; on expiry the next replica is asked.
  std::chrono::milliseconds fetch_timeout{1000};
  // After the quorum, replicas still answering get this long to finish too,
  // so a healthy but slower replica keeps its connection (see Persist).
  std::chrono::milliseconds straggler_wait{50};
  uint64_t frame_bytes = wire::kPreferredPagesBytes;
  uint64_t retain_max = uint64_t{256} << 20;
};

// What one replica is known to hold (for inspection and tests).
struct ReplicaState {
  std::string endpoint;
  bool answered = false;    // answered HELLO at Open
  Epoch durable = 0;        // last durable epoch known to be there
  Term promised = 0;        // its promised term, as last seen
  Term image_term = 0;      // the term that wrote its durable epoch, as of HELLO
  bool installing = false;  // an image is being installed on it
};

class ReplicaClient final : public PageSource, public EpochSink {
 public:
  // Computes the replica set of heap `name`, asks each replica for its
  // manifest (HELLO) and, for a writer, claims term (highest promised + 1)
  // from k - W + 1 of them (ClaimQuorum: with W = 1, every replica). Errors:
  // fewer answered within the timeout (kTimeout, naming how many answered,
  // how many were needed, and each silent replica); the claim refused by
  // enough replicas that k - W + 1 cannot grant it (kSuperseded, naming the
  // newer term); a bad configuration (kInvalidArgument).
  static Result<std::unique_ptr<ReplicaClient>> Open(const std::string& name, const ReplicaClientOptions& options);
  ~ReplicaClient() override;
  ReplicaClient(const ReplicaClient&) = delete;
  ReplicaClient& operator=(const ReplicaClient&) = delete;

  // The newest durable image among the replicas that answered at Open
  // (epoch 0, base and size 0 when none holds the heap), advanced by each
  // successful Persist.
  ImageInfo image() const;
  // The writer's own local store holds `local`, a durable image newer than
  // every replica's by (term, epoch) (NewerImage): its later epochs never
  // reached a quorum (the writer died between its local fdatasync and the
  // acknowledgements), or the replicas are new to the heap. No newer epoch
  // is durable anywhere (k - W + 1 answered at Open), so `local` becomes
  // this writer's image and every replica is installed from the image
  // source before it counts. An image of term 0 (a store that lived
  // without peers) is taken as one of this writer's term.
  // REQUIRES: a writer (claim); called once after Open, before Persist.
  void AdoptImage(const ImageInfo& local);
  Term term() const { return term_; }  // claimed term; 0 for a reader
  const std::vector<std::string>& replicas() const { return endpoints_; }
  std::vector<ReplicaState> state() const;

  // Fills pages [first, first + count) of the durable image from the first
  // replica known to hold it (in placement order, replicas that recently
  // failed last). A reply is accepted only if it serves the durable epoch
  // or a newer one and every page matches its XXH3; a timeout, an error
  // (CORRUPT_PAGE included) or a mismatch moves on to the next replica.
  // Fails (kCorruption if any replica sent damaged data, else kTimeout)
  // naming each replica's answer when none could serve the run.
  Status ReadRun(Pgno first, uint32_t count, uint8_t* out, uint64_t* present) override;

  // Checking (pheap check), replica by replica: ReadRunFrom reads as
  // ReadRun does but from replica `i` of replicas() alone, and *damaged gets
  // the page it found damaged there (a CORRUPT_PAGE answer, whose message
  // names the peer's file and offset, or an XXH3 mismatch). RepairOn sends
  // replica `i` a good copy of page `pgno` of the durable image and waits
  // for its answer: kInvalidArgument if it holds another version of the
  // page (it moved on, or never had this one), other errors if it did not
  // answer or could not write.
  Status ReadRunFrom(size_t i, Pgno first, uint32_t count, uint8_t* out, uint64_t* present, Pgno* damaged);
  Status RepairOn(size_t i, Pgno pgno, const uint8_t* page);

  // Removes the heap from every replica (DROP, fenced by the claimed term:
  // a writer of an older term is refused from then on). One status per
  // replica, in replicas() order. REQUIRES: a writer (options.claim).
  std::vector<Status> RemoveHeap();

  // Ships `e` and returns once `quorum` replicas acknowledged its commit.
  // Nothing is shipped before `quorum` replicas granted this writer's term
  // (HoldTerm): after an open that met fewer, the first Persist asks the
  // others again. Fails, leaving e not durable (the caller may retry the
  // same epoch): kSuperseded naming the newer term when a replica promised
  // one (or this term to another writer); kTimeout naming each replica's
  // state when no quorum acknowledged within the timeout, and saying so
  // when fewer than `quorum` answered at all. e.data is not referenced
  // after Persist returns.
  // REQUIRES: e.image.epoch > image().epoch; a writer (options.claim).
  Status Persist(const SealedEpoch& e) override;

  // Where installs read the durable image from (the writer's local store,
  // say); null: from the other replicas. `source_image`, if given, says
  // which image the source holds (it may run ahead of the replicas while an
  // epoch is in flight): an install closes only at an epoch no read can have
  // been newer than, or at the epoch in flight when the source holds all of
  // it. Waits for a read in progress; the source must stay valid until it
  // is replaced or this client is destroyed.
  void SetImageSource(PageSource* source, std::function<ImageInfo()> source_image = {});

  struct Replica;  // replica_internal.h

 private:
  struct Retained;
  struct Encoded;
  struct Round;
  struct Install;
  ReplicaClient(std::string name, const ReplicaClientOptions& options);
  std::chrono::milliseconds OpenTimeout() const { return options_.open_timeout.value_or(options_.timeout); }
  // How the replicas an open needs follow from k and W, for its errors.
  std::string WhyNeeded() const;
  // Both give up at `deadline` (Open's, from OpenTimeout).
  Status Hello(std::chrono::steady_clock::time_point deadline);
  // Asks the replicas that have not answered to grant term_, until `needed`
  // granted it (then the silent get one resend interval more, until `want`
  // did), too many refused for that, or `deadline`. Errors name `why`
  // `needed` are needed and the wait, `waited`.
  Status Claim(std::chrono::steady_clock::time_point deadline, size_t needed, size_t want, const std::string& why,
               std::chrono::milliseconds waited);
  // Records replica i's answer to the claim (once: a verdict on term_ is final).
  void NoteClaimReply(size_t i, const wire::TermReplyBody& t);
  // Returns once W replicas granted term_ (asking again those that have
  // not answered); Persist ships epoch `epoch` only then.
  Status HoldTerm(Epoch epoch);
  size_t CountClaims(int verdict) const;
  // Waits up to `wait` for replies on the shipping connections and hands
  // each to `on` with the replica's index.
  void PollReplies(std::chrono::milliseconds wait, const std::function<void(size_t, const Received&)>& on);
  // prev_term: the term that wrote epoch image.epoch - 1 (COMMIT carries it,
  // so a replica never extends an image another writer wrote).
  Encoded Encode(const ImageInfo& image, Term prev_term, const std::vector<Pgno>& pages, const uint8_t* data,
                 const std::vector<Run>& discarded);
  void OnShipReply(const SealedEpoch& e, const Encoded& enc, std::vector<Round>& rounds, size_t i, const Received& m);
  void CatchUp(const Encoded& enc, Round& round, size_t i, Epoch from, Epoch to);
  void Settle(const SealedEpoch& e, const std::vector<Round>& rounds);
  void NoteFailures(Epoch epoch, const std::vector<Round>& rounds);
  std::shared_ptr<const Retained> Retain(const SealedEpoch& e, Term prev_term);
  // Replica i holds an image this writer did not write: it counts no more
  // and is installed anew.
  void Diverged(std::vector<Round>& rounds, size_t i, std::string why);
  const Retained* FindRetained(Epoch epoch) const;
  // Installs (replica_install.cc).
  void StartInstall(size_t i);
  void InstallLoop(size_t i);
  Status InstallOnce(size_t i);
  Status SendParts(PeerChannel& ch, Install& inst);
  // *label: the durable epoch before the read, which every page read is
  // at least as new as; *newest: the newest epoch the read may have seen;
  // *whole_at: the epoch
  // the image source held from before the read to after it (0 if it moved,
  // or the read was not from the source).
  Status ReadImageRun(Pgno first, uint32_t count, uint8_t* out, uint64_t* present, Epoch* label, Epoch* newest,
                      Epoch* whole_at);
  void NotifyInstalls(std::shared_ptr<const Retained> kept);
  Result<std::unique_ptr<Received>> InstallCall(PeerChannel& ch, const wire::OutMessage& m, wire::Error* refused = nullptr);
  Result<std::unique_ptr<PeerChannel>> TakeFetchChannel(Replica& r);
  void SendRepair(Replica& r, Epoch epoch, Pgno pgno, const uint8_t* page);
  // *damaged: the page found damaged there (a CORRUPT_PAGE answer, or an
  // XXH3 mismatch), left alone otherwise.
  // Takes only pages of epoch `want` written in `want_term` (or of the
  // epoch this writer is persisting).
  Status FetchFrom(Replica& r, Epoch want, Term want_term, Pgno first, uint32_t count, uint8_t* out, uint64_t* present,
                   Pgno* damaged);
  std::string Describe() const;

  zmq::context_t ctx_;  // first member: outlives every socket
  std::string name_;
  HeapId heap_id_ = 0;
  ReplicaClientOptions options_;
  std::vector<std::string> endpoints_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  uint64_t claimant_[2] = {0, 0};
  Term term_ = 0;
  // W replicas granted term_: no other writer can claim it, so this one may
  // write epochs named by it (see Persist).
  std::atomic<bool> owns_term_{false};
  bool newer_at_claim_ = false;         // a grant named an image newer than HELLO's
  ImageInfo image_;                     // guarded by: Persist's caller
  std::atomic<Epoch> durable_{0};       // image_.epoch, for ReadRun
  std::atomic<Term> durable_term_{0};   // image_.term, stored after durable_
  uint64_t next_request_id_ = 0;
  uint64_t max_frame_pages_ = wire::kMaxPagesPerMessage;  // lowered by the replicas' manifests
  std::deque<std::shared_ptr<const Retained>> retained_;  // ascending epochs
  uint64_t retained_bytes_ = 0;

  // Installs: install_mu_ orders a Persist's publication of its epoch with
  // the installs that must take it.
  std::atomic<Epoch> attempting_{0};    // the epoch Persist works on (or last did)
  std::atomic<bool> stopping_{false};
  std::mutex install_mu_;
  ImageInfo durable_image_;             // guarded by install_mu_: image_
  std::vector<Install*> installs_;      // guarded by install_mu_
  std::mutex source_mu_;                // held while reading the image source
  PageSource* image_source_ = nullptr;  // guarded by source_mu_
  std::function<ImageInfo()> source_image_;
};

}  // namespace pheap
