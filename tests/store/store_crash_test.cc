// SIGKILL at random instants: a child persists epochs of deterministic
// content (compacting now and then) and acknowledges each durable epoch on
// a pipe; the parent kills it, reopens the store and checks the image
// against its own model of that epoch.
//
// Replay a failure with PHEAP_CRASH_SEED=<seed printed by the failing run>.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>

#include "store_test_util.h"

namespace pheap::testing {
namespace {

constexpr int kKills = 50;

PageStoreOptions CrashOptions() {
  PageStoreOptions o = Options();
  o.log_file_bytes = 48 * 1024;  // roll often, so kills land around new files too
  o.direct_write_bytes = 32 * 1024;  // epochs of 7+ pages go O_DIRECT, mixed with buffered ones
  return o;
}

[[noreturn]] void ChildLoop(const std::string& dir, uint64_t seed, int ack_fd) {
  auto r = PageStore::Open(dir, "crash", CrashOptions());
  if (!r.ok()) {
    std::fprintf(stderr, "child: %s\n", r.status().ToString().c_str());
    ::_exit(2);
  }
  PageStore& store = *r.value();
  for (Epoch e = store.image().epoch + 1;; ++e) {
    auto d = GenerateEpoch(seed, e);
    Status s = store.Persist(d.sealed);
    if (!s.ok()) {
      std::fprintf(stderr, "child: %s\n", s.ToString().c_str());
      ::_exit(3);
    }
    if (::write(ack_fd, &e, sizeof(e)) != sizeof(e)) ::_exit(4);
    if (e % 16 == 0 && !store.Compact().ok()) ::_exit(5);
  }
}

// Reads acknowledgements until `deadline`; returns false at end of file.
bool ReadAcks(int fd, std::chrono::steady_clock::time_point deadline, Epoch* last) {
  for (;;) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(left, 0)));
    if (n <= 0) return true;
    Epoch e;
    ssize_t got = ::read(fd, &e, sizeof(e));
    if (got <= 0) return false;
    if (got == sizeof(e)) *last = e;
    if (left <= 0) return true;
  }
}

TEST(StoreCrash, SigkillAtRandomInstants) {
  uint64_t seed = std::random_device{}();
  if (const char* env = std::getenv("PHEAP_CRASH_SEED")) seed = std::strtoull(env, nullptr, 10);
  std::printf("crash seed %llu (replay with PHEAP_CRASH_SEED=%llu)\n", static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  SCOPED_TRACE("PHEAP_CRASH_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  TempDir dir;
  Model model;  // advanced to the durable epoch after every kill
  for (int kill = 0; kill < kKills; ++kill) {
    SCOPED_TRACE("kill " + std::to_string(kill));
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    std::fflush(nullptr);
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::close(fds[0]);
      ChildLoop(dir.path(), seed, fds[1]);
    }
    ::close(fds[1]);
    Epoch acked = model.epoch;
    auto delay = std::chrono::microseconds(rng() % 40000);
    bool alive = ReadAcks(fds[0], std::chrono::steady_clock::now() + delay, &acked);
    ::kill(child, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    while (ReadAcks(fds[0], std::chrono::steady_clock::now(), &acked)) {
    }
    ::close(fds[0]);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the child stopped on its own (exit " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1) << ")"
        << (alive ? "" : " early");

    PageStoreOptions ro = CrashOptions();
    ro.read_only = true;
    auto opened = PageStore::Open(dir.path(), "crash", ro);
    if (!opened.ok() && opened.status().code() == Status::Code::kNotFound) {
      // Killed before it made its first log file: nothing may be durable.
      ASSERT_EQ(acked, 0u) << opened.status().ToString();
      continue;
    }
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    auto& store = opened.value();
    Epoch durable = store->image().epoch;
    ASSERT_TRUE(durable == acked || durable == acked + 1) << "durable " << durable << ", last acknowledged " << acked;
    ASSERT_GE(durable, model.epoch);
    for (Epoch e = model.epoch + 1; e <= durable; ++e) model.Apply(GenerateEpoch(seed, e).sealed);
    ASSERT_TRUE(MatchesModel(*store, model, 64));
    ASSERT_TRUE(store->Verify(nullptr).ok());
  }
  std::printf("%d kills, durable epoch %llu\n", kKills, static_cast<unsigned long long>(model.epoch));
}

}  // namespace
}  // namespace pheap::testing
