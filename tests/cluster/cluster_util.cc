#include "tests/cluster/cluster_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <optional>
#include <thread>

#include "replication/curve_auth.h"
#include "replication/peer_channel.h"
#include "replication/wire.h"

namespace pheaptest::cluster {

Programs& programs() {
  static Programs p;
  return p;
}

namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

pid_t Spawn(const std::vector<std::string>& argv, int in, int out, int err, pid_t netns_of) {
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid != 0) return pid;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(126);
  if (netns_of > 0) {
    int ns = open(("/proc/" + std::to_string(netns_of) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) _exit(125);
  }
  if (in >= 0) dup2(in, 0);
  if (out >= 0) dup2(out, 1);
  if (err >= 0) dup2(err, 2);
  std::vector<std::string> args = argv;
  std::vector<char*> c;
  for (auto& a : args) c.push_back(a.data());
  c.push_back(nullptr);
  execvp(c[0], c.data());
  _exit(127);
}

namespace {

// Reads `fd` to its end into *text; false if `deadline` passes first.
bool ReadToEnd(int fd, Clock::time_point deadline, std::string* text) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) return true;
    text->append(buf, static_cast<size_t>(n));
  }
}

bool PortFree(int port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  close(s);
  return ok;
}

// Sends `m` to `endpoint` (with the CURVE keys in `keys`, if not empty)
// and waits up to `wait` for the reply.
pheap::Result<std::unique_ptr<pheap::Received>> Ask(const std::string& endpoint, const std::string& keys,
                                                    const pheap::wire::OutMessage& m, std::chrono::milliseconds wait) {
  std::optional<pheap::CurveClientKeys> k;
  if (!keys.empty()) {
    auto loaded = pheap::LoadClientKeys(keys);
    if (!loaded.ok()) return loaded.status();
    k = *loaded;
  }
  zmq::context_t ctx;
  auto ch = pheap::PeerChannel::Connect(ctx, endpoint, k ? &*k : nullptr);
  if (!ch.ok()) return ch.status();
  return (*ch)->Call(m, wait);
}

void Reap(pid_t* pid, int sig) {
  if (*pid <= 0) return;
  kill(*pid, sig);
  waitpid(*pid, nullptr, 0);
  *pid = -1;
}

}  // namespace

int RunCommand(const std::vector<std::string>& argv, std::string* output) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -1;
  pid_t pid = Spawn(argv, -1, p[1], p[1]);
  close(p[1]);
  std::string text;
  ReadToEnd(p[0], Clock::now() + 30s, &text);
  close(p[0]);
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
  if (output != nullptr) *output = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// ---- NetNs ----

std::string NetNs::Create() {
  static std::atomic<int> next{0};
  const int id = next++ % 60;
  const int pid = getpid();
  std::string out;
  if (RunCommand({"ip", "-V"}, &out) != 0) return "the ip command (iproute2) is not installed";
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return "pipe2 failed";
  holder_ = fork();
  if (holder_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int err = unshare(CLONE_NEWNET) == 0 ? 0 : errno;
    if (write(p[1], &err, sizeof(err)) != sizeof(err)) _exit(1);
    for (;;) pause();
  }
  close(p[1]);
  int err = -1;
  if (read(p[0], &err, sizeof(err)) != sizeof(err)) err = EIO;
  close(p[0]);
  if (err != 0) return std::string("unshare(CLONE_NEWNET) failed: ") + std::strerror(err) + " (needs CAP_SYS_ADMIN)";
  host_if_ = "pc" + std::to_string(pid % 100000) + "h" + std::to_string(id);
  const std::string inside_if = "pc" + std::to_string(pid % 100000) + "n" + std::to_string(id);
  const std::string net = "10." + std::to_string(200 + pid % 50) + "." + std::to_string((pid / 50) % 256) + ".";
  const std::string host_addr = net + std::to_string(id * 4 + 1);
  inside_addr_ = net + std::to_string(id * 4 + 2);
  const std::string ns = std::to_string(holder_);
  const std::vector<std::vector<std::string>> steps = {
      {"ip", "link", "add", host_if_, "type", "veth", "peer", "name", inside_if, "netns", ns},
      {"ip", "addr", "add", host_addr + "/30", "dev", host_if_},
      {"ip", "link", "set", host_if_, "up"},
      {"nsenter", "-t", ns, "-n", "ip", "addr", "add", inside_addr_ + "/30", "dev", inside_if},
      {"nsenter", "-t", ns, "-n", "ip", "link", "set", inside_if, "up"},
      {"nsenter", "-t", ns, "-n", "ip", "link", "set", "lo", "up"},
  };
  for (const auto& s : steps) {
    if (RunCommand(s, &out) != 0) {
      std::string cmd;
      for (const auto& a : s) cmd += a + " ";
      return "`" + cmd + "` failed (needs CAP_NET_ADMIN and veth): " + out;
    }
  }
  return "";
}

