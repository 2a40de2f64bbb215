#include "replication/peer_channel.h"

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>

#include <span>

namespace pheap {

Result<std::unique_ptr<PeerChannel>> PeerChannel::Connect(zmq::context_t& ctx, const std::string& endpoint,
                                                          const CurveClientKeys* keys) {
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(wire::kMaxFrameBytes));
  // A cut is found by the kernel, not by ZeroMQ heartbeats: a PING that a
  // peer reads from a connection that failed while the peer's input was
  // stopped by its high-water mark trips an assertion in libzmq 4.3
  // (!_io_error) and aborts the peer. Keepalive probes an idle connection
  // (dead after about 6 s); TCP_MAXRT below bounds unacknowledged data.
  s.set(zmq::sockopt::tcp_keepalive, 1);
  s.set(zmq::sockopt::tcp_keepalive_idle, 1);
  s.set(zmq::sockopt::tcp_keepalive_intvl, 1);
  s.set(zmq::sockopt::tcp_keepalive_cnt, 5);
  // No message limit on the queue: an epoch of more frames than ZeroMQ's
  // default 1000 would have its tail refused, and be shipped again from the
  // start. What is queued is bounded anyway: frames refer to the staging
  // buffer, and a replica that does not take an epoch has its connection
  // closed, dropping them (ReplicaClient::Settle).
  s.set(zmq::sockopt::sndhwm, 0);
  // Keepalive does not probe while sent bytes wait for their ACK, and TCP
  // alone keeps such a connection for minutes, retransmitting at ever
  // longer intervals, so a healed path went unused. The kernel drops a
  // connection whose sent bytes stay unacknowledged this long, and ZeroMQ
  // dials again at once (every 100 ms while there is no route).
  s.set(zmq::sockopt::tcp_maxrt, 5000);
  // A DEALER with no usable connection (peer down, handshake refused) blocks
  // in send; bound it so a caller sees kTimeout instead.
  s.set(zmq::sockopt::sndtimeo, 5000);
  if (keys != nullptr) ApplyCurveClient(s, *keys);
  try {
    s.connect(endpoint);
  } catch (const zmq::error_t& e) {
    return Status::InvalidArgument(fmt::format("cannot connect to peer {}: {}", endpoint, e.what()));
  }
  return std::unique_ptr<PeerChannel>(new PeerChannel(std::move(s)));
}

Status PeerChannel::SendParts(const wire::OutMessage& m, zmq::message_t data) {
  const bool has_data = m.header.payload_frames == 2;
  const bool has_body = m.header.payload_frames >= 1;
  try {
    auto h = m.header_bytes();
    // Only the first part can time out: once it is queued, ZeroMQ takes the
    // rest of the message whole.
    if (!sock_.send(zmq::const_buffer(h.data(), h.size()), has_body ? zmq::send_flags::sndmore : zmq::send_flags::none))
      return Status::Timeout(fmt::format("sending {}: the peer is not reachable (down, or refused our key)", wire::TypeName(m.header.type)));
    if (has_body) sock_.send(zmq::const_buffer(m.body.data(), m.body.size()), has_data ? zmq::send_flags::sndmore : zmq::send_flags::none);
    if (has_data) sock_.send(data, zmq::send_flags::none);
  } catch (const zmq::error_t& e) {
    return Status::IoError(fmt::format("sending {}: {}", wire::TypeName(m.header.type), e.what()), e.num());
  }
  return Status::Ok();
}

Status PeerChannel::Send(const wire::OutMessage& m) { return SendParts(m, zmq::message_t(m.data, m.data_bytes)); }

Status PeerChannel::SendZeroCopy(const wire::OutMessage& m, zmq_free_fn* release, void* hint) {
  return SendParts(m, zmq::message_t(const_cast<uint8_t*>(m.data), m.data_bytes, release, hint));
}

Status PeerChannel::SendFrames(const std::vector<std::string>& frames) {
  try {
    for (size_t i = 0; i < frames.size(); ++i)
      if (!sock_.send(zmq::buffer(frames[i]), i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none))
        return Status::Timeout("sending raw frames: the peer is not reachable");
  } catch (const zmq::error_t& e) {
    return Status::IoError(fmt::format("sending raw frames: {}", e.what()), e.num());
  }
  return Status::Ok();
}

Result<std::unique_ptr<Received>> PeerChannel::Receive(std::chrono::milliseconds timeout) {
  // Any thread may fetch, and a signal (a commit's safepoint, the program's
  // own) interrupts the wait: it goes on until the deadline.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto r = std::make_unique<Received>();
  try {
    for (;;) {
      zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      int n = zmq_poll(&item, 1, std::max<long>(0, left.count()));
      if (n > 0) break;
      if (n == 0 || zmq_errno() != EINTR || left.count() <= 0)
        return Status::Timeout(fmt::format("no message from the peer within {} ms", timeout.count()));
    }
    do {
      zmq::message_t m;
      if (!sock_.recv(m, zmq::recv_flags::dontwait)) break;
      r->frames.push_back(std::move(m));
    } while (r->frames.back().more());
  } catch (const zmq::error_t& e) {
    return Status::IoError(fmt::format("receiving from the peer: {}", e.what()), e.num());
  }
  if (r->frames.empty()) return Status::Timeout("no message from the peer");
  // Views are taken only now that the frames have their final place.
  std::vector<std::span<const uint8_t>> spans;
  for (const auto& f : r->frames) spans.emplace_back(static_cast<const uint8_t*>(f.data()), f.size());
  wire::ErrorCode code{};
  Status s = wire::Decode(spans, &r->msg, &code);
  if (!s.ok()) return s.Annotate("reply from the peer");
  return r;
}

Result<std::unique_ptr<Received>> PeerChannel::Call(const wire::OutMessage& m, std::chrono::milliseconds timeout) {
  sock_.set(zmq::sockopt::sndtimeo, static_cast<int>(timeout.count()));
  PHEAP_RETURN_IF_ERROR(Send(m));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) left = std::chrono::milliseconds(0);
    auto r = Receive(left);
    if (!r.ok() || (*r)->msg.header.request_id == m.header.request_id) return r;
  }
}

Status ErrorStatus(const Received& r) {
  const auto* e = std::get_if<wire::Error>(&r.msg.body);
  if (e == nullptr) return Status::Ok();
  std::string text = fmt::format("peer error {}: {}", wire::ErrorCodeName(static_cast<uint16_t>(e->code)), e->message);
  switch (e->code) {
    case wire::ErrorCode::kSuperseded: return Status::Superseded(text);
    case wire::ErrorCode::kCorruptPage:
    case wire::ErrorCode::kPageChecksum: return Status::Corruption(text);
    case wire::ErrorCode::kUnknownHeap: return Status::NotFound(text);
    case wire::ErrorCode::kBusy:
    case wire::ErrorCode::kInboxFull: return Status::Busy(text);
    case wire::ErrorCode::kStoreError:
      // The replica's own errno (ENOSPC, EIO, ...): REPAIR names a page there instead.
      return Status::IoError(text, e->detail > 0 && e->detail < 4096 ? static_cast<int>(e->detail) : EIO);
    default: return Status::InvalidArgument(text);
  }
}

}  // namespace pheap
