// The peer daemon: serves the page stores of any number of heaps to replica
// clients over ZeroMQ (protocol: wire_format.h, docs/wire-protocol.md).
//
// Threads:
//   I/O thread    owns the ROUTER socket: receives, checks each message
//                 (malformed ones are answered with kError right here),
//                 queues it, and sends the replies the workers produce.
//   write thread  kClaimTerm, kPages, kCommit, the install messages and
//                 kRepair, in arrival order (so a commit follows its pages,
//                 and each promise is durable before its reply).
//   read threads  kHello, kFetch, kStatus: a demand fetch never waits behind
//                 a commit's fdatasync. A client keeps fetches off its bulk
//                 connection by opening a second channel to the same
//                 endpoint.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"
#include "replication/curve_auth.h"
#include "replication/peer_heaps.h"

namespace pheap {

struct PeerOptions {
  std::string endpoint;     // ZeroMQ endpoint to bind, e.g. tcp://0.0.0.0:7400
  std::string dir;          // one subdirectory per heap
  std::string keys_dir;     // CURVE keys (curve_auth.h); empty: no encryption
  bool insecure = false;    // allow a non-loopback endpoint without keys
  int read_threads = 2;
  InboxLimits inbox;        // per heap, pages awaiting COMMIT (peer_heaps.h)
  PageStoreOptions store;   // every heap's store (peer_heaps.h: HeapTable::Open)
  bool compact = true;      // compact the stores in the background
  // A client connection the kernel cannot reach for this long (keepalive
  // probes unanswered, or data unacknowledged) is dropped.
  int dead_client_ms = 5000;
};

class PeerServer {
 public:
  // Checks the options, opens the heaps found in options.dir, binds and
  // starts serving. Errors name what is wrong: a non-loopback endpoint
  // without keys (unless insecure), unreadable keys, an endpoint in use.
  static Result<std::unique_ptr<PeerServer>> Start(const PeerOptions& options);
  ~PeerServer();  // Stop()
  PeerServer(const PeerServer&) = delete;
  PeerServer& operator=(const PeerServer&) = delete;

  // Stops serving, finishes the request in hand, closes every store.
  // Idempotent; any thread but the server's own.
  void Stop();
  // The endpoint bound (resolves a tcp port given as *).
  const std::string& endpoint() const;

  class Impl;

 private:
  explicit PeerServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// `pheap peer`: runs a peer until SIGTERM or SIGINT, then stops it cleanly.
// Logs at info level unless PHEAP_LOG says otherwise. Returns the process
// exit code: 0 after a clean stop, 1 if it cannot start (the reason is
// logged).
int RunPeerDaemon(const PeerOptions& options);

// Asks the peer at `endpoint` what it holds (STATUS): its heaps, epochs,
// bytes stored, health. keys_dir: as for a client (curve_auth.h); empty
// for no encryption. Fails when the peer does not answer within `timeout`.
Result<wire::StatusReply> QueryPeerStatus(const std::string& endpoint, const std::string& keys_dir,
                                          std::chrono::milliseconds timeout);

// `pheap peer status ENDPOINT`: asks the peer for its heaps, epochs, bytes
// stored and clients connected, and prints them (a table, or JSON).
// keys_dir: as for a client (curve_auth.h); empty for no encryption.
// Returns 0, or 1 when the peer cannot be reached (said on stderr, or with
// json as {"endpoint", "error": {"code", "errno", "message"}} on stdout).
int PrintPeerStatus(const std::string& endpoint, const std::string& keys_dir, bool json);

}  // namespace pheap
