// The peer daemon as its own process, for the tests:
//   test_peer --listen ENDPOINT --dir DIR [--keys DIR] [--insecure]
//             [--inbox-memory BYTES] [--inbox-limit BYTES]
//             [--log-file-size BYTES] [--no-compact]
#include <cstdio>
#include <cstring>
#include <string>

#include "base/log.h"
#include "replication/peer_server.h"

int main(int argc, char** argv) {
  pheap::PeerOptions o;
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
    else {
      std::fprintf(stderr,
                   "usage: test_peer --listen ENDPOINT --dir DIR [--keys DIR] [--insecure] "
                   "[--inbox-memory BYTES] [--inbox-limit BYTES] [--log-file-size BYTES] [--no-compact]\n");
      return 2;
    }
  }
  return pheap::RunPeerDaemon(o);
}
