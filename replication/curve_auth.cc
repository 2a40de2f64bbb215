#include "replication/curve_auth.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <zmq_utils.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "base/log.h"
#include "base/os.h"
#include "base/thread.h"

namespace pheap {
namespace {

constexpr size_t kZ85KeyLength = 40;

// Reads a small text file whole (through os(), like every file access).
Result<std::string> ReadSmallFile(const std::string& path) {
  int fd = os().open(path.c_str(), O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno("opening " + path, -fd);
  char buf[256];
  ssize_t r = os().pread(fd, buf, sizeof(buf), 0);
  os().close(fd);
  if (r < 0) return Status::FromErrno("reading " + path, static_cast<int>(-r));
  return std::string(buf, static_cast<size_t>(r));
}

Status WriteNewFile(const std::string& path, const std::string& text, mode_t mode) {
  int fd = os().open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd == -EEXIST) return Status::Busy(fmt::format("{} exists already: remove it first to make a new key pair", path));
  if (fd < 0) return Status::FromErrno("creating " + path, -fd);
  ssize_t w = os().pwrite(fd, text.data(), text.size(), 0);
  int s = w == static_cast<ssize_t>(text.size()) ? os().fsync(fd) : (w < 0 ? static_cast<int>(w) : -EIO);
  os().close(fd);
  if (s < 0) return Status::FromErrno("writing " + path, -s);
  return Status::Ok();
}

// The Z85 key on the first line of `text`, checked to decode.
Result<std::string> ParseZ85Key(const std::string& text, const std::string& path) {
  std::string_view v(text);
  while (!v.empty() && (v.back() == '\n' || v.back() == '\r' || v.back() == ' ')) v.remove_suffix(1);
  uint8_t raw[32];
  std::string key(v);
  if (key.size() != kZ85KeyLength || zmq_z85_decode(raw, key.c_str()) == nullptr)
    return Status::InvalidArgument(fmt::format("{} does not hold a Z85 CURVE key (40 characters); make one with `pheap keygen`", path));
  return key;
}

Status Mkdir(const std::string& path, mode_t mode) {
  int r = os().mkdir(path.c_str(), mode);
  if (r < 0 && r != -EEXIST) return Status::FromErrno("creating directory " + path, -r);
  return Status::Ok();
}

}  // namespace

Result<CurveKeyPair> NewCurveKeyPair() {
  char pub[kZ85KeyLength + 1], sec[kZ85KeyLength + 1];
  if (zmq_curve_keypair(pub, sec) != 0)
    return Status::Unsupported("this libzmq was built without CURVE (libsodium); install one that has it");
  return CurveKeyPair{pub, sec};
}

Status GenerateKeyPair(const std::string& dir) {
  auto kp = NewCurveKeyPair();
  if (!kp.ok()) return kp.status();
  PHEAP_RETURN_IF_ERROR(Mkdir(dir, 0700));
  PHEAP_RETURN_IF_ERROR(Mkdir(dir + "/authorized", 0700));
  PHEAP_RETURN_IF_ERROR(WriteNewFile(dir + "/peer.key", kp->secret_z85 + "\n", 0600));
  PHEAP_RETURN_IF_ERROR(WriteNewFile(dir + "/peer.pub", kp->public_z85 + "\n", 0644));
  PHEAP_LOG_INFO("wrote CURVE key pair {}/peer.key and {}/peer.pub (public {})", dir, dir, kp->public_z85);
  return Status::Ok();
}

Result<CurveKeyPair> LoadKeyPair(const std::string& dir) {
  const std::string path = dir + "/peer.key";
  auto text = ReadSmallFile(path);
  if (!text.ok()) return text.status().Annotate("loading CURVE secret key (make one with `pheap keygen " + dir + "`)");
  auto secret = ParseZ85Key(*text, path);
  if (!secret.ok()) return secret.status();
  char pub[kZ85KeyLength + 1];
  if (zmq_curve_public(pub, secret->c_str()) != 0)
    return Status::Unsupported("this libzmq was built without CURVE (libsodium); install one that has it");
  return CurveKeyPair{pub, *secret};
}

Result<std::string> LoadPublicKey(const std::string& path) {
  auto text = ReadSmallFile(path);
  if (!text.ok()) return text.status();
  return ParseZ85Key(*text, path);
}

Result<std::vector<std::array<uint8_t, 32>>> LoadAuthorizedKeys(const std::string& dir) {
  std::vector<std::array<uint8_t, 32>> keys;
  const std::string adir = dir + "/authorized";
  std::error_code ec;
  for (const auto& de : std::filesystem::directory_iterator(adir, ec)) {
    if (de.path().extension() != ".pub") continue;
    auto key = LoadPublicKey(de.path().string());
    if (!key.ok()) return key.status();
    std::array<uint8_t, 32> raw{};
    zmq_z85_decode(raw.data(), key->c_str());
    keys.push_back(raw);
  }
  if (ec && ec != std::errc::no_such_file_or_directory) return Status::FromErrno("listing " + adir, ec.value());
  return keys;
}

Result<CurveClientKeys> LoadClientKeys(const std::string& dir) {
  auto own = LoadKeyPair(dir);
  if (!own.ok()) return own.status();
  std::error_code ec;
  std::string server = dir + "/server.pub";
  if (!std::filesystem::exists(server, ec)) server = dir + "/peer.pub";
  auto sp = LoadPublicKey(server);
  if (!sp.ok()) return sp.status().Annotate("loading the peer's public key");
  return CurveClientKeys{*own, *sp};
}

void ApplyCurveClient(zmq::socket_t& s, const CurveClientKeys& keys) {
  s.set(zmq::sockopt::curve_serverkey, keys.server_public_z85);
  s.set(zmq::sockopt::curve_publickey, keys.own.public_z85);
  s.set(zmq::sockopt::curve_secretkey, keys.own.secret_z85);
}

void ApplyCurveServer(zmq::socket_t& s, const CurveKeyPair& keys) {
  s.set(zmq::sockopt::curve_server, 1);
  s.set(zmq::sockopt::curve_secretkey, keys.secret_z85);
  // A domain makes libzmq consult the ZAP handler for every handshake.
  s.set(zmq::sockopt::zap_domain, "pheap");
}

bool IsLoopbackEndpoint(const std::string& e) {
  if (e.starts_with("ipc://") || e.starts_with("inproc://")) return true;
  if (!e.starts_with("tcp://")) return false;
  std::string_view host(e);
  host.remove_prefix(6);
  // A "source;destination" form connects out; the part after ';' is where.
  if (auto semi = host.find(';'); semi != std::string_view::npos) host.remove_prefix(semi + 1);
  return host.starts_with("127.") || host.starts_with("localhost:") || host.starts_with("[::1]:");
}

ZapHandler::ZapHandler(zmq::socket_t sock, std::vector<std::array<uint8_t, 32>> allowed)
    : sock_(std::move(sock)), allowed_(allowed.begin(), allowed.end()) {}

Result<std::unique_ptr<ZapHandler>> ZapHandler::Start(zmq::context_t& ctx, std::vector<std::array<uint8_t, 32>> allowed) {
  zmq::socket_t sock(ctx, zmq::socket_type::rep);
  sock.set(zmq::sockopt::linger, 0);
  try {
    sock.bind("inproc://zeromq.zap.01");
  } catch (const zmq::error_t& e) {
    return Status::Busy(fmt::format("cannot start the ZAP handler (inproc://zeromq.zap.01): {}", e.what()));
  }
  std::unique_ptr<ZapHandler> h(new ZapHandler(std::move(sock), std::move(allowed)));
  h->thread_ = StartThread([p = h.get()] { p->Loop(); });
  return h;
}

ZapHandler::~ZapHandler() { Stop(); }

void ZapHandler::Stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  sock_.close();
}

