// PeerChannel: one client connection (a ZeroMQ DEALER) to a peer, speaking
// the wire protocol. It sends encoded messages and receives decoded ones; it
// knows nothing of replica sets or quorums. `pheap peer status`, the tests
// and the benchmarks use it directly; the replica client builds on it.
//
// A channel is one TCP connection: open a second channel for demand fetches
// so they never queue behind bulk kPages traffic on the wire (the peer
// serves kFetch on separate threads, see peer_server.h).
//
// Thread safety: none; one thread uses a channel at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "base/status.h"
#include "replication/curve_auth.h"
#include "replication/wire.h"

namespace pheap {

// A received message: its frames, and the decoded view into them.
struct Received {
  std::vector<zmq::message_t> frames;
  wire::Message msg;
};

class PeerChannel {
 public:
  // Connects (asynchronously, as ZeroMQ does) to `endpoint`. `keys` null:
  // no encryption. `ctx` must outlive the channel.
  static Result<std::unique_ptr<PeerChannel>> Connect(zmq::context_t& ctx, const std::string& endpoint,
                                                      const CurveClientKeys* keys);
  PeerChannel(const PeerChannel&) = delete;
  PeerChannel& operator=(const PeerChannel&) = delete;

  uint64_t NextRequestId() { return ++last_request_id_; }

  // Queues `m` for sending, copying its page data.
  Status Send(const wire::OutMessage& m);
  // As Send, but the page data goes by reference: ZeroMQ calls
  // release(data, hint) from its I/O thread once it no longer needs it.
  Status SendZeroCopy(const wire::OutMessage& m, zmq_free_fn* release, void* hint);
  // Sends raw frames as they are: for tests of malformed input.
  Status SendFrames(const std::vector<std::string>& frames);

  // Waits up to `timeout` for the next message and decodes it. kTimeout if
  // none came; a message that does not decode is an error naming why.
  Result<std::unique_ptr<Received>> Receive(std::chrono::milliseconds timeout);
  // Send, then Receive until the reply carrying m's request id (other
  // messages, late replies to earlier requests, are dropped). `timeout`
  // bounds the send too (Send alone waits up to 5 s for a connection).
  Result<std::unique_ptr<Received>> Call(const wire::OutMessage& m, std::chrono::milliseconds timeout);

  zmq::socket_t& socket() { return sock_; }

 private:
  explicit PeerChannel(zmq::socket_t s) : sock_(std::move(s)) {}
  Status SendParts(const wire::OutMessage& m, zmq::message_t data);

  zmq::socket_t sock_;
  uint64_t last_request_id_ = 0;
};

// The reply's kError as a Status (ok if it is not an error reply).
Status ErrorStatus(const Received& r);

}  // namespace pheap
