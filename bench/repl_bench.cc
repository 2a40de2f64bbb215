// Replication benchmarks, each against a baseline measured in the same run:
//   shipping        a durable commit of N dirty pages to 3 local peers (k = 3,
//                   W = 2), plain and with CURVE, vs raw ZeroMQ pushing the
//                   same bytes to 3 local receivers in frames of the same
//                   size and waiting for 2 acknowledgements
//   recovery        time to the first root access of a 1 GiB heap opened by
//                   name in an empty directory from its peers, vs opening it
//                   from a warm local store
// The peers are `pheap peer` processes on loopback TCP. Every figure is the
// median of --runs runs. Output is Markdown.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pheap/heap.hpp>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "bench/bench_util.h"

using namespace pheap::bench;

namespace {

int g_runs = 5;
constexpr size_t kFrame = 256 << 10;  // the replica client's preferred PAGES frame
constexpr size_t kPage = 4096;

std::string SelfDir() { return std::filesystem::read_symlink("/proc/self/exe").parent_path().string(); }

// Three `pheap peer` daemons on loopback TCP, stopped with SIGTERM.
class Peers {
 public:
  Peers(const std::string& dir, const std::string& keys) {
    const int port0 = 20000 + static_cast<int>(getpid() % 20000);
    for (int i = 0; i < 3; ++i) {
      std::string ep = fmt::format("tcp://127.0.0.1:{}", port0 + i);
      std::string pdir = fmt::format("{}/peer{}", dir, i);
      endpoints_ += (i ? "," : "") + ep;
      pid_t pid = fork();
      if (pid == 0) {
        std::vector<std::string> args = {SelfDir() + "/../tools/pheap", "peer", "--listen", ep, "--dir", pdir};
        if (!keys.empty()) args.insert(args.end(), {"--keys", keys});
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        setenv("PHEAP_LOG", "error", 1);
        execv(argv[0], argv.data());
        _exit(127);
      }
      pids_.push_back(pid);
    }
    usleep(300000);  // let them bind
  }
  ~Peers() {
    for (pid_t p : pids_) {
      kill(p, SIGTERM);
      waitpid(p, nullptr, 0);
    }
  }
  const std::string& endpoints() const { return endpoints_; }

