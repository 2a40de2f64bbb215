// The replica client's per-replica state, shared by replica_client.cc
// (open, shipping) and replica_fetch.cc (demand fetches). Not a contract.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <deque>
#include <vector>

#include "replication/peer_channel.h"
#include "replication/replica_client.h"

namespace pheap {

using ReplicaClock = std::chrono::steady_clock;

inline int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(ReplicaClock::now().time_since_epoch()).count();
}

// Time left until `deadline`, never negative.
inline std::chrono::milliseconds Left(ReplicaClock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - ReplicaClock::now());
  return std::max(left, std::chrono::milliseconds(0));
}

// A replica's answer to the writer's CLAIM_TERM.
inline constexpr int kNoClaimReply = 0;
inline constexpr int kClaimRefused = 1;
inline constexpr int kClaimGranted = 2;

// A connection to one replica's endpoint.
Result<std::unique_ptr<PeerChannel>> DialReplica(zmq::context_t& ctx, const std::string& endpoint,
                                                 const std::optional<CurveClientKeys>& keys);

// A copy of an epoch some replica has not acknowledged, kept to catch it up.
struct ReplicaClient::Retained {
  ImageInfo image;
  Term prev_term = 0;  // the term that wrote epoch image.epoch - 1
  std::vector<Pgno> pages;
  std::vector<uint8_t> data;
  std::vector<Run> discarded;
};

// One epoch as messages, encoded once and sent to every replica.
struct ReplicaClient::Encoded {
  std::vector<wire::OutMessage> pages;
  wire::OutMessage commit;
  uint64_t first_request_id = 0;  // of the first message: replies echoing an
                                  // earlier id answer an earlier Persist
};

struct ReplicaClient::Replica {
  std::string endpoint;

  // ---- used only by the thread in Open or Persist ----
  std::unique_ptr<PeerChannel> ship;
  bool answered = false;          // answered HELLO at Open
  wire::ManifestBody manifest{};  // its answer
  ReplicaClock::time_point heard{};  // its last reply on `ship`
  std::string failing;               // the cause of its last refusal, once logged ("" after an ack)

  // Zero-copy PAGES frames ZeroMQ still holds for `ship`: the release
  // callback runs on ZeroMQ's I/O thread.
  std::atomic<int64_t> in_flight{0};

  // ---- shared with fetching threads ----
  std::atomic<Epoch> durable{0};   // last durable epoch known to be there
  std::atomic<Term> promised{0};
  std::atomic<int> claim{0};               // its verdict on this writer's term: kNoClaimReply, ...; final once given
  std::atomic<int64_t> avoid_until_ms{0};  // failed a fetch recently: ask others first

  // Idle fetch connections; a fetching thread takes one, or opens one.
  std::mutex fetch_mu;
  std::vector<std::unique_ptr<PeerChannel>> fetch_pool;

  // ---- install (replica_install.cc) ----
  std::atomic<bool> installing{false};  // left out of Persist until installed
  std::atomic<Epoch> install_floor{0};  // epochs after this must stay retained
  std::thread install_thread;           // started by Persist's thread, joined by it or the destructor
};

// One install's view of the writer's progress. Every field but `floor`
// (set once, at registration) is guarded by install_mu_: Persist feeds it.
struct ReplicaClient::Install {
  Epoch floor = 0;          // durable epoch when it began: every later epoch is a part
  ImageInfo covered;        // the newest durable epoch whose part it was given (or floor's image)
  std::deque<std::shared_ptr<const Retained>> parts;  // not sent yet
  uint64_t part_bytes = 0;
  bool lost = false;        // a part could not be kept: begin again
};

}  // namespace pheap
