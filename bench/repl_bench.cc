// Replication benchmarks, each against a baseline measured in the same run:
//   shipping        a durable commit of N dirty pages to k of 3 local peers
//                   (k = 1, 2, 3; W = a majority of k), plain and with CURVE,
//                   vs raw ZeroMQ pushing the same bytes to k local receivers
//                   in frames of the size pheap ships and waiting for W of
//                   them to acknowledge the last one. Once with every store
//                   on the benchmark directory's disk, once on tmpfs
//                   (/dev/shm), where fdatasync costs nothing: the network
//                   path alone, which is what the baseline measures. A
//                   second baseline adds the stores' writes and fdatasyncs
//                   to raw ZeroMQ: what durability costs on this machine
//   latency         p50 and p99 of durable commits of 1, 64 and 1024 pages
//                   at k = 2, vs a raw ZeroMQ round trip to 2 receivers that
//                   each write the bytes and fdatasync them before answering
//   recovery        time to the first root access of a 1 GiB heap opened by
//                   name in an empty directory from its peers, vs opening it
//                   from a warm local store; and the background restore of
//                   the whole heap into that directory, in MB/s, vs raw
//                   ZeroMQ streaming the same bytes from one sender
// The peers are `pheap peer` processes on loopback TCP. Every figure is the
// median of --runs runs (latency: percentiles over all commits). Output is
// Markdown.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pheap/heap.hpp>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "base/config.h"
#include "bench/bench_util.h"
#include "heap/engine.h"
#include "replication/replica_client.h"
#include "replication/replica_composite.h"
#include "replication/wire_format.h"

using namespace pheap::bench;

namespace {

int g_runs = 5;
int g_only_k = 0;  // shipping: every k (0) or this one
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
        // The writer's store reads PHEAP_DIRECT_WRITE itself; the peers take it too.
        if (const char* d = getenv("PHEAP_DIRECT_WRITE")) args.insert(args.end(), {"--direct-write", d});
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

// k DEALER -> ROUTER connections over loopback TCP, CURVE-encrypted if
// asked: pheap's connections to its peers, without pheap. Each receiver runs
// `serve` on a thread of its own; the destructor waits for them to return.
class RawLinks {
 public:
  RawLinks(bool curve, int k, const std::function<void(zmq::socket_t&)>& serve) {
    char server_pub[41], server_sec[41], client_pub[41], client_sec[41];
    zmq_curve_keypair(server_pub, server_sec);
    zmq_curve_keypair(client_pub, client_sec);
    const int port0 = 40000 + static_cast<int>(getpid() % 20000);
    std::atomic<int> bound{0};
    for (int i = 0; i < k; ++i) {
      receivers_.emplace_back([&, i, serve] {
        zmq::socket_t s(ctx_, zmq::socket_type::router);
        if (curve) {
          s.set(zmq::sockopt::curve_server, 1);
          s.set(zmq::sockopt::curve_secretkey, std::string(server_sec));
        }
        s.bind(fmt::format("tcp://127.0.0.1:{}", port0 + i));
        bound.fetch_add(1);
        serve(s);
      });
    }
    while (bound.load() < k) std::this_thread::yield();
    for (int i = 0; i < k; ++i) {
      zmq::socket_t s(ctx_, zmq::socket_type::dealer);
      if (curve) {
        s.set(zmq::sockopt::curve_serverkey, std::string(server_pub));
        s.set(zmq::sockopt::curve_publickey, std::string(client_pub));
        s.set(zmq::sockopt::curve_secretkey, std::string(client_sec));
      }
      s.connect(fmt::format("tcp://127.0.0.1:{}", port0 + i));
      senders_.push_back(std::move(s));
    }
  }
  ~RawLinks() {
    for (auto& t : receivers_) t.join();
  }
  std::vector<zmq::socket_t>& senders() { return senders_; }

