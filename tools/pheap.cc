// The `pheap` command: demo, ls, inspect, diff, top, compact, snapshot, rm, check, peer, keygen, run.
// Each subcommand's --help says what it prints (its footer).
#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <cstdlib>

#include <string>

#include "replication/curve_auth.h"
#include "replication/peer_server.h"
#include "tools/commands.h"

namespace {

// A footer wrapped at 79 columns, as CLI11 lays out the options (it prints
// a footer as given).
std::string Wrapped(const std::string& text) {
  constexpr size_t kWidth = 79;
  std::string out, line;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find(' ', at);
    if (end == std::string::npos) end = text.size();
    const std::string word = text.substr(at, end - at);
    if (!line.empty() && line.size() + 1 + word.size() > kWidth) {
      out += line + "\n";
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
    at = end + 1;
  }
  return out + line;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pheap: a persistent, replicated virtual-memory heap"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("pheap ") + PHEAP_VERSION);

  std::string demo_dir;
  bool keep = false;
  auto* demo = app.add_subcommand("demo", "show objects surviving kill -9 and a restart");
  demo->add_option("--dir", demo_dir, "store directory (default: a fresh temporary one)");
  demo->add_flag("--keep", keep, "keep the temporary store afterwards");
  demo->footer(Wrapped(
      "Output: each step of the demonstration (objects built, the process killed with SIGKILL, the heap reopened) "
      "and whether what it checks held. Exit status 0 when every check held."));

  auto replica_args = [](CLI::App* c, pheap::tools::ReplicaArgs* a) {
    c->add_option("--peers", a->peers, "the heap's peers (default: those the heap records)");
    c->add_option("--replicas", a->replicas, "with --peers: the heap's replica count");
    c->add_option("--keys", a->keys, "with --peers: CURVE key directory");
  };
  std::string dir = "./.pheap", name;
  bool json = false, verify = false;
  auto* inspect = app.add_subcommand("inspect", "show what a heap's store holds");
  long inspect_pid = 0;
  auto* inspect_name = inspect->add_option("name", name, "heap name");
  inspect->add_option("--dir", dir, "store directory")->capture_default_str();
  inspect->add_flag("--json", json, "print JSON");
  inspect->add_flag("--verify", verify, "read every live page and check its checksum");
  pheap::tools::ReplicaArgs inspect_replicas;
  replica_args(inspect, &inspect_replicas);
  inspect
      ->add_option("--pid", inspect_pid, "instead: the live statistics of the heaps this process holds (pheap top PID)")
      ->excludes(inspect_name);
  bool inspect_live = false;
  inspect->add_flag("--live", inspect_live,
                    "instead of the store: the live statistics of the process holding it (pheap top --heap NAME)");
  size_t max_epochs = 20;
  inspect->add_option("--epochs", max_epochs, "show the newest N retained epochs (0: all)")->capture_default_str();
  inspect->footer(Wrapped(
      "Output: the heap's id, durable epoch and term, region and high-water mark; the store: log files, bytes on "
      "disk (with and without padding), live pages and their ratio to the bytes on disk (space amplification), the "
      "last compaction the log holds (when, log files replaced, bytes reclaimed); the holding process; the last "
      "writer (build, code pointers, tracking mode), the roots with their addresses, sizes and types, and the "
      "allocator (live and free bytes, "
      "fragmentation, size classes, thread heaps); the retained epochs (those whose commit records the log still "
      "holds: compaction drops older ones), each with its term, time, pages and bytes written and commit pause (- "
      "where not recorded); with --html, the file written and the pages drawn; when the heap ran under `pheap run`, "
      "its commit statistics; and for a replicated heap each replica's epoch and term, lag (epochs, and bytes where "
      "this store retains them), bytes stored and last error. --json prints the same as one object: heap, path, "
      "heap_id, epoch, term, base, size, hwm_pages, "
      "holder_pid, store {...}, epochs [...], writer {...}, roots [...], allocator {...}, replicas [...], and "
      "verified, html, preload, replicas_error when present. With --pid or --live it prints what `pheap top` does "
      "instead. With no store under --dir, reads the heap from its peers (--peers): the same heap, roots, "
      "allocator and replicas, with read_from \"peers\" and no store or epochs. Reads without the writer's lock: "
      "safe while the heap runs. Exit status 1 if the store cannot be read, 2 if --verify found damage."));

  pheap::Epoch diff_from = 0, diff_to = 0;
  auto* diff = app.add_subcommand("diff", "show what changed between two retained epochs of a heap");
  diff->add_option("name", name, "heap name")->required();
  diff->add_option("from", diff_from, "the earlier epoch")->required();
  diff->add_option("to", diff_to, "the later epoch")->required();
  diff->add_option("--dir", dir, "store directory")->capture_default_str();
  diff->add_flag("--json", json, "print JSON");
  diff->footer(Wrapped(
      "Output: the pages the epochs after FROM, up to TO, wrote (as ranges of page numbers), the page runs they "
      "discarded, the extents of TO's allocator those pages lie in (a heap page of one block size, a large or huge "
      "object, allocator metadata, the superblock) with how many of each were written, and the roots whose "
      "address or type differs between the images of FROM and TO. Both epochs and "
      "every one between must be retained (see `pheap inspect`); the error names the retained ones. Roots are "
      "compared only where the log still holds the image as of FROM (after the newest compaction); otherwise the "
      "reason is shown. --json: heap, from, to, pages [numbers], discarded [{first, count}], extents [{address, bytes, "
      "use, block_size, "
      "pages_written}] (or null with extents_error), roots [{name, type, "
      "from, to}] (null addresses: not set) or null with roots_error. Exit status 1 on an error."));

  pheap::tools::TopOptions top_opts;
  auto* top = app.add_subcommand("top",
                                 "watch the heaps a running process holds: commits, pauses, faults, "
                                 "resident pages, evictions, replica lag");
  auto* top_pid = top->add_option("pid", top_opts.pid, "the process");
  top->add_option("--heap", top_opts.name, "instead of a pid: the heap of this name under --dir")->excludes(top_pid);
  top->add_option("--dir", top_opts.dir, "store directory (with --heap)")->capture_default_str();
  top->add_flag("--json", top_opts.json, "print one snapshot as JSON and exit");
  top->add_option("--interval", top_opts.interval_ms, "milliseconds between refreshes")
      ->check(CLI::Range(10L, 3600000L))
      ->capture_default_str();
  top->add_option("--count", top_opts.count,
                  "print this many snapshots, then exit (default: refresh until Ctrl-C on a terminal, else one)")
      ->check(CLI::NonNegativeNumber);
  top->footer(fmt::format(
      "{}\n\n{}",
      Wrapped("Output: per heap the process holds, a block of the fields below, refreshed in place on a terminal. "
              "--json: {pid, heaps: [{heap, store, pid, exe, running, tracking, base, size, durable_epoch, commits, "
              "pause_ns {cuts, p50, p99, max, last}, paused_threads, dirty_pages, last_commit_dirty_pages, faults "
              "{...}, replicas "
              "[{endpoint, answered, installing, durable_epoch, lag_epochs}], resident_pages, memory {max_bytes, "
              "resident_pages, evictions, refetches}, updated_seconds_ago, "
              "snapshots}]}, one object per snapshot. Exit status 1, with the reason, if a heap is not running."),
      pheap::tools::kTopFields));
  std::string html;
  inspect->add_option("--html", html,
                      "also write FILE: one self-contained HTML page drawing every page of the heap (contents, "
                      "epoch last written, residency in the writer), zoomable, with details on hover");

  auto* ls =
      app.add_subcommand("ls", "list the heaps of a directory: epoch, term, size, live and stored bytes, holder");
  ls->add_option("--dir", dir, "store directory (a peer's --dir works too)")->capture_default_str();
  ls->add_flag("--json", json, "print JSON");
  ls->footer(Wrapped(
      "Output: one line per heap: NAME, EPOCH (last durable), TERM, SIZE (region), LIVE (stored live pages), ON "
      "DISK (log bytes) and HOLDER (the pid holding it open, - if none); heaps recovery set aside are marked. "
      "--json: {dir, heaps: [{name, set_aside, epoch, term, base, size, live_bytes, bytes_on_disk, holder_pid}]}."));

  auto* rm = app.add_subcommand("rm", "remove a heap's local store (refused while a process holds it)");
  rm->add_option("name", name, "heap name")->required();
  rm->add_option("--dir", dir, "store directory")->capture_default_str();
  rm->add_flag("--json", json, "print JSON");
  bool rm_on_replicas = false;
  pheap::tools::ReplicaArgs rm_replicas;
  rm->add_flag("--on-replicas", rm_on_replicas,
               "remove it from its replicas too (those it records, or --peers); a writer still running elsewhere "
               "is fenced");
  replica_args(rm, &rm_replicas);
  rm->footer(Wrapped(
      "Output: a line naming the heap removed (--json: {removed, dir, local}); with --on-replicas, first a line "
      "per replica, removed or not (--json: replicas [{replica, removed, error}]), and if one was not, the heap "
      "stays here too and the exit status is 1. Refused, naming the pid, while a process holds the heap. Exit "
      "status 1 on an error."));

  auto* compact = app.add_subcommand("compact", "compact a heap's store now (a heap in use compacts itself)");
  compact->add_option("name", name, "heap name")->required();
  compact->add_option("--dir", dir, "store directory")->capture_default_str();
  std::string retain;
  compact->add_option("--retain", retain,
                      "past epochs to keep readable, as config retain= (N epochs, or 30s, 15m, 2h, 1d); default "
                      "PHEAP_RETAIN, else none");
  compact->footer(
      Wrapped("Output: the log files and MiB before and after, and the live pages kept. Epochs whose log files it "
              "replaces are no longer retained (see `pheap inspect`), except those --retain keeps. Exit status 1, with "
              "the reason, if a process holds the heap or the store cannot be compacted."));

  auto* snapshot = app.add_subcommand("snapshot", "make a new heap from a durable epoch of a heap, while it runs");
  std::string snapshot_dest, snapshot_to;
  uint64_t snapshot_epoch = 0;
  snapshot->add_option("name", name, "heap name")->required();
  snapshot->add_option("new", snapshot_dest, "the new heap's name")->required();
  snapshot->add_option("--dir", dir, "store directory")->capture_default_str();
  snapshot->add_option("--to", snapshot_to, "the new heap's store directory (default: --dir)");
  snapshot->add_option("--epoch", snapshot_epoch, "a retained epoch (default: the newest durable one)");
  snapshot->footer(Wrapped(
      "Reads the image from the heap's store without its lock: a writer running in another process keeps "
      "committing, never paused. The new heap holds the image at the same address (it cannot be open in one "
      "process with the heap it came from), has no peers, and its durable epoch is the one copied. Past epochs "
      "can be copied while the store retains them (config retain=). Output: the new heap, its directory and the "
      "epoch. Exit status 1, with the reason, if the new heap exists, the epoch is not retained or a store "
      "cannot be read or written."));

  pheap::tools::CheckOptions check_opts;
  check_opts.dir = dir;
  auto* check = app.add_subcommand(
      "check",
      "read every live page of a heap, locally and on each replica, and report each copy that fails its checksum");
  check->add_option("name", check_opts.name, "heap name")->required();
  check->add_option("--dir", check_opts.dir, "store directory")->capture_default_str();
  replica_args(check, &check_opts.replicas);
  check->add_flag("--repair", check_opts.repair,
                  "rewrite each damaged copy from a good one (the heap must not be open in a process)");
  check->add_flag("--json", check_opts.json, "print JSON");
  check->footer(Wrapped(
      "Output: for the local store and each replica, its durable (epoch, term), the live pages checked, and each "
      "damaged page with its log file and offset (with --repair, whether it was repaired); then the count of "
      "damaged copies. --json: {heap, epoch, term, damaged, repaired, complete, copies: [{where, local, reachable, "
      "epoch, term, pages_checked, damaged: [{page, what, repaired, file, offset, repair_error}], error}]}. Exit "
      "status: 0 all good (or repaired), 2 damage remains, 1 a copy could not be checked (unreachable, behind, "
      "unreadable)."));

  pheap::PeerOptions peer_opts;
  auto* peer = app.add_subcommand("peer", "run a peer: the page store for any number of heaps");
  peer->add_option("--listen", peer_opts.endpoint, "ZeroMQ endpoint to bind, e.g. tcp://127.0.0.1:7400");
  peer->add_option("--dir", peer_opts.dir, "directory holding one store per heap");
  peer->add_option("--keys", peer_opts.keys_dir, "CURVE key directory (pheap keygen)");
  peer->add_flag("--insecure", peer_opts.insecure, "allow a non-loopback endpoint without keys");
  peer->add_option("--inbox-memory", peer_opts.inbox.memory_bytes,
                   "per heap: memory for an epoch's pages awaiting their commit (more goes to a file in --dir)")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  peer->add_option("--direct-write", peer_opts.store.direct_write_bytes,
                   "an epoch of at least this size is written with O_DIRECT, past the page cache (0: never)")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  peer->add_option("--compact", peer_opts.compact, "on|off: compact every heap's store in the background")
      ->capture_default_str();
  double peer_compact_ratio = 2;
  peer->add_option("--compact-ratio", peer_compact_ratio,
                   "compact when a store's log files pass this many times its live image, plus one log file")
      ->check(CLI::Range(1.25, 100.0))
      ->capture_default_str();
  peer->add_option("--inbox-limit", peer_opts.inbox.max_bytes, "per heap: the largest epoch accepted")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  std::string status_endpoint, status_keys;
  bool status_json = false;
  auto* status = peer->add_subcommand("status", "report what a running peer holds");
  status->add_option("endpoint", status_endpoint, "the peer's endpoint")->required();
  status->add_option("--keys", status_keys, "CURVE key directory");
  status->add_flag("--json", status_json, "print JSON");
  status->footer(Wrapped(
      "Output: the peer's heaps, clients and uptime, then per heap its epoch, promised term, bytes stored, live "
      "pages, pages awaiting a commit (inbox), state (open, FAILED, no store), health and last error. --json: "
      "{endpoint, clients, uptime_ms, heaps: [{name, heap_id, epoch, promised_term, bytes_on_disk, live_pages, "
      "inbox_pages, open, failed, health, errno, error}]}."));
  peer->footer(Wrapped(
      "Output: log lines on stderr as heaps connect, commit and compact; runs until stopped. `pheap peer status "
      "ENDPOINT` reports what a running peer holds."));

  std::string keygen_dir;
  auto* keygen = app.add_subcommand("keygen", "make a CURVE key pair in DIR");
  keygen->add_option("dir", keygen_dir, "directory for peer.key and peer.pub")->required();
  keygen->footer(Wrapped("Output: a line naming the directory the key pair was written to."));

  pheap::tools::RunOptions run_opts;
  auto* run = app.add_subcommand("run", "run a program with its malloc/new on a persistent heap");
  run->add_option("--name", run_opts.name, "heap name (default: PROGRAM-PID)");
  run->add_option("--dir", run_opts.dir, "store directory (default: $PHEAP_DIR, else ./.pheap)");
  run->add_option("--peers", run_opts.peers, "comma-separated peer endpoints");
  run->add_option("--commit-ms", run_opts.commit_ms, "commit period in ms (default 1000; 0: only at exit)")
      ->check(CLI::NonNegativeNumber);
  run->add_flag("--children", run_opts.children,
                "the processes the program starts persist too, each on a heap of its own (default: they run on "
                "glibc's malloc)");
  run->add_option("command", run_opts.command, "-- PROGRAM ARGS...")->required();
  run->footer(Wrapped(
      "Output: the program's own; pheap adds nothing unless an error stops it. Its heap is then shown by `pheap "
      "inspect NAME` (commit pauses included). Exit status: the program's, or 126 (could not run it) / 127 (not "
      "found)."));

  CLI11_PARSE(app, argc, argv);
  if (*run) return pheap::tools::RunPreloaded(run_opts);
  if (*demo) return pheap::tools::RunDemo(demo_dir, keep);
  if (*top) return pheap::tools::RunTop(top_opts);
  if (*inspect && (inspect_pid > 0 || inspect_live)) {
    pheap::tools::TopOptions o;
    o.pid = inspect_pid;
    if (inspect_pid == 0) o.name = name;
    o.dir = dir;
    o.json = json;
    return pheap::tools::RunTop(o);
  }
  if (*inspect && name.empty()) {
    fmt::print(stderr, "pheap inspect: give a heap name, or --pid PID\n");
    return 2;
  }
  if (*inspect) return pheap::tools::RunInspect(dir, name, json, verify, max_epochs, inspect_replicas, html);
  if (*diff) return pheap::tools::RunDiff(dir, name, diff_from, diff_to, json);
  if (*ls) return pheap::tools::RunList(dir, json);
  if (*rm) return pheap::tools::RunRemove(dir, name, rm_on_replicas, rm_replicas, json);
  if (*snapshot) return pheap::tools::RunSnapshot(dir, name, snapshot_dest, snapshot_to, snapshot_epoch);
  if (*compact) {
    if (retain.empty() && std::getenv("PHEAP_RETAIN") != nullptr) retain = std::getenv("PHEAP_RETAIN");
    return pheap::tools::RunCompact(dir, name, retain);
  }
  if (*check) return pheap::tools::RunCheck(check_opts);
  if (*status) return pheap::PrintPeerStatus(status_endpoint, status_keys, status_json);
  if (*peer) {
    if (peer_opts.endpoint.empty() || peer_opts.dir.empty()) {
      fmt::print(stderr, "pheap peer: --listen and --dir are required\n");
      return 2;
    }
    peer_opts.store.compact_live_ratio = 1 / peer_compact_ratio;
    return pheap::RunPeerDaemon(peer_opts);
  }
  if (*keygen) {
    pheap::Status s = pheap::GenerateKeyPair(keygen_dir);
    if (!s.ok()) {
      fmt::print(stderr, "pheap keygen: {}\n", s.ToString());
      return 1;
    }
    fmt::print("key pair written to {} (peer.key, peer.pub)\n", keygen_dir);
    return 0;
  }
  return 1;
}