void ZapHandler::Loop() {
  zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
  while (!stop_.load()) {
    if (zmq::poll(&item, 1, std::chrono::milliseconds(100)) <= 0) continue;
    // RFC 27 request: version, request id, domain, address, identity,
    // mechanism, credentials...
    std::vector<zmq::message_t> req;
    do {
      zmq::message_t m;
      if (!sock_.recv(m, zmq::recv_flags::dontwait)) break;
      req.push_back(std::move(m));
    } while (req.back().more());
    // REP must answer every request, even one that is not a ZAP request.
    bool ok = false;
    if (req.size() >= 7 && req[5].to_string_view() == "CURVE" && req[6].size() == 32) {
      std::array<uint8_t, 32> key{};
      std::memcpy(key.data(), req[6].data(), 32);
      ok = allowed_.count(key) != 0;
      if (!ok) {
        char z85[kZ85KeyLength + 1];
        zmq_z85_encode(z85, key.data(), 32);
        PHEAP_LOG_WARN("refused a CURVE client from {}: its key {} is not in authorized/", req[3].to_string(), z85);
      }
    }
    if (!ok) denied_.fetch_add(1, std::memory_order_relaxed);
    const char* code = ok ? "200" : "400";
    const char* text = ok ? "OK" : "key not authorized";
    sock_.send(zmq::str_buffer("1.0"), zmq::send_flags::sndmore);
    zmq::message_t id;
    if (req.size() >= 2) id.copy(req[1]);
    sock_.send(id, zmq::send_flags::sndmore);
    sock_.send(zmq::buffer(std::string_view(code)), zmq::send_flags::sndmore);
    sock_.send(zmq::buffer(std::string_view(text)), zmq::send_flags::sndmore);
    sock_.send(zmq::str_buffer(""), zmq::send_flags::sndmore);
    sock_.send(zmq::str_buffer(""), zmq::send_flags::none);
  }
}

}  // namespace pheap