  // Waits for one reply from each of `w` of the senders.
  void AwaitReplies(int w) {
    std::vector<zmq::pollitem_t> items;
    for (auto& s : senders_) items.push_back({s.handle(), 0, ZMQ_POLLIN, 0});
    for (int acks = 0; acks < w;) {
      zmq::poll(items);
      for (size_t i = 0; i < items.size(); ++i) {
        if ((items[i].revents & ZMQ_POLLIN) == 0) continue;
        zmq::message_t ack;
        (void)senders_[i].recv(ack);
        items[i].events = 0;  // one reply per receiver
        ++acks;
      }
    }
  }

 private:
  zmq::context_t ctx_;
  std::vector<std::thread> receivers_;
  std::vector<zmq::socket_t> senders_;
};

// Raw ZeroMQ: `bytes` in kFrame frames to k receivers, done when w of them
// have answered the last frame with an acknowledgement. With a `store_dir`,
// the same bytes made as durable as a pheap commit makes them, still without
// pheap: each receiver writes every frame to a file of its own and
// fdatasyncs it before answering, and the sender writes its own copy (the
// local store's) beside the sending and fdatasyncs it. Returns MB/s.
double RawZmq(size_t bytes, bool curve, int k, int w, const std::string& store_dir = "") {
  RawLinks links(curve, k, [bytes, store_dir](zmq::socket_t& s) {
    std::unique_ptr<FrameFile> file;
    if (!store_dir.empty()) file = std::make_unique<FrameFile>(fmt::format("{}/raw-{}", store_dir, gettid()), true, kFrame);
    size_t got = 0;
    zmq::message_t id;
    bool ok = true;
    while (got < bytes) {
      zmq::message_t m;
      (void)s.recv(id);
      (void)s.recv(m);
      if (file) ok = file->Append(m.data(), m.size()) && ok;
      got += m.size();
    }
    if (file) ok = file->Sync() && ok;
    s.send(id, zmq::send_flags::sndmore);
    s.send(ok ? zmq::str_buffer("ack") : zmq::str_buffer("err"), zmq::send_flags::none);
  });
  char* frame = static_cast<char*>(std::aligned_alloc(kPage, kFrame));
  std::memset(frame, 'x', kFrame);
  const uint64_t t0 = NowNs();
  std::thread local;
  if (!store_dir.empty())
    local = std::thread([&] {
      FrameFile file(store_dir + "/raw-local", true, kFrame);
      for (size_t done = 0; done < bytes; done += kFrame) file.Append(frame, kFrame);
      file.Sync();
    });
  for (size_t sent = 0; sent < bytes; sent += kFrame)
    for (auto& s : links.senders()) s.send(zmq::buffer(frame, kFrame), zmq::send_flags::none);
  links.AwaitReplies(w);
  if (local.joinable()) local.join();
  const double secs = static_cast<double>(NowNs() - t0) / 1e9;
  std::free(frame);
  return static_cast<double>(bytes) / 1e6 / secs;
}

// A durable commit of `bytes` of heap memory written anew, on a writer
// already shipping: the second commit of that size, as the first also
// faults in the writer's staging and the peers' inboxes. Returns MB/s.
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
    heap.commit();
    std::memset(p, run + 2, bytes);
    const uint64_t t0 = NowNs();
    heap.commit();
    secs = static_cast<double>(NowNs() - t0) / 1e9;
  }
  std::filesystem::remove_all(fmt::format("{}/node{}", dir, run));
  return static_cast<double>(bytes) / 1e6 / secs;
}

// A key pair in dir/keys that the peers and the writer share: the writer's
// public key is on the peers' allow-list. Returns the key directory.
std::string MakeKeys(const std::string& dir) {
  const std::string keys = dir + "/keys";
  if (std::filesystem::exists(keys + "/peer.pub")) return keys;
  std::filesystem::create_directories(keys);
  if (std::system(fmt::format("{}/../tools/pheap keygen {} >/dev/null && cp {}/peer.pub {}/authorized/self.pub",
                              SelfDir(), keys, keys, keys)
                      .c_str()) != 0)
    fmt::print(stderr, "bench: pheap keygen failed\n");
  return keys;
}

