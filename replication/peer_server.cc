#include "replication/peer_server.h"

#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <span>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "base/log.h"
#include "base/thread.h"
#include "replication/peer_channel.h"
#include "replication/peer_heaps.h"
#include "replication/wire.h"

namespace pheap {
namespace {

// A request on its way from the I/O thread to a worker. The frames stay
// put inside the Job, so the decoded views into them stay valid.
struct Job {
  zmq::message_t route;
  std::vector<zmq::message_t> frames;
  wire::Message msg;
};

struct Outgoing {
  zmq::message_t route;
  Reply reply;
};

template <typename T>
class BlockingQueue {
 public:
  void Push(T v) {
    {
      std::lock_guard l(mu_);
      q_.push_back(std::move(v));
    }
    cv_.notify_one();
  }
  // False once closed and empty.
  bool Pop(T* out) {
    std::unique_lock l(mu_);
    cv_.wait(l, [&] { return closed_ || !q_.empty(); });
    if (q_.empty()) return false;
    *out = std::move(q_.front());
    q_.pop_front();
    return true;
  }
  void Close() {
    {
      std::lock_guard l(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<T> q_;
  bool closed_ = false;
};

void FreePages(void* data, void*) { std::free(data); }

// Messages read per poll wake-up before replies get their turn.
constexpr int kReceiveBatch = 64;
// Frames a request may have (header + body + data); more is malformed.
constexpr size_t kMaxFrames = 3;

}  // namespace

class PeerServer::Impl {
 public:
  explicit Impl(PeerOptions o) : opt_(std::move(o)) {}
  ~Impl() { Stop(); }

  Status Start();
  void Stop();
  const std::string& endpoint() const { return bound_; }

 private:
  void IoLoop();
  bool ReceiveOne();
  void ReplyNow(zmq::message_t route, Reply r);
  void Send(Outgoing& o);
  void SendQueued();
  void MonitorEvents();
  void Worker(BlockingQueue<std::unique_ptr<Job>>* q);
  void Post(Outgoing o);

  const PeerOptions opt_;
  std::string bound_;
  std::unique_ptr<HeapTable> table_;
  zmq::context_t ctx_;
  std::unique_ptr<ZapHandler> zap_;
  zmq::socket_t router_;
  zmq::socket_t monitor_;
  int wake_fd_ = -1;  // eventfd: workers ring it when a reply is queued
  std::atomic<bool> stop_{false};
  std::atomic<uint32_t> clients_{0};
  bool stopped_ = false;

  BlockingQueue<std::unique_ptr<Job>> writes_;
  BlockingQueue<std::unique_ptr<Job>> reads_;
  std::mutex out_mu_;
  std::vector<Outgoing> outbox_;
  std::thread io_;
  std::vector<std::thread> workers_;
};

Status PeerServer::Impl::Start() {
  const bool loopback = IsLoopbackEndpoint(opt_.endpoint);
  if (opt_.endpoint.empty() || opt_.dir.empty()) return Status::InvalidArgument("a peer needs an endpoint (--listen) and a directory (--dir)");
  if (opt_.keys_dir.empty() && !loopback && !opt_.insecure)
    return Status::InvalidArgument(fmt::format("endpoint {} is reachable from other machines and no keys were given: "
                                               "make keys with `pheap keygen DIR` and pass --keys DIR, or pass --insecure "
                                               "to serve pages unencrypted to anyone", opt_.endpoint));
  if (opt_.keys_dir.empty())
    PHEAP_LOG_WARN("peer on {}: no CURVE keys, traffic is unencrypted and unauthenticated{}", opt_.endpoint,
                   loopback ? " (loopback only)" : " (--insecure)");

  auto table = HeapTable::Open(opt_.dir, opt_.inbox, opt_.store, opt_.compact);
  if (!table.ok()) return table.status();
  table_ = std::move(table.value());

  router_ = zmq::socket_t(ctx_, zmq::socket_type::router);
  if (!opt_.keys_dir.empty()) {
    auto kp = LoadKeyPair(opt_.keys_dir);
    if (!kp.ok()) return kp.status();
    auto allowed = LoadAuthorizedKeys(opt_.keys_dir);
    if (!allowed.ok()) return allowed.status();
    if (allowed->empty()) PHEAP_LOG_WARN("no public keys in {}/authorized/: every client will be refused", opt_.keys_dir);
    PHEAP_LOG_INFO("peer on {}: CURVE on, public key {}, {} client keys allowed", opt_.endpoint, kp->public_z85, allowed->size());
    auto zap = ZapHandler::Start(ctx_, std::move(allowed.value()));
    if (!zap.ok()) return zap.status();
    zap_ = std::move(zap.value());
    ApplyCurveServer(router_, *kp);
  }
  router_.set(zmq::sockopt::router_mandatory, 1);
  router_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(wire::kMaxFrameBytes));
  router_.set(zmq::sockopt::rcvhwm, 64);  // bounds memory: 64 messages of up to 64 MiB per client
  // Dead clients are found by the kernel, not by ZeroMQ's heartbeat: in
  // libzmq 4.3 a heartbeat timer that fires on a connection whose input the
  // high-water mark stopped, after that connection failed, writes to it and
  // trips an assertion (!_io_error) that aborts the peer; a client resuming
  // after a long stop with its queue full does exactly that.
  router_.set(zmq::sockopt::tcp_keepalive, 1);
  router_.set(zmq::sockopt::tcp_keepalive_idle, 1);
  router_.set(zmq::sockopt::tcp_keepalive_intvl, 1);
  router_.set(zmq::sockopt::tcp_keepalive_cnt, std::max(1, opt_.dead_client_ms / 1000));
  router_.set(zmq::sockopt::tcp_maxrt, opt_.dead_client_ms);
  router_.set(zmq::sockopt::linger, 0);
  try {
    router_.bind(opt_.endpoint);
  } catch (const zmq::error_t& e) {
    return Status::Busy(fmt::format("cannot listen on {}: {}; check the endpoint and that no other peer uses it", opt_.endpoint, e.what()));
  }
  bound_ = router_.get(zmq::sockopt::last_endpoint);

  const std::string mon = fmt::format("inproc://pheap-peer-monitor-{}", static_cast<const void*>(this));
  if (zmq_socket_monitor(router_.handle(), mon.c_str(), ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) != 0)
    return Status::IoError("starting the connection monitor", zmq_errno());
  monitor_ = zmq::socket_t(ctx_, zmq::socket_type::pair);
  monitor_.connect(mon);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return Status::FromErrno("eventfd", errno);

  io_ = StartThread([this] { IoLoop(); });
  workers_.push_back(StartThread([this] { Worker(&writes_); }));
  for (int i = 0; i < std::max(1, opt_.read_threads); ++i) workers_.push_back(StartThread([this] { Worker(&reads_); }));
  PHEAP_LOG_INFO("peer listening on {} (dir {})", bound_, opt_.dir);
  return Status::Ok();
}

void PeerServer::Impl::Stop() {
  if (stopped_) return;
  stopped_ = true;
  stop_.store(true);
  if (io_.joinable()) io_.join();
  writes_.Close();
  reads_.Close();
  for (auto& t : workers_) t.join();
  workers_.clear();
  if (router_) zmq_socket_monitor(router_.handle(), nullptr, 0);
  monitor_.close();
  router_.close();
  if (zap_) zap_->Stop();
  if (wake_fd_ >= 0) close(wake_fd_);
  wake_fd_ = -1;
  if (table_) table_->Close();
  ctx_.close();
  PHEAP_LOG_INFO("peer on {} stopped", bound_.empty() ? opt_.endpoint : bound_);
}

void PeerServer::Impl::IoLoop() {
  zmq::pollitem_t items[] = {
      {router_.handle(), 0, ZMQ_POLLIN, 0},
      {nullptr, wake_fd_, ZMQ_POLLIN, 0},
      {monitor_.handle(), 0, ZMQ_POLLIN, 0},
  };
  while (!stop_.load(std::memory_order_relaxed)) {
    try {
      zmq::poll(items, 3, std::chrono::milliseconds(100));  // the timeout lets Stop be seen
      if (items[0].revents & ZMQ_POLLIN)
        for (int i = 0; i < kReceiveBatch && ReceiveOne(); ++i) {}
      if (items[1].revents & ZMQ_POLLIN) {
        uint64_t n;
        [[maybe_unused]] ssize_t r = read(wake_fd_, &n, sizeof(n));
      }
      SendQueued();
      if (items[2].revents & ZMQ_POLLIN) MonitorEvents();
    } catch (const zmq::error_t& e) {
      PHEAP_LOG_ERROR("peer I/O loop: {}", e.what());
    }
  }
}

// Reads one message; false when none is waiting.
bool PeerServer::Impl::ReceiveOne() {
  auto job = std::make_unique<Job>();
  if (!router_.recv(job->route, zmq::recv_flags::dontwait)) return false;
  bool more = job->route.more();
  uint64_t bytes = 0;
  size_t count = 0;
  while (more) {  // the parts of one message arrive together
    zmq::message_t f;
    if (!router_.recv(f, zmq::recv_flags::none)) break;
    more = f.more();
    bytes += f.size();
    if (++count <= kMaxFrames) job->frames.push_back(std::move(f));
  }
  wire::Header raw{};
  if (!job->frames.empty()) std::memcpy(&raw, job->frames[0].data(), std::min(job->frames[0].size(), sizeof(raw)));
  auto refuse = [&](wire::ErrorCode code, const std::string& what) {
    // The header may be garbage: echo its request id, best effort.
    wire::Header echo{};
    echo.type = raw.type;
    echo.request_id = job->frames.empty() || job->frames[0].size() < 16 ? 0 : raw.request_id;
    echo.heap_id = job->frames.empty() || job->frames[0].size() < 24 ? 0 : raw.heap_id;
    PHEAP_LOG_WARN("refused a message: {}", what);
    ReplyNow(std::move(job->route), Reply{wire::EncodeError({echo.request_id, echo.heap_id}, 0, 0, code, 0, what), nullptr});
    return true;
  };
  if (count > kMaxFrames) return refuse(wire::ErrorCode::kLengthMismatch, fmt::format("LENGTH_MISMATCH: a message of {} frames (a request has at most {})", count, kMaxFrames));
  if (bytes > wire::kMaxMessageBytes + sizeof(wire::Header))
    return refuse(wire::ErrorCode::kOversized, fmt::format("OVERSIZED: a message of {} bytes (at most {})", bytes, wire::kMaxMessageBytes));
  std::vector<std::span<const uint8_t>> spans;
  for (const auto& f : job->frames) spans.emplace_back(static_cast<const uint8_t*>(f.data()), f.size());
  wire::ErrorCode code{};
  if (Status s = wire::Decode(spans, &job->msg, &code); !s.ok()) return refuse(code, s.message());
  if (!wire::IsRequest(job->msg.type))
    return refuse(wire::ErrorCode::kUnknownType, fmt::format("UNKNOWN_TYPE: {} is a reply, a peer serves requests", wire::TypeName(raw.type)));
  switch (job->msg.type) {
    case wire::Type::kClaimTerm:
    case wire::Type::kPages:
    case wire::Type::kCommit:
    case wire::Type::kInstallBegin:
    case wire::Type::kInstallPages:
    case wire::Type::kInstallCommit:
    case wire::Type::kRepair:
    case wire::Type::kDrop: writes_.Push(std::move(job)); break;
    default: reads_.Push(std::move(job)); break;
  }
  return true;
}

void PeerServer::Impl::Worker(BlockingQueue<std::unique_ptr<Job>>* q) {
  std::unique_ptr<Job> job;
  while (q->Pop(&job)) {
    Reply r = table_->Handle(job->msg, clients_.load(std::memory_order_relaxed));
    Post(Outgoing{std::move(job->route), std::move(r)});
  }
}

void PeerServer::Impl::Post(Outgoing o) {
  {
    std::lock_guard l(out_mu_);
    outbox_.push_back(std::move(o));
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t w = write(wake_fd_, &one, sizeof(one));
}

void PeerServer::Impl::ReplyNow(zmq::message_t route, Reply r) {
  Outgoing o{std::move(route), std::move(r)};
  Send(o);
}

void PeerServer::Impl::SendQueued() {
  std::vector<Outgoing> batch;
  {
    std::lock_guard l(out_mu_);
    batch.swap(outbox_);
  }
  for (Outgoing& o : batch) Send(o);
}

void PeerServer::Impl::Send(Outgoing& o) {
  const wire::OutMessage& m = o.reply.msg;
  const auto more = zmq::send_flags::sndmore | zmq::send_flags::dontwait;
  try {
    // With ROUTER_MANDATORY a gone client fails here, before any part is queued.
    if (!router_.send(o.route, more)) {
      PHEAP_LOG_WARN("reply {} dropped: the client's queue is full (it will resend)", wire::TypeName(m.header.type));
      return;
    }
    auto h = m.header_bytes();
    const int frames = static_cast<int>(m.header.payload_frames);
    router_.send(zmq::const_buffer(h.data(), h.size()), frames > 0 ? more : zmq::send_flags::dontwait);
    if (frames >= 1) router_.send(zmq::const_buffer(m.body.data(), m.body.size()), frames > 1 ? more : zmq::send_flags::dontwait);
    if (frames == 2) {
      zmq::message_t data;
      if (o.reply.owned) data = zmq::message_t(o.reply.owned.release(), m.data_bytes, FreePages, nullptr);  // zero copy
      else data = zmq::message_t(m.data, m.data_bytes);
      router_.send(data, zmq::send_flags::dontwait);
    }
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) PHEAP_LOG_DEBUG("reply {} dropped: the client is gone", wire::TypeName(m.header.type));
    else PHEAP_LOG_WARN("sending reply {}: {}", wire::TypeName(m.header.type), e.what());
  }
}

void PeerServer::Impl::MonitorEvents() {
  for (;;) {
    zmq::message_t ev, addr;
    if (!monitor_.recv(ev, zmq::recv_flags::dontwait)) return;
    if (ev.more()) (void)monitor_.recv(addr, zmq::recv_flags::none);
    if (ev.size() < 2) continue;
    uint16_t event;
    std::memcpy(&event, ev.data(), sizeof(event));
    if (event == ZMQ_EVENT_ACCEPTED) {
      clients_.fetch_add(1, std::memory_order_relaxed);
      PHEAP_LOG_INFO("client connected ({} now)", clients_.load());
    } else if (event == ZMQ_EVENT_DISCONNECTED && clients_.load() > 0) {
      clients_.fetch_sub(1, std::memory_order_relaxed);
      PHEAP_LOG_INFO("client disconnected ({} now)", clients_.load());
    }
  }
}

// ---- PeerServer ----

PeerServer::PeerServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PeerServer::~PeerServer() { Stop(); }
void PeerServer::Stop() { impl_->Stop(); }
const std::string& PeerServer::endpoint() const { return impl_->endpoint(); }

Result<std::unique_ptr<PeerServer>> PeerServer::Start(const PeerOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  if (Status s = impl->Start(); !s.ok()) return s.Annotate("starting peer");
  return std::unique_ptr<PeerServer>(new PeerServer(std::move(impl)));
}

int RunPeerDaemon(const PeerOptions& options) {
  // A daemon says what it does unless told otherwise.
  SetDefaultLogLevel(LogLevel::kInfo);
  // Block the stop signals in every thread (ZeroMQ's included, created
  // after this) so sigwait below is the only one to take them.
  sigset_t stop_signals, old;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, &old);
  auto server = PeerServer::Start(options);
  if (!server.ok()) {
    PHEAP_LOG_ERROR("{}", server.status().ToString());
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return 1;
  }
  int sig = 0;
  sigwait(&stop_signals, &sig);
  PHEAP_LOG_INFO("peer: {} received, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  (*server)->Stop();
  server->reset();
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return 0;
}

namespace {

// A heap is failed when its store cannot be opened or its last write failed.
const char* Health(const wire::HeapStatus& s) {
  return (s.flags & (wire::kHeapFailed | wire::kHeapTrouble)) != 0 ? "failed" : "ok";
}

std::string JsonEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    else out += c;
  }
  return out;
}

}  // namespace

Result<wire::StatusReply> QueryPeerStatus(const std::string& endpoint, const std::string& keys_dir,
                                          std::chrono::milliseconds timeout) {
  std::optional<CurveClientKeys> keys;
  if (!keys_dir.empty()) {
    auto k = LoadClientKeys(keys_dir);
    if (!k.ok()) return k.status();
    keys = *k;
  }
  zmq::context_t ctx;
  auto ch = PeerChannel::Connect(ctx, endpoint, keys ? &*keys : nullptr);
  if (!ch.ok()) return ch.status();
  auto r = (*ch)->Call(wire::EncodeStatus((*ch)->NextRequestId()), timeout);
  if (!r.ok()) return r.status();
  if (Status s = ErrorStatus(**r); !s.ok()) return s;
  const auto* st = std::get_if<wire::StatusReply>(&(*r)->msg.body);
  if (st == nullptr) return Status::InvalidArgument("the peer answered STATUS with something else");
  return *st;
}

int PrintPeerStatus(const std::string& endpoint, const std::string& keys_dir, bool json) {
  auto fail = [&](const Status& s) {
    if (!json) {
      fmt::print(stderr, "pheap peer status {}: {}\n", endpoint, s.ToString());
      return 1;
    }
    fmt::print("{{\"endpoint\":\"{}\",\"error\":{{\"code\":\"{}\",\"errno\":{},\"message\":\"{}\"}}}}\n",
               JsonEscape(endpoint), s.CodeName(), s.err(), JsonEscape(s.ToString()));
    return 1;
  };
  auto reply = QueryPeerStatus(endpoint, keys_dir, std::chrono::seconds(5));
  if (!reply.ok()) return fail(reply.status());
  const wire::StatusReply* st = &*reply;
  if (json) {
    fmt::print("{{\"endpoint\":\"{}\",\"clients\":{},\"uptime_ms\":{},\"heaps\":[", endpoint, st->body.clients, st->body.uptime_ms);
    for (size_t i = 0; i < st->heaps.size(); ++i) {
      const auto& h = st->heaps[i];
      // Heap names are [A-Za-z0-9._-]: nothing to escape; error texts may need it.
      fmt::print(
          "{}{{\"name\":\"{}\",\"heap_id\":\"{:016x}\",\"epoch\":{},\"promised_term\":{},\"bytes_on_disk\":{},"
          "\"live_pages\":{},\"inbox_pages\":{},\"open\":{},\"failed\":{},\"health\":\"{}\",\"errno\":{},"
          "\"error\":\"{}\"}}",
          i ? "," : "", h.name, h.status.heap_id, h.status.epoch, h.status.promised_term, h.status.bytes_on_disk,
          h.status.live_pages, h.status.inbox_pages, (h.status.flags & wire::kHeapOpen) != 0,
          (h.status.flags & wire::kHeapFailed) != 0, Health(h.status), h.status.error_errno, JsonEscape(h.error));
    }
    fmt::print("]}}\n");
    return 0;
  }
  fmt::print("peer {}: {} heaps, {} clients connected, up {} s\n", endpoint, st->heaps.size(), st->body.clients, st->body.uptime_ms / 1000);
  if (!st->heaps.empty())
    fmt::print("{:<32} {:>10} {:>8} {:>14} {:>12} {:>8}  {:<8} {:<6}  {}\n", "heap", "epoch", "term", "bytes stored",
               "live pages", "inbox", "state", "health", "last error");
  for (const auto& h : st->heaps) {
    const char* state = (h.status.flags & wire::kHeapFailed) ? "FAILED" : (h.status.flags & wire::kHeapOpen) ? "open" : "no store";
    fmt::print("{:<32} {:>10} {:>8} {:>14} {:>12} {:>8}  {:<8} {:<6}  {}\n", h.name, h.status.epoch,
               h.status.promised_term, h.status.bytes_on_disk, h.status.live_pages, h.status.inbox_pages, state,
               Health(h.status), h.error.empty() ? "-" : h.error);
  }
  return 0;
}

}  // namespace pheap
