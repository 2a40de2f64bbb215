// The subcommands of the `pheap` tool, one function each.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "store/page_store.h"

namespace pheap::tools {

// Says why `command` failed: on stderr, or with `json` as
// {"error": {"code", "errno", "message"}} on stdout, so a script reading
// the JSON output always gets JSON. Returns `exit_status`.
int Fail(const std::string& command, const Status& s, bool json, int exit_status = 1);

// Shows persistence and recovery; 0 when every check held.
int RunDemo(const std::string& dir, bool keep);
// The store of heap `name` under `dir`, opened read-only: without its lock,
// so beside a running writer, seeing only whole epochs.
Result<std::unique_ptr<PageStore>> OpenForReading(const std::string& dir, const std::string& name,
                                                  CorruptionReporter* reporter = nullptr);

// Prints what the store of heap `name` under `dir` holds: the image, the
// store's files, the roots, the newest `max_epochs` retained epochs (0:
// all), and how its replicas (those it records, or `replicas` names)
// stand; with `html` not empty, also writes the page map there.
struct ReplicaArgs;
int RunInspect(const std::string& dir, const std::string& name, bool json, bool verify, size_t max_epochs,
               const ReplicaArgs& replicas, const std::string& html);
// Prints what the epochs after `from`, up to `to`, changed: the pages they
// wrote or discarded, and the roots whose value differs between the two.
int RunDiff(const std::string& dir, const std::string& name, Epoch from, Epoch to, bool json);
// Lists the heaps under `dir`: epoch, term, region size, live and stored
// bytes, holder; stores set aside by recovery are marked as such.
int RunList(const std::string& dir, bool json);
// The replica set a command names on its command line (--peers,
// --replicas, --keys); empty peers: the one the heap records.
struct ReplicaArgs {
  std::string peers, keys;
  uint32_t replicas = 0;  // the heap's replica count (0: the default)
};

// Removes the store of heap `name` under `dir`; refused while a process
// holds it open. With `on_replicas`, first removes it from its replicas
// too, claiming a term so that a writer still running elsewhere is fenced.
int RunRemove(const std::string& dir, const std::string& name, bool on_replicas, const ReplicaArgs& replicas,
              bool json);
// Compacts the store of heap `name` under `dir` now; 1 (with the reason on
// stderr) if it is held by a running process or cannot be compacted.
// `pheap snapshot NAME NEW`: heap NEW in `dest_dir` (empty: `dir`) made
// from heap NAME's image as of `epoch` (0: its newest durable epoch), read
// from its store while its writer may run. Prints what it made; 1 (the
// reason on stderr) on failure.
int RunSnapshot(const std::string& dir, const std::string& name, const std::string& dest, const std::string& dest_dir,
                uint64_t epoch);

// `retain`: as config retain= (empty: keep only the durable epoch).
int RunCompact(const std::string& dir, const std::string& name, const std::string& retain);

// `pheap check`: reads every live page of heap `name` in its local store
// (under `dir`, if there) and on each of its replicas (the recorded ones,
// or `peers`), reporting each copy that fails its checksum; with `repair`,
// rewrites it from a good copy. 0: every copy checked and good (or
// repaired); 2: damage remains; 1: something could not be checked.
struct CheckOptions {
  std::string dir, name;
  ReplicaArgs replicas;
  bool repair = false, json = false;
};
int RunCheck(const CheckOptions& options);

// `pheap top` (and `pheap inspect --pid`): the live statistics of the heaps
// process `pid` holds, or of heap `name` under `dir` (heap/live_stats.h).
// Prints `count` snapshots `interval_ms` apart (0: until SIGINT on a
// terminal, else one); 1 with the reason when a heap is not running.
struct TopOptions {
  long pid = 0;
  std::string dir = "./.pheap", name;
  bool json = false;
  long interval_ms = 1000;
  long count = 0;
};
int RunTop(const TopOptions& options);
// What each field of `pheap top` means, for its --help.
extern const char kTopFields[];

// `pheap run`: executes `command` under libpheap_preload.so; returns only
// if it could not (126, or 127 when the program is not found).
struct RunOptions {
  std::string name, dir, peers;
  long commit_ms = -1;  // < 0: the library's default
  bool children = false;  // the processes the program starts persist too
  std::vector<std::string> command;
};
int RunPreloaded(const RunOptions& options);

}  // namespace pheap::tools