NetNs::~NetNs() {
  Reap(&holder_, SIGKILL);
  // The veth pair goes with the namespace once its last process is gone;
  // deleting it here also covers a peer still running in it.
  if (!host_if_.empty()) RunCommand({"ip", "link", "del", host_if_});
}

void NetNs::Cut() const {
  std::string out;
  ASSERT_EQ(RunCommand({"ip", "link", "set", host_if_, "down"}, &out), 0) << out;
}

void NetNs::Heal() const {
  std::string out;
  ASSERT_EQ(RunCommand({"ip", "link", "set", host_if_, "up"}, &out), 0) << out;
}

// ---- Peer ----

Peer::~Peer() { Reap(&pid_, SIGKILL); }

bool Peer::Launch() {
  std::vector<std::string> argv = {programs().test_peer, "--listen", endpoint_, "--dir", dir_};
  if (!keys_.empty()) argv.insert(argv.end(), {"--keys", keys_});
  if (!slow_flag_.empty()) argv.insert(argv.end(), {"--slow-sync-flag", slow_flag_});
  const int err = log_.empty() ? -1 : open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  pid_ = Spawn(argv, -1, -1, err, ns_ != nullptr ? ns_->holder() : -1);
  if (err >= 0) close(err);
  const auto deadline = Clock::now() + 10s;
  while (Clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;  // it could not bind, or failed to start
    }
    auto r = Ask(endpoint_, keys_, pheap::wire::EncodeStatus(1), 200ms);
    if (r.ok()) return true;
  }
  ADD_FAILURE() << "peer " << endpoint_ << " did not answer within 10 s";
  return false;
}

bool Peer::Start() {
  if (!endpoint_.empty()) {  // a restart: same endpoint, so the writer's peer list holds
    for (int attempt = 0; attempt < 50; ++attempt) {
      if (Launch()) return true;
      std::this_thread::sleep_for(100ms);  // the port may still be held briefly
    }
    ADD_FAILURE() << "peer " << endpoint_ << " did not restart";
    return false;
  }
  std::mt19937 rng(std::random_device{}());
  for (int attempt = 0; attempt < 20; ++attempt) {
    const int port = 20000 + static_cast<int>(rng() % 40000);
    if (ns_ == nullptr && !PortFree(port)) continue;
    endpoint_ = "tcp://" + (ns_ != nullptr ? ns_->address() : std::string("127.0.0.1")) + ":" + std::to_string(port);
    if (Launch()) return true;
  }
  ADD_FAILURE() << "no peer could start on 20 random ports (see its log above)";
  endpoint_.clear();
  return false;
}

void Peer::Kill() { Reap(&pid_, SIGKILL); }

bool Peer::Exited(int* status) {
  if (pid_ <= 0 || waitpid(pid_, status, WNOHANG) != pid_) return false;
  pid_ = -1;
  return true;
}

void Peer::Terminate() { Reap(&pid_, SIGTERM); }
// Not when stopped: kill(-1, ...) would signal every process.
void Peer::Pause() {
  if (pid_ > 0) kill(pid_, SIGSTOP);
}
void Peer::Resume() {
  if (pid_ > 0) kill(pid_, SIGCONT);
}

void Peer::Wipe() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

int64_t Peer::Durable(const std::string& heap, std::chrono::milliseconds wait) const {
  auto r = Ask(endpoint_, keys_, pheap::wire::EncodeHello(1, heap), wait);
  if (!r.ok()) return -1;
  const auto* m = std::get_if<pheap::wire::ManifestBody>(&(*r)->msg.body);
  return m != nullptr ? static_cast<int64_t>(m->epoch) : -1;
}

std::string MakeSharedKeys(const std::string& dir) {
  if (pheap::Status s = pheap::GenerateKeyPair(dir); !s.ok()) return s.ToString();
  std::error_code ec;
  std::filesystem::copy_file(dir + "/peer.pub", dir + "/authorized/self.pub", ec);
  return ec ? "cannot authorize the key: " + ec.message() : "";
}

