// The peer daemon as its own process, for the tests:
//   test_peer --listen ENDPOINT --dir DIR [--keys DIR] [--insecure]
//             [--inbox-memory BYTES] [--inbox-limit BYTES]
//             [--log-file-size BYTES] [--no-compact] [--slow-sync-flag PATH]
//
// --slow-sync-flag: each sync takes the milliseconds written in PATH longer
// while PATH exists (tests/support/slow_sync_os.h).
#include <cstdio>
#include <cstring>
#include <string>

#include "base/log.h"
#include "replication/peer_server.h"
#include "tests/support/slow_sync_os.h"

int main(int argc, char** argv) {
  pheap::PeerOptions o;
  std::string slow_flag;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--listen") o.endpoint = next();
    else if (a == "--dir") o.dir = next();
    else if (a == "--keys") o.keys_dir = next();
    else if (a == "--insecure") o.insecure = true;
    else if (a == "--inbox-memory") o.inbox.memory_bytes = std::stoull(next());
    else if (a == "--inbox-limit") o.inbox.max_bytes = std::stoull(next());
    else if (a == "--log-file-size") o.store.log_file_bytes = std::stoull(next());
    else if (a == "--no-compact") o.compact = false;
    else if (a == "--slow-sync-flag") slow_flag = next();
    else {
      std::fprintf(stderr,
                   "usage: test_peer --listen ENDPOINT --dir DIR [--keys DIR] [--insecure] "
                   "[--inbox-memory BYTES] [--inbox-limit BYTES] [--log-file-size BYTES] [--no-compact] "
                   "[--slow-sync-flag PATH]\n");
      return 2;
    }
  }
  static pheaptest::SlowSyncOs slow(slow_flag);  // before any thread of the daemon's
  if (!slow_flag.empty()) pheap::SetOsForTesting(&slow);
  return pheap::RunPeerDaemon(o);
}