// `where`: what the stores are on, for the table's title.
void Shipping(const std::string& dir, size_t mib, const char* where) {
  const size_t bytes = mib << 20;
  const std::string keys = MakeKeys(dir);
  fmt::print("### Shipping a {} MiB commit to k local peers, stores on {} (W = majority of k; {} KiB frames; median "
             "of {})\n\n",
             mib, where, kFrame >> 10, g_runs);
  fmt::print("| | k | W | pheap durable commit | raw ZeroMQ to k, W acks | ratio | raw ZeroMQ + stores | ratio |\n"
             "|---|---:|---:|---:|---:|---:|---:|---:|\n");
  int run = 0;
  for (bool curve : {false, true}) {
    const std::string key_dir = curve ? keys : "";
    for (int k = 1; k <= 3; ++k) {
      if (g_only_k != 0 && k != g_only_k) continue;
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
      double stored = MedianOf(g_runs, [&] { return RawZmq(bytes, curve, k, w, dir); });
      fmt::print("| {} | {} | {} | {:.0f} MB/s | {:.0f} MB/s | {:.2f}x | {:.0f} MB/s | {:.2f}x |\n",
                 curve ? "CURVE" : "plain", k, w, ours, raw, ours / raw, stored, ours / stored);
    }
  }
  fmt::print("\nMB/s per replica stream (every replica gets every byte). pheap's figure is a writer's steady state "
             "(the second commit of the size on one heap) and includes the commit's cut, "
             "the local store's and the peers' writes and fdatasync; raw ZeroMQ touches no store. \"raw ZeroMQ + "
             "stores\" adds what durability costs without pheap: each receiver writes the frames to a file and "
             "fdatasyncs it before answering, and the sender writes and fdatasyncs its own copy meanwhile.\n\n");
}

constexpr int kWarmup = 5;

// `n` durable commits of `pages` freshly written pages each, at k = 2 of the
// three peers (W = 2). Returns each commit's time in microseconds.
std::vector<double> PheapCommitTimes(const std::string& dir, const Peers& peers, const std::string& keys,
                                     size_t pages, int n, int run) {
  std::string config = fmt::format("dir={}/node{};size=1G;peers={};replicas=2", dir, run, peers.endpoints());
  if (!keys.empty()) config += ";keys=" + keys;
  std::vector<double> us;
  {
    pheap::Heap heap(fmt::format("lat{}", run), config);
    auto* p = static_cast<char*>(heap.malloc(pages * kPage));
    heap.commit();  // the allocator's own pages
    for (int i = 0; i < n + kWarmup; ++i) {
      for (size_t j = 0; j < pages; ++j) p[j * kPage] = static_cast<char>(i);
      const uint64_t t0 = NowNs();
      heap.commit();
      if (i >= kWarmup) us.push_back(static_cast<double>(NowNs() - t0) / 1e3);
    }
  }
  std::filesystem::remove_all(fmt::format("{}/node{}", dir, run));
  return us;
}

