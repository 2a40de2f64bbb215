// The cluster tests' harness: peer daemons (test_peer) as child processes on
// loopback TCP or inside their own network namespace, the writer
// (cluster_worker) driven one commit at a time, and the checker that
// recovers the heap on an empty directory and compares it with the model.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace pheaptest::cluster {

using namespace std::chrono_literals;

// Set by main from the command line (meson passes the built programs).
struct Programs {
  std::string test_peer;  // the peer daemon
  std::string worker;     // cluster_worker
};
Programs& programs();

// Forks and execs argv (looked up in PATH) with stdin/stdout/stderr as
// given (-1: inherited), inside the network namespace of process
// `netns_of` if one is given; the child dies with the calling process
// (PR_SET_PDEATHSIG). Returns its pid, or -1.
pid_t Spawn(const std::vector<std::string>& argv, int in, int out, int err, pid_t netns_of = -1);

// Runs argv[0] (looked up in PATH) to completion; its exit status (-1 if it
// could not run) with stdout and stderr in *output.
int RunCommand(const std::vector<std::string>& argv, std::string* output = nullptr);

// A network namespace joined to the test's by a veth pair: a peer inside it
// is reachable at address() until Cut(), which takes the link down (packets
// are dropped, connections hang as on a real partition), until Heal().
class NetNs {
 public:
  // Empty on success, else why this machine cannot do it (the caller skips).
  std::string Create();
  ~NetNs();
  NetNs() = default;
  NetNs(const NetNs&) = delete;
  NetNs& operator=(const NetNs&) = delete;

  const std::string& address() const { return inside_addr_; }
  pid_t holder() const { return holder_; }
  void Cut() const;
  void Heal() const;

 private:
  pid_t holder_ = -1;  // a process that keeps the namespace alive
  std::string host_if_, inside_addr_;
};

// A peer daemon. Start picks a free port (the daemon cannot bind port 0 and
// report it), retrying on another when the bind fails. Inside a namespace
// it is reached over the veth, not loopback, so it runs with CURVE keys
// (`keys`, a directory as curve_auth.h describes); the test talks to it
// with the same keys.
class Peer {
 public:
  explicit Peer(std::string dir, const NetNs* ns = nullptr, std::string keys = "")
      : dir_(std::move(dir)), ns_(ns), keys_(std::move(keys)) {}
  ~Peer();
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  // Starts the daemon and waits until it answers; false (with a test
  // failure saying why) if it never does. Restarts keep the endpoint.
  bool Start();
  void Kill();                 // SIGKILL, and reaps it
  void Terminate();            // SIGTERM (a clean stop), and reaps it
  void Pause();                // SIGSTOP
  void Resume();               // SIGCONT
  void Wipe();                 // deletes its directory; REQUIRES: not running
  bool running() const { return pid_ > 0; }
  // True (with its wait status in *status) if the daemon ended without
  // being told to; it is reaped and no longer running.
  bool Exited(int* status);
  // Later starts append the daemon's stderr to `path` (default: inherited).
  void set_log(std::string path) { log_ = std::move(path); }
  // Later starts slow each sync while `path` exists (test_peer --slow-sync-flag).
  void set_slow_sync_flag(std::string path) { slow_flag_ = std::move(path); }

  const std::string& endpoint() const { return endpoint_; }
  const std::string& dir() const { return dir_; }
  const NetNs* netns() const { return ns_; }
  // The durable epoch of `heap` the peer reports over the wire (HELLO), or
  // -1 if it does not answer within `wait`.
  int64_t Durable(const std::string& heap, std::chrono::milliseconds wait = 1000ms) const;

 private:
  bool Launch();
  std::string dir_;
  const NetNs* ns_;
  std::string keys_;
  std::string log_;
  std::string slow_flag_;
  std::string endpoint_;
  pid_t pid_ = -1;
};

// Makes a key directory that peers and clients share: one key pair, which
// is also the only authorized client key. Empty on success, else why not.
std::string MakeSharedKeys(const std::string& dir);

// The peers' endpoints as a config value.
std::string PeerList(const std::vector<std::unique_ptr<Peer>>& peers);

// The writer in step mode: each Commit applies a batch of operations and
// commits it.
class Writer {
 public:
  struct Reply {
    bool answered = false;  // false: no answer within the wait (blocked)
    bool durable = false;
    uint64_t ops = 0;       // operations in the commit's state
    int64_t epoch = -1;     // its epoch, when durable
    std::string error;      // pheap_last_error, when failed
  };

  ~Writer();
  Writer() = default;
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Starts the writer on heap `name` with `config`; false (with a test
  // failure) if it does not open within `wait`.
  bool Start(const std::string& name, const std::string& config, uint64_t seed,
             std::chrono::milliseconds wait = 30s);
  Reply Commit(std::chrono::milliseconds wait = 30s);
  // Keeps waiting for the answer to a Commit that did not answer in time.
  Reply Await(std::chrono::milliseconds wait);
  void Kill();
  std::string stderr_text() const;

  uint64_t open_ops() const { return open_ops_; }
  // Every state a commit was attempted with, and the last durable one.
  const std::vector<uint64_t>& attempted() const { return attempted_; }
  const Reply& last_durable() const { return last_durable_; }

 private:
  bool ReadLine(std::chrono::milliseconds wait, std::string* line);
  pid_t pid_ = -1;
  int to_ = -1, from_ = -1;
  std::string buffered_, err_path_;
  uint64_t open_ops_ = 0;
  std::vector<uint64_t> attempted_;
  Reply last_durable_;
};

// Recovers heap `name` with `config` (an empty directory and the peers) in
// a separate process and checks it against the model.
struct Checked {
  bool ok = false;
  uint64_t ops = 0;
  int64_t epoch = -1;
  std::string text;  // what the checker said
};
Checked CheckHeap(const std::string& name, const std::string& config, uint64_t seed,
                  std::chrono::milliseconds wait = 60s);

// RUN_ALL_TESTS, but 77 (meson's skip) when every test that ran skipped.
int RunTests(int argc, char** argv);

}  // namespace pheaptest::cluster
