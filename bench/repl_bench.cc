// Replication benchmarks, each against a baseline measured in the same run:
//   shipping        a durable commit of N dirty pages to k of 3 local peers
//                   (k = 1, 2, 3; W = a majority of k), plain and with CURVE,
//                   vs raw ZeroMQ pushing the same bytes to k local receivers
//                   in frames of the size pheap ships and waiting for W of
//                   them to acknowledge the last one. Once with every store
//                   on the benchmark directory's disk, once on tmpfs
//                   (/dev/shm), where fdatasync costs nothing: the network
//                   path alone, which is what the baseline measures
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
#include "replication/wire_format.h"

using namespace pheap::bench;

namespace {

int g_runs = 5;
constexpr size_t kFrame = pheap::wire::kPreferredPagesBytes;  // the PAGES frame the writer ships
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

// Raw ZeroMQ: `bytes` in kFrame frames to k receiver threads (DEALER ->
// ROUTER over loopback TCP), done when w of them have answered the last
// frame with an acknowledgement. Returns MB/s.
double RawZmq(size_t bytes, bool curve, int k, int w) {
  zmq::context_t ctx;
  char server_pub[41], server_sec[41], client_pub[41], client_sec[41];
  zmq_curve_keypair(server_pub, server_sec);
  zmq_curve_keypair(client_pub, client_sec);
  const int port0 = 40000 + static_cast<int>(getpid() % 20000);
  std::vector<std::thread> receivers;
  std::vector<zmq::socket_t> senders;
  std::atomic<int> bound{0};
  for (int i = 0; i < k; ++i) {
    receivers.emplace_back([&, i] {
      zmq::socket_t s(ctx, zmq::socket_type::router);
      if (curve) {
        s.set(zmq::sockopt::curve_server, 1);
        s.set(zmq::sockopt::curve_secretkey, std::string(server_sec));
      }
      s.bind(fmt::format("tcp://127.0.0.1:{}", port0 + i));
      bound.fetch_add(1);
      size_t got = 0;
      zmq::message_t id;
      while (got < bytes) {
        zmq::message_t m;
        (void)s.recv(id);
        (void)s.recv(m);
        got += m.size();
      }
      s.send(id, zmq::send_flags::sndmore);
      s.send(zmq::str_buffer("ack"), zmq::send_flags::none);
    });
  }
  while (bound.load() < k) std::this_thread::yield();
  std::vector<char> frame(kFrame, 'x');
  for (int i = 0; i < k; ++i) {
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
  std::vector<zmq::pollitem_t> items;
  for (auto& s : senders) items.push_back({s.handle(), 0, ZMQ_POLLIN, 0});
  for (int acks = 0; acks < w;) {
    zmq::poll(items);
    for (size_t i = 0; i < items.size(); ++i) {
      if ((items[i].revents & ZMQ_POLLIN) == 0) continue;
      zmq::message_t ack;
      (void)senders[i].recv(ack);
      items[i].events = 0;  // one ack per receiver
      ++acks;
    }
  }
  const double secs = static_cast<double>(NowNs() - t0) / 1e9;
  for (auto& t : receivers) t.join();
  return static_cast<double>(bytes) / 1e6 / secs;
}

// A durable commit of `bytes` of freshly written heap memory with the peers.
// Returns MB/s.
double PheapShip(const std::string& dir, const Peers& peers, size_t bytes, const std::string& keys, int k, int run) {
  std::string config = fmt::format("dir={}/node{};size=4G;replica_timeout_ms=120000;peers={};replicas={}", dir, run,
                                   peers.endpoints(), k);
  if (!keys.empty()) config += ";keys=" + keys;
  double secs = 0;
  {
    pheap::Heap heap(fmt::format("ship{}", run), config);
    auto* p = static_cast<char*>(heap.malloc(bytes));
    heap.commit();  // the allocator's own pages
    std::memset(p, run + 1, bytes);
    const uint64_t t0 = NowNs();
    heap.commit();
    secs = static_cast<double>(NowNs() - t0) / 1e9;
  }
  std::filesystem::remove_all(fmt::format("{}/node{}", dir, run));
  return static_cast<double>(bytes) / 1e6 / secs;
}

// `where`: what the stores are on, for the table's title.
void Shipping(const std::string& dir, size_t mib, const char* where) {
  const size_t bytes = mib << 20;
  std::string keys = dir + "/keys";
  std::filesystem::create_directories(keys);
  if (std::system(fmt::format("{}/../tools/pheap keygen {} >/dev/null && cp {}/peer.pub {}/authorized/self.pub",
                              SelfDir(), keys, keys, keys)
                      .c_str()) != 0)
    fmt::print(stderr, "bench: pheap keygen failed\n");
  fmt::print("### Shipping a {} MiB commit to k local peers, stores on {} (W = majority of k; {} KiB frames; median "
             "of {})\n\n",
             mib, where, kFrame >> 10, g_runs);
  fmt::print("| | k | W | pheap durable commit | raw ZeroMQ to k, W acks | ratio |\n|---|---:|---:|---:|---:|---:|\n");
  int run = 0;
  for (bool curve : {false, true}) {
    const std::string key_dir = curve ? keys : "";
    for (int k = 1; k <= 3; ++k) {
      const int w = k / 2 + 1;
      // Fresh peers for each row, their stores removed after it: tmpfs is memory.
      const std::string peer_dir = fmt::format("{}/peers-{}", dir, run);
      double ours = 0;
      {
        Peers peers(peer_dir, key_dir);
        ours = MedianOf(g_runs, [&] { return PheapShip(dir, peers, bytes, key_dir, k, run++); });
      }
      std::filesystem::remove_all(peer_dir);
      double raw = MedianOf(g_runs, [&] { return RawZmq(bytes, curve, k, w); });
      fmt::print("| {} | {} | {} | {:.0f} MB/s | {:.0f} MB/s | {:.2f}x |\n", curve ? "CURVE" : "plain", k, w, ours, raw,
                 ours / raw);
    }
  }
  fmt::print("\nMB/s per replica stream (every replica gets every byte). pheap's figure includes the commit's cut, "
             "the local store's and the peers' writes and fdatasync; raw ZeroMQ touches no store.\n\n");
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
    heap.set_root("root", r);
    // In commits of 256 MiB: one epoch must fit a peer's staging limit (1 GiB).
    constexpr size_t kEpochBytes = size_t{256} << 20;
    for (size_t i = 0; i < (mib << 20); i += kPage) {
      std::memset(r->data + i, static_cast<int>(i / kPage), kPage);
      if ((i + kPage) % kEpochBytes == 0) heap.commit();
    }
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
  bool no_ship = false;
  app.add_option("--runs", g_runs, "runs per figure (the median is reported)");
  app.add_option("--ship-mib", ship_mib, "size of the shipped commit");
  app.add_option("--heap-mib", heap_mib, "size of the recovered heap");
  app.add_flag("--no-ship", no_ship, "only the recovery figures");
  CLI11_PARSE(app, argc, argv);
  setenv("PHEAP_LOG", "error", 0);
  TempDir dir;
  try {
    if (!no_ship) Shipping(dir.path(), ship_mib, "the benchmark directory's disk");
    std::fflush(stdout);
    if (!no_ship && std::filesystem::is_directory("/dev/shm")) {
      setenv("PHEAP_BENCH_DIR", "/dev/shm", 1);
      TempDir shm;
      Shipping(shm.path(), ship_mib, "tmpfs");
    }
    std::fflush(stdout);
    Recovery(dir.path(), heap_mib);
  } catch (const pheap::error& e) {
    fmt::print(stderr, "bench: {}\n", e.what());
    return 1;
  }
  return 0;
}