// The baseline: `pages` pages in kFrame frames to 2 receivers, each of which
// writes them to a file of its own and fdatasyncs it before answering; done
// when both answered. The file is overwritten in place, the cheapest
// fdatasync there is. Returns each round trip's time in microseconds.
std::vector<double> RawRoundTripTimes(const std::string& dir, bool curve, size_t pages, int n) {
  RawLinks links(curve, 2, [dir](zmq::socket_t& s) {
    FrameFile file(fmt::format("{}/raw-{}", dir, gettid()), false, kFrame);
    for (bool stop = false; !stop;) {
      zmq::message_t id, m;
      (void)s.recv(id);
      file.Rewind();
      do {
        (void)s.recv(m);
        stop = m.size() == 0;
        if (!file.Append(m.data(), m.size())) stop = true;
      } while (m.more());
      if (stop) break;
      if (!file.Sync()) break;
      s.send(id, zmq::send_flags::sndmore);
      s.send(zmq::str_buffer("ack"), zmq::send_flags::none);
    }
  });
  std::vector<char> data(pages * kPage, 'x');
  std::vector<double> us;
  for (int i = 0; i < n + kWarmup; ++i) {
    const uint64_t t0 = NowNs();
    for (auto& s : links.senders())
      for (size_t off = 0; off < data.size(); off += kFrame) {
        const size_t len = std::min(kFrame, data.size() - off);
        s.send(zmq::buffer(data.data() + off, len), off + len < data.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
      }
    links.AwaitReplies(2);
    if (i >= kWarmup) us.push_back(static_cast<double>(NowNs() - t0) / 1e3);
  }
  for (auto& s : links.senders()) s.send(zmq::message_t(), zmq::send_flags::none);
  return us;
}

void Latency(const std::string& dir) {
  fmt::print("### Durable commit latency at k = 2 of 3 local peers (W = 2), stores on the benchmark directory's disk\n\n");
  fmt::print("| | pages | pheap p50 | pheap p99 | ZeroMQ round trip + fdatasync p50 | p99 | ratio p50 | ratio p99 |\n"
             "|---|---:|---:|---:|---:|---:|---:|---:|\n");
  int run = 0;
  for (bool curve : {false, true}) {
    const std::string keys = curve ? MakeKeys(dir) : "";
    const std::string peer_dir = fmt::format("{}/peers-latency-{}", dir, curve);
    {
      Peers peers(peer_dir, keys);
      for (size_t pages : {size_t{1}, size_t{64}, size_t{1024}}) {
        const int n = pages == 1 ? 40 * g_runs : pages == 64 ? 20 * g_runs : 10 * g_runs;
        const auto ours = PheapCommitTimes(dir, peers, keys, pages, n, run++);
        const auto raw = RawRoundTripTimes(dir, curve, pages, n);
        const double o50 = Percentile(ours, 0.5), o99 = Percentile(ours, 0.99);
        const double r50 = Percentile(raw, 0.5), r99 = Percentile(raw, 0.99);
        fmt::print("| {} | {} | {:.0f} us | {:.0f} us | {:.0f} us | {:.0f} us | {:.2f}x | {:.2f}x |\n",
                   curve ? "CURVE" : "plain", pages, o50, o99, r50, r99, o50 / r50, o99 / r99);
      }
    }
    std::filesystem::remove_all(peer_dir);
  }
  fmt::print("\nPercentiles over {}, {} and {} commits. A ratio above 1 is pheap slower than the baseline: pheap also "
             "writes and fdatasyncs its local store, hashes every page, and appends to logs.\n\n",
             40 * g_runs, 20 * g_runs, 10 * g_runs);
}

struct Root {
  uint64_t magic;
  char* data;
};

// The background restore of heap `name` from its peers into the empty
// directory the engine is opened on, timed until the local store holds the
// whole image and takes over. Returns MB/s, 0 if it did not finish.
double PheapRestore(const std::string& name, const std::string& config) {
  auto cfg = pheap::Config::Parse(config.c_str(), pheap::Engine::ConfigKeys());
  auto o = cfg.ok() ? pheap::Engine::OptionsFromConfig(*cfg) : cfg.status();
  if (!o.ok()) {
    fmt::print(stderr, "bench: {}\n", o.status().ToString());
    return 0;
  }
  o->restore_progress = false;
  const uint64_t t0 = NowNs();
  auto e = pheap::Engine::Open(name, *o);
  if (!e.ok()) {
    fmt::print(stderr, "bench: {}\n", e.status().ToString());
    return 0;
  }
  while ((*e)->replicated()->restoring()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const double secs = static_cast<double>(NowNs() - t0) / 1e9;
  if (!(*e)->replicated()->local_in_use()) {
    fmt::print(stderr, "bench: the restore did not finish\n");
    return 0;
  }
  return static_cast<double>((*e)->replicas()->image().hwm * kPage) / 1e6 / secs;
}

void Recovery(const std::string& dir, size_t mib) {
  fmt::print("### Recovery of a {} MiB heap from 3 local peers into an empty directory (median of {})\n\n", mib,
             g_runs);
  fmt::print("| | first root access: from its peers | from its local store (baseline) | whole heap restored from its "
             "peers | raw ZeroMQ, one stream | ratio |\n|---|---:|---:|---:|---:|---:|\n");
  int run = 0;
  for (bool curve : {false, true}) {
    const std::string keys = curve ? MakeKeys(dir) : "";
    const std::string peer_dir = fmt::format("{}/peers-recovery-{}", dir, curve);
    double empty = 0, warm = 0, restore = 0;
    {
      Peers peers(peer_dir, keys);
      const std::string opts = fmt::format(";size=4G;replica_timeout_ms=120000;peers={}{}", peers.endpoints(),
                                           keys.empty() ? "" : ";keys=" + keys);
      const std::string writer = fmt::format("dir={}/writer-{}{}", dir, curve, opts);
      {
        pheap::Heap heap("recover", writer);
        auto* r = heap.make<Root>();
        r->magic = 0x5eed;
        r->data = static_cast<char*>(heap.malloc(mib << 20));
        heap.set_root("root", r);
        // In commits of 256 MiB: one epoch must fit a peer's inbox limit (1 GiB).
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
      empty = MedianOf(g_runs, [&] {
        const std::string d = fmt::format("{}/empty{}", dir, run++);
        const double ms = first_access(fmt::format("dir={};restore=0{}", d, opts));
        std::filesystem::remove_all(d);
        return ms;
      });
      warm = MedianOf(g_runs, [&] { return first_access(writer); });
      restore = MedianOf(g_runs, [&] {
        const std::string d = fmt::format("{}/empty{}", dir, run++);
        const double mbs = PheapRestore("recover", fmt::format("dir={}{}", d, opts));
        std::filesystem::remove_all(d);
        return mbs;
      });
    }
    std::filesystem::remove_all(peer_dir);
    std::filesystem::remove_all(fmt::format("{}/writer-{}", dir, curve));
    const double raw = MedianOf(g_runs, [&] { return RawZmq(mib << 20, curve, 1, 1); });
    fmt::print("| {} | {:.1f} ms | {:.1f} ms | {:.0f} MB/s | {:.0f} MB/s | {:.2f}x |\n", curve ? "CURVE" : "plain",
               empty, warm, restore, raw, restore / raw);
  }
  fmt::print("\nThe restore's figure runs from the open to the local store holding the whole image: it includes "
             "the claim, the reads from the replicas, and the local store's writes and fdatasyncs.\n\n");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pheap replication benchmarks"};
  size_t ship_mib = 256, heap_mib = 1024;
  bool no_ship = false, no_latency = false, no_recovery = false;
  app.add_option("--runs", g_runs, "runs per figure (the median is reported)");
  app.add_option("--ship-mib", ship_mib, "size of the shipped commit");
  app.add_option("--ship-k", g_only_k, "ship to this many replicas only (default: 1, 2 and 3)")->check(CLI::Range(1, 3));
  app.add_option("--heap-mib", heap_mib, "size of the recovered heap");
  app.add_flag("--no-ship", no_ship, "leave out the shipping figures");
  app.add_flag("--no-latency", no_latency, "leave out the commit latency figures");
  app.add_flag("--no-recovery", no_recovery, "leave out the recovery figures");
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
    if (!no_latency) Latency(dir.path());
    std::fflush(stdout);
    if (!no_recovery) Recovery(dir.path(), heap_mib);
  } catch (const pheap::error& e) {
    fmt::print(stderr, "bench: {}\n", e.what());
    return 1;
  }
  return 0;
}