std::string PeerList(const std::vector<std::unique_ptr<Peer>>& peers) {
  std::string list;
  for (const auto& p : peers) list += (list.empty() ? "" : ",") + p->endpoint();
  return list;
}

// ---- Writer ----

Writer::~Writer() { Kill(); }

bool Writer::Start(const std::string& name, const std::string& config, uint64_t seed,
                   std::chrono::milliseconds wait) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) return false;
  char tmpl[] = "/tmp/pheap-writer-err-XXXXXX";
  int err = mkostemp(tmpl, O_CLOEXEC);
  err_path_ = tmpl;
  pid_ = Spawn({programs().worker, "step", name, config, std::to_string(seed)}, in[0], out[1], err);
  close(in[0]);
  close(out[1]);
  close(err);
  to_ = in[1];
  from_ = out[0];
  std::string line;
  if (!ReadLine(wait, &line) || line.rfind("open ", 0) != 0) {
    ADD_FAILURE() << "the writer did not open heap " << name << ": " << line << stderr_text();
    return false;
  }
  open_ops_ = std::strtoull(line.c_str() + 5, nullptr, 10);
  return true;
}

bool Writer::ReadLine(std::chrono::milliseconds wait, std::string* line) {
  bool eof = false;
  auto has_line = [&](const std::string& t) { return eof || t.find('\n') != std::string::npos; };
  const auto deadline = Clock::now() + wait;
  while (!has_line(buffered_)) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{from_, POLLIN, 0};
    if (left <= 0) return false;
    const int ready = poll(&p, 1, static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;
    char buf[1024];
    ssize_t n = read(from_, buf, sizeof(buf));
    if (n <= 0) eof = true;
    else buffered_.append(buf, static_cast<size_t>(n));
  }
  size_t nl = buffered_.find('\n');
  if (nl == std::string::npos) return false;  // the writer ended
  *line = buffered_.substr(0, nl);
  buffered_.erase(0, nl + 1);
  return true;
}

Writer::Reply Writer::Commit(std::chrono::milliseconds wait) {
  if (write(to_, "c\n", 2) != 2) return Reply{};
  return Await(wait);
}

Writer::Reply Writer::Await(std::chrono::milliseconds wait) {
  Reply r;
  std::string line;
  if (!ReadLine(wait, &line)) return r;
  std::istringstream in(line);
  std::string word;
  in >> word >> r.ops;
  r.answered = true;
  r.durable = word == "durable";
  if (r.durable) in >> r.epoch;
  else std::getline(in >> std::ws, r.error);
  if (!r.durable && r.error.empty()) r.error = line + " " + stderr_text();
  attempted_.push_back(r.ops);
  if (r.durable) last_durable_ = r;
  return r;
}

void Writer::Kill() {
  Reap(&pid_, SIGKILL);
  if (to_ >= 0) close(to_);
  if (from_ >= 0) close(from_);
  to_ = from_ = -1;
  if (!err_path_.empty()) unlink(err_path_.c_str());
  err_path_.clear();
}

std::string Writer::stderr_text() const {
  std::ifstream in(err_path_);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// ---- Checker ----

Checked CheckHeap(const std::string& name, const std::string& config, uint64_t seed,
                  std::chrono::milliseconds wait) {
  Checked c;
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return c;
  pid_t pid = Spawn({programs().worker, "check", name, config, std::to_string(seed)}, -1, p[1], p[1]);
  close(p[1]);
  const bool done = ReadToEnd(p[0], Clock::now() + wait, &c.text);
  close(p[0]);
  int status = 0;
  if (!done) {
    kill(pid, SIGKILL);
    c.text += " (the checker did not finish within the wait)";
  }
  waitpid(pid, &status, 0);
  size_t at = c.text.rfind("ops ");
  c.ok = done && WIFEXITED(status) && WEXITSTATUS(status) == 0 && at != std::string::npos;
  if (c.ok) {
    std::istringstream in(c.text.substr(at + 4));
    std::string word;
    in >> c.ops >> word >> c.epoch;
  }
  return c;
}

int RunTests(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s PATH-OF-test_peer PATH-OF-cluster_worker\n", argv[0]);
    return 2;
  }
  programs() = Programs{argv[1], argv[2]};
  int rc = RUN_ALL_TESTS();
  const auto* u = ::testing::UnitTest::GetInstance();
  if (rc == 0 && u->test_to_run_count() > 0 && u->skipped_test_count() == u->test_to_run_count()) return 77;
  return rc;
}

}  // namespace pheaptest::cluster
