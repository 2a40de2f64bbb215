// `pheap demo`: persistence and recovery, shown with ordinary C++ objects.
//   1. A writer process keeps a guest book (a std::map of strings in the
//      heap), commits entries, writes more without committing, and is
//      killed with SIGKILL.
//   2. The heap reopens: exactly the committed entries are there, at the
//      same addresses; nothing uncommitted is.
//   3. A new process continues the book and exits normally; it reopens
//      once more with the new entry.
//   4. With three local peers (k = 3, W = 2): a writer commits, is killed,
//      its directory is deleted (the machine is lost) and one peer is
//      killed too; the heap reopens in a new directory from the two left.
#include "tools/commands.h"

#include <pheap/allocator.hpp>
#include <pheap/heap.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace pheap::tools {
namespace {

using String = std::basic_string<char, std::char_traits<char>, pheap::allocator<char>>;
struct GuestBook {
  explicit GuestBook(const pheap::allocator<char>& a) : entries(a) {}
  std::map<int, String, std::less<int>, pheap::allocator<std::pair<const int, String>>> entries;
};

const char* const kCommitted[] = {"Ada: first!", "Grace: persistent hello",
                                  "Barbara: still here after kill -9"};
const char* const kUncommitted[] = {"Edsger: never committed", "Donald: lost with the crash"};
const char* const kAfterRestart = "Alan: written by the next process";

std::string Config(const std::string& dir, const std::string& peers = "") {
  return "dir=" + dir + ";size=1G" + (peers.empty() ? "" : ";peers=" + peers);
}

void Add(pheap::Heap& heap, GuestBook* book, const char* text) {
  int n = static_cast<int>(book->entries.size()) + 1;
  book->entries.emplace(n, String(text, pheap::allocator<char>(heap)));
}

// Commits three entries one by one, writes two more and a lot of other
// memory without committing, tells the parent, and waits to be killed.
[[noreturn]] void Writer(const std::string& config, int ready_fd) {
  try {
    pheap::Heap heap("demo", config);
    auto* book = heap.find_or_make<GuestBook>("guestbook", pheap::allocator<char>(heap));
    for (const char* text : kCommitted) {
      Add(heap, book, text);
      fmt::print("  writer {}: added \"{}\", commit -> epoch {}\n", getpid(), text, heap.commit());
    }
    for (const char* text : kUncommitted) {
      Add(heap, book, text);
      fmt::print("  writer {}: added \"{}\" (not committed)\n", getpid(), text);
    }
    void* scratch = heap.malloc(64 << 20);
    std::memset(scratch, 0xab, 64 << 20);
    fmt::print("  writer {}: filled 64 MiB more, not committed\n", getpid());
    std::fflush(stdout);
    // Still inside the heap's scope: leaving it would close, and so commit.
    if (write(ready_fd, "k", 1) != 1) _exit(1);
    for (;;) pause();
  } catch (const pheap::error& e) {
    fmt::print(stderr, "writer: {}\n", e.what());
    _exit(1);
  }
}

// Runs Writer in a child process and kills it with SIGKILL once it is ready.
bool RunAndKillWriter(const std::string& config) {
  std::fflush(stdout);
  int fds[2];
  if (pipe(fds) != 0) { std::perror("pipe"); return false; }
  pid_t pid = fork();
  if (pid == 0) { close(fds[0]); Writer(config, fds[1]); }
  close(fds[1]);
  char c;
  bool ready = read(fds[0], &c, 1) == 1;
  close(fds[0]);
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!ready) { fmt::print(stderr, "the writer failed before it was ready\n"); return false; }
  fmt::print("  kill -9 {}: {}\n\n", pid, WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "exited");
  return true;
}

bool Show(pheap::Heap& heap, const char* const* want, size_t n_want);

