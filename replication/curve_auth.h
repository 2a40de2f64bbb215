// CURVE keys and the ZAP handler that enforces the allow-list.
//
// A keys directory holds:
//   peer.key         this machine's secret key, Z85 (40 characters), mode 0600
//   peer.pub         its public key, Z85
//   authorized/*.pub public keys (Z85, one per file) allowed to connect to a
//                    peer running with this directory
//   server.pub       (clients only, optional) the public key of the peer to
//                    connect to; when absent, peer.pub is used, which fits a
//                    cluster whose machines share one key pair
//
// Without a ZAP handler, a CURVE server accepts any client key; the peer
// therefore never runs CURVE without one.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "base/status.h"

namespace pheap {

struct CurveKeyPair {
  std::string public_z85;  // 40 characters
  std::string secret_z85;
};

// What a client needs to reach a CURVE peer.
struct CurveClientKeys {
  CurveKeyPair own;
  std::string server_public_z85;
};

Result<CurveKeyPair> NewCurveKeyPair();
// Writes dir/peer.key (0600) and dir/peer.pub and creates dir/authorized/.
// Refuses (kBusy) to overwrite an existing peer.key.
Status GenerateKeyPair(const std::string& dir);
// Reads dir/peer.key and derives its public key.
Result<CurveKeyPair> LoadKeyPair(const std::string& dir);
// Reads one Z85 public key file.
Result<std::string> LoadPublicKey(const std::string& path);
// The public keys in dir/authorized/*.pub, as 32-byte binary keys. A file
// that does not hold a key is an error naming it.
Result<std::vector<std::array<uint8_t, 32>>> LoadAuthorizedKeys(const std::string& dir);
Result<CurveClientKeys> LoadClientKeys(const std::string& dir);

// Sets CURVE client options on `s` (before connect).
void ApplyCurveClient(zmq::socket_t& s, const CurveClientKeys& keys);
// Sets CURVE server options on `s` (before bind).
void ApplyCurveServer(zmq::socket_t& s, const CurveKeyPair& keys);

// True for endpoints only this machine can reach: ipc://, inproc://,
// tcp://127.x.x.x, tcp://localhost, tcp://[::1].
bool IsLoopbackEndpoint(const std::string& endpoint);

// Answers ZAP requests (RFC 27) on inproc://zeromq.zap.01 of `ctx`: CURVE
// clients whose public key is on the list are allowed, everything else is
// denied. Start it before the server socket binds; Stop (or destruction)
// before the context ends.
class ZapHandler {
 public:
  static Result<std::unique_ptr<ZapHandler>> Start(zmq::context_t& ctx, std::vector<std::array<uint8_t, 32>> allowed);
  ~ZapHandler();
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;
  void Stop();
  uint64_t denied() const { return denied_.load(std::memory_order_relaxed); }

 private:
  ZapHandler(zmq::socket_t sock, std::vector<std::array<uint8_t, 32>> allowed);
  void Loop();

  zmq::socket_t sock_;
  std::set<std::array<uint8_t, 32>> allowed_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> denied_{0};
  std::thread thread_;
};

}  // namespace pheap