 private:
  std::vector<pid_t> pids_;
  std::string endpoints_;
};

// Raw ZeroMQ: `bytes` in kFrame frames to 3 receiver threads (DEALER ->
// ROUTER over loopback TCP), done when 2 have acknowledged the last frame.
// Returns MB/s.
double RawZmq(size_t bytes, bool curve) {
  zmq::context_t ctx;
  char server_pub[41], server_sec[41], client_pub[41], client_sec[41];
  zmq_curve_keypair(server_pub, server_sec);
  zmq_curve_keypair(client_pub, client_sec);
  const int port0 = 40000 + static_cast<int>(getpid() % 20000);
  std::vector<std::thread> receivers;
  std::vector<zmq::socket_t> senders;
  std::atomic<int> bound{0}, finished{0};
  for (int i = 0; i < 3; ++i) {
    receivers.emplace_back([&, i] {
      zmq::socket_t s(ctx, zmq::socket_type::router);
      if (curve) {
        s.set(zmq::sockopt::curve_server, 1);
        s.set(zmq::sockopt::curve_secretkey, std::string(server_sec));
      }
      s.bind(fmt::format("tcp://127.0.0.1:{}", port0 + i));
      bound.fetch_add(1);
      size_t got = 0;
      while (got < bytes) {
        zmq::message_t id, m;
        (void)s.recv(id);
        (void)s.recv(m);
        got += m.size();
      }
      finished.fetch_add(1);
    });
  }
  while (bound.load() < 3) std::this_thread::yield();
  std::vector<char> frame(kFrame, 'x');
  for (int i = 0; i < 3; ++i) {
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    if (curve) {
      s.set(zmq::sockopt::curve_serverkey, std::string(server_pub));
      s.set(zmq::sockopt::curve_publickey, std::string(client_pub));
      s.set(zmq::sockopt::curve_secretkey, std::string(client_sec));
    }
    s.connect(fmt::format("tcp://127.0.0.1:{}", port0 + i));
    senders.push_back(std::move(s));
  }
  const uint64_t t0 = NowNs();
  for (size_t sent = 0; sent < bytes; sent += kFrame)
    for (auto& s : senders) s.send(zmq::buffer(frame), zmq::send_flags::none);
  // The receivers count bytes; two finishing is the quorum.
  while (finished.load() < 2) std::this_thread::yield();
  const double secs = static_cast<double>(NowNs() - t0) / 1e9;
  for (auto& t : receivers) t.join();
  return static_cast<double>(bytes) / 1e6 / secs;
}

// A durable commit of `bytes` of freshly written heap memory with the peers.
// Returns MB/s.
double PheapShip(const std::string& dir, const Peers& peers, size_t bytes, const std::string& keys, int run) {
  std::string config = fmt::format("dir={}/node{};size=4G;replica_timeout_ms=120000;peers={}", dir, run, peers.endpoints());
  if (!keys.empty()) config += ";keys=" + keys;
  pheap::Heap heap(fmt::format("ship{}", run), config);
  auto* p = static_cast<char*>(heap.malloc(bytes));
  heap.commit();  // the allocator's own pages
  std::memset(p, run + 1, bytes);
  const uint64_t t0 = NowNs();
  heap.commit();
  const double secs = static_cast<double>(NowNs() - t0) / 1e9;
  return static_cast<double>(bytes) / 1e6 / secs;
}

void Shipping(const std::string& dir, size_t mib) {
  const size_t bytes = mib << 20;
  std::string keys = dir + "/keys";
  std::filesystem::create_directories(keys);
  if (std::system(fmt::format("{}/../tools/pheap keygen {} >/dev/null && cp {}/peer.pub {}/authorized/self.pub",
                              SelfDir(), keys, keys, keys)
                      .c_str()) != 0)
    fmt::print(stderr, "bench: pheap keygen failed\n");
  fmt::print("### Shipping a {} MiB commit to 3 local peers (k=3, W=2; median of {})\n\n", mib, g_runs);
  fmt::print("| | pheap durable commit | raw ZeroMQ to 3, 2 acks | ratio |\n|---|---|---|---|\n");
  for (bool curve : {false, true}) {
    const std::string k = curve ? keys : "";
    Peers peers(fmt::format("{}/peers-{}", dir, curve ? "curve" : "plain"), k);
    int run = curve ? 100 : 0;
    double ours = MedianOf(g_runs, [&] { return PheapShip(dir, peers, bytes, k, run++); });
    double raw = MedianOf(g_runs, [&] { return RawZmq(bytes, curve); });
    fmt::print("| {} | {:.0f} MB/s | {:.0f} MB/s | {:.2f}x |\n", curve ? "CURVE" : "plain", ours, raw, ours / raw);
  }
  fmt::print("\npheap's figure includes the local and the peers' fdatasync; raw ZeroMQ touches no disk.\n\n");
}

struct Root {
  uint64_t magic;
  char* data;
};

void Recovery(const std::string& dir, size_t mib) {
  Peers peers(dir + "/peers-recovery", "");
  const std::string base = fmt::format("dir={}/writer;size=4G;replica_timeout_ms=120000;peers={}", dir, peers.endpoints());
  {
    pheap::Heap heap("recover", base);
    auto* r = heap.make<Root>();
    r->magic = 0x5eed;
    r->data = static_cast<char*>(heap.malloc(mib << 20));
    for (size_t i = 0; i < (mib << 20); i += kPage) std::memset(r->data + i, static_cast<int>(i / kPage), kPage);
    heap.set_root("root", r);
    heap.commit();
  }
  auto first_access = [&](const std::string& config) {
    const uint64_t t0 = NowNs();
    pheap::Heap heap("recover", config);
    auto* r = heap.root<Root>("root");
    volatile uint64_t m = r != nullptr ? r->magic : 0;
    const double ms = static_cast<double>(NowNs() - t0) / 1e6;
    if (m != 0x5eed) fmt::print(stderr, "bench: the root did not come back\n");
    return ms;
  };
  int run = 0;
  double empty = MedianOf(g_runs, [&] {
    return first_access(fmt::format("dir={}/empty{};size=4G;peers={};restore=0", dir, run++, peers.endpoints()));
  });
  double warm = MedianOf(g_runs, [&] { return first_access(base); });
  fmt::print("### Time to the first root access of a {} MiB heap (median of {})\n\n", mib, g_runs);
  fmt::print("| opened from | time |\n|---|---|\n");
  fmt::print("| its peers, into an empty directory | {:.1f} ms |\n| its local store (baseline) | {:.1f} ms |\n\n",
             empty, warm);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pheap replication benchmarks"};
  size_t ship_mib = 256, heap_mib = 1024;
  app.add_option("--runs", g_runs, "runs per figure (the median is reported)");
  app.add_option("--ship-mib", ship_mib, "size of the shipped commit");
  app.add_option("--heap-mib", heap_mib, "size of the recovered heap");
  CLI11_PARSE(app, argc, argv);
  setenv("PHEAP_LOG", "error", 0);
  TempDir dir;
  try {
    Shipping(dir.path(), ship_mib);
    std::fflush(stdout);
    Recovery(dir.path(), heap_mib);
  } catch (const pheap::error& e) {
    fmt::print(stderr, "bench: {}\n", e.what());
    return 1;
  }
  return 0;
}