// Part 4: the same guest book on three local peer daemons.
bool ShowReplicated(const std::string& dir) {
  fmt::print("4. With three local peers (k=3, W=2), the writer's machine is lost, and one peer with it:\n");
  std::vector<pid_t> peers;
  std::string endpoints;
  for (int i = 0; i < 3; ++i) {
    std::string ep = fmt::format("ipc://{}/peer{}.sock", dir, i), pdir = fmt::format("{}/peer{}", dir, i);
    endpoints += (i ? "," : "") + ep;
    std::fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      int null = open("/dev/null", O_WRONLY);
      dup2(null, 1);
      dup2(null, 2);
      execl("/proc/self/exe", "pheap", "peer", "--listen", ep.c_str(), "--dir", pdir.c_str(), nullptr);
      _exit(127);
    }
    peers.push_back(pid);
    fmt::print("  peer {} (pid {}) serves {}\n", i, pid, ep);
  }
  for (int i = 0; i < 3; ++i)
    for (int t = 0; t < 500 && !std::filesystem::exists(fmt::format("{}/peer{}.sock", dir, i)); ++t) usleep(10000);
  auto stop_peers = [&] {
    for (pid_t p : peers) {
      if (p <= 0) continue;
      kill(p, SIGTERM);
      waitpid(p, nullptr, 0);
    }
  };
  const std::string node_a = dir + "/node-a", node_b = dir + "/node-b";
  if (!RunAndKillWriter(Config(node_a, endpoints))) {
    stop_peers();
    return false;
  }
  std::filesystem::remove_all(node_a);
  fmt::print("  rm -rf {}: the writer's local store is gone\n", node_a);
  kill(peers[0], SIGKILL);
  waitpid(peers[0], nullptr, 0);
  fmt::print("  kill -9 {}: peer 0 is gone too\n\n", peers[0]);
  peers[0] = -1;

  fmt::print("  The heap reopens by name in an empty directory, {}, from the peers left:\n", node_b);
  std::fflush(stdout);
  bool ok = false;
  pid_t pid = fork();
  if (pid == 0) {
    try {
      pheap::Heap heap("demo", Config(node_b, endpoints));
      bool good = Show(heap, kCommitted, std::size(kCommitted));
      std::fflush(stdout);
      _exit(good ? 0 : 1);
    } catch (const pheap::error& e) {
      fmt::print(stderr, "demo: {}\n", e.what());
      _exit(1);
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  stop_peers();
  return ok;
}

bool Show(pheap::Heap& heap, const char* const* want, size_t n_want) {
  auto* book = heap.root<GuestBook>("guestbook");
  fmt::print("  durable epoch {}, guest book at {} holds {} entries:\n", heap.durable_epoch(),
             static_cast<void*>(book), book ? book->entries.size() : 0);
  if (book == nullptr) return false;
  bool ok = book->entries.size() == n_want;
  size_t i = 0;
  for (const auto& [n, text] : book->entries) {
    fmt::print("    {}. {}\n", n, text.c_str());
    if (i < n_want && std::strcmp(text.c_str(), want[i]) != 0) ok = false;
    ++i;
  }
  return ok;
}

}  // namespace

int RunDemo(const std::string& dir_arg, bool keep) {
  std::string dir = dir_arg;
  if (dir.empty()) {
    char tmpl[] = "/tmp/pheap-demo-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) { std::perror("mkdtemp"); return 1; }
    dir = tmpl;
  }
  fmt::print("pheap demo: a heap named 'demo' stored in {}\n\n", dir);
  fmt::print("1. A writer process commits entries, adds more without committing, and is killed:\n");
  if (!RunAndKillWriter(Config(dir))) return 1;
  int status = 0;
  pid_t pid;

  bool ok = true;
  try {
    fmt::print("2. The heap reopens in a new process after the crash:\n");
    std::fflush(stdout);
    pid = fork();
    if (pid == 0) {
      pheap::Heap heap("demo", Config(dir));
      bool good = Show(heap, kCommitted, std::size(kCommitted));
      auto* book = heap.root<GuestBook>("guestbook");
      Add(heap, book, kAfterRestart);
      fmt::print("  added \"{}\", commit -> epoch {}; the process exits normally\n\n", kAfterRestart,
                 heap.commit());
      std::fflush(stdout);
      _exit(good ? 0 : 1);
    }
    waitpid(pid, &status, 0);
    ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;

    fmt::print("3. And reopens once more, here ({}):\n", getpid());
    pheap::Heap heap("demo", Config(dir));
    const char* const all[] = {kCommitted[0], kCommitted[1], kCommitted[2], kAfterRestart};
    ok = Show(heap, all, std::size(all)) && ok;
    fmt::print("\n");
  } catch (const pheap::error& e) {
    fmt::print(stderr, "demo: {}\n", e.what());
    ok = false;
  }
  ok = ShowReplicated(dir) && ok;
  fmt::print("\n{}\n", ok ? "OK: committed objects came back at their addresses after kill -9, after a "
                            "restart, and from the peers after the loss of the machine; nothing uncommitted did."
                          : "FAILED: the reopened heap does not hold what was committed.");
  if (!keep && dir_arg.empty()) std::filesystem::remove_all(dir);
  return ok ? 0 : 1;
}

}  // namespace pheap::tools
