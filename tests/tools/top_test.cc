// `pheap top` and `pheap inspect --pid` against a real child process that
// holds a heap and commits in the background; argv[1] is the pheap command.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "pheap/pheap.h"
#include "tests/support/test_util.h"

namespace {

std::string g_pheap;

class PheapTop : public ::testing::Test {
 protected:
  void SetUp() override {
    if (g_pheap.empty()) GTEST_SKIP() << "give the pheap command's path as the first argument";
    char tmpl[] = "/tmp/pheap-top-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (child_ > 0) {
      ::kill(child_, SIGKILL);
      ::waitpid(child_, nullptr, 0);
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Starts a child that opens heap `name` (config `extra` added), writes
  // `pages` pages of it and commits every 20 ms until its stdin pipe
  // closes, then closes the heap; each byte written to the pipe (Poke)
  // makes it read every page again. Returns once it committed once.
  void StartChild(const std::string& name, int pages, const std::string& extra = "") {
    int ready[2], stop[2];
    ASSERT_EQ(::pipe(ready), 0);
    ASSERT_EQ(::pipe(stop), 0);
    child_ = ::fork();
    ASSERT_GE(child_, 0);
    if (child_ == 0) {
      ::close(ready[0]);
      ::close(stop[1]);
      pheap* h = pheap_open(name.c_str(), ("dir=" + dir_ + ";size=64M;commit_ms=20" + extra).c_str());
      if (h == nullptr) ::_exit(3);
      auto* p = static_cast<char*>(pheap_calloc(h, pages, 4096));
      if (p == nullptr || pheap_set_root(h, "data", p) != 0) ::_exit(4);
      std::memset(p, 1, static_cast<size_t>(pages) * 4096);
      if (pheap_commit(h) <= 0) ::_exit(5);
      if (::write(ready[1], "r", 1) != 1) ::_exit(6);
      char c;
      while (::read(stop[0], &c, 1) > 0) {
        int sum = 0;
        for (int i = 0; i < pages; ++i) sum += static_cast<volatile char*>(p)[i * 4096];
        if (sum != pages) ::_exit(8);
      }
      ::_exit(pheap_close(h) == 0 ? 0 : 7);
    }
    ::close(ready[1]);
    ::close(stop[0]);
    stop_ = stop[1];
    char c = 0;
    ASSERT_EQ(::read(ready[0], &c, 1), 1) << "the child could not open and commit its heap";
    ::close(ready[0]);
  }

  void Poke() { ASSERT_EQ(::write(stop_, "p", 1), 1); }

  // Lets the child close its heap and exit; its exit status.
  int StopChild() {
    ::close(stop_);
    int status = 0;
    ::waitpid(child_, &status, 0);
    child_ = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  // Runs `pheap ARGS`; its exit status, and what it printed in *out.
  int Pheap(const std::string& args, std::string* out) {
    out->clear();
    return pheaptest::RunCommand(g_pheap + " " + args + " 2>&1", out);
  }

  // `pheap ARGS` as JSON, once it shows at least `commits` commits (or
  // after a minute: sanitized builds commit far more slowly).
  nlohmann::json Watch(const std::string& args, uint64_t commits) {
    nlohmann::json j;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      std::string out;
      EXPECT_EQ(Pheap(args, &out), 0) << out;
      j = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.contains("heaps") || j["heaps"].empty()) return j;
      if (j["heaps"][0]["commits"].get<uint64_t>() >= commits) return j;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return j;
  }

  std::string dir_;
  pid_t child_ = 0;
  int stop_ = -1;
};

TEST_F(PheapTop, ShowsARunningProcessesHeapThenThatItEnded) {
  // The child's main thread waits in read(2) while its background commits
  // must pause it; TSan holds the safepoint signal back from it, so its
  // commits stall after the first (as HeapCrashOracle's do under a mutex).
  PHEAP_SKIP_UNDER_TSAN("the watched child's background commits stall: TSan defers the safepoint signal");
  StartChild("watched", 64);
  const std::string pid = std::to_string(child_);
  const nlohmann::json j = Watch("top " + pid + " --json", 3);
  ASSERT_TRUE(j.contains("heaps")) << j.dump();
  ASSERT_EQ(j["heaps"].size(), 1u) << j.dump();
  const nlohmann::json& h = j["heaps"][0];
  EXPECT_EQ(j["pid"].get<long>(), child_);
  EXPECT_EQ(h["pid"].get<long>(), child_);
  EXPECT_EQ(h["heap"], "watched");
  EXPECT_TRUE(h["running"].get<bool>());
  EXPECT_GE(h["commits"].get<uint64_t>(), 3u);
  EXPECT_GE(h["durable_epoch"].get<uint64_t>(), 3u);
  EXPECT_GE(h["pause_ns"]["cuts"].get<uint64_t>(), 3u);
  EXPECT_GT(h["pause_ns"]["max"].get<uint64_t>(), 0u);
  EXPECT_GT(h["pause_ns"]["p50"].get<uint64_t>(), 0u);
  EXPECT_GE(h["pause_ns"]["p99"].get<uint64_t>(), h["pause_ns"]["p50"].get<uint64_t>());
  EXPECT_GE(h["pause_ns"]["max"].get<uint64_t>(), h["pause_ns"]["p99"].get<uint64_t>());
  ASSERT_FALSE(h["resident_pages"].is_null()) << h.dump();
  EXPECT_GE(h["resident_pages"].get<uint64_t>(), 64u);
  EXPECT_TRUE(h["replicas"].empty());
  EXPECT_EQ(h["store"], dir_ + "/watched");
  EXPECT_LT(h["updated_seconds_ago"].get<double>(), 30.0);

  // The same by the heap's name, and through inspect; the text form names
  // every section.
  std::string out;
  ASSERT_EQ(Pheap("top --heap watched --dir " + dir_ + " --json", &out), 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["heaps"][0]["pid"].get<long>(), child_);
  ASSERT_EQ(Pheap("inspect --pid " + pid + " --json", &out), 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["heaps"][0]["heap"], "watched");
  ASSERT_EQ(Pheap("inspect watched --live --json --dir " + dir_, &out), 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["heaps"][0]["pid"].get<long>(), child_);
  ASSERT_EQ(Pheap("top " + pid + " --count 2 --interval 20", &out), 0) << out;
  for (const char* field : {"epoch", "pause", "p99", "dirty", "faults", "resident", "memory ", "replicas", "updated"})
    EXPECT_NE(out.find(field), std::string::npos) << field << " in " << out;

  ASSERT_EQ(StopChild(), 0);
  ASSERT_EQ(Pheap("top " + pid + " --json", &out), 1) << out;
  const nlohmann::json err = nlohmann::json::parse(out);
  EXPECT_EQ(err["error"]["message"], "process " + pid + " is not running") << out;
  ASSERT_EQ(Pheap("top " + pid, &out), 1);
  EXPECT_NE(out.find("process " + pid + " is not running"), std::string::npos) << out;
  // A closed heap leaves no statistics behind.
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/watched/LIVE"));
  ASSERT_EQ(Pheap("top --heap watched --dir " + dir_, &out), 1);
  EXPECT_NE(out.find("not running"), std::string::npos) << out;
}

// A process killed while holding its heap leaves its statistics file: it is
// recognised as stale, naming the pid.
TEST_F(PheapTop, ReportsAKilledHoldersStatisticsAsNotRunning) {
  StartChild("killed", 4);
  const pid_t pid = child_;
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ::waitpid(pid, nullptr, 0);
  child_ = 0;
  ::close(stop_);
  ASSERT_TRUE(std::filesystem::exists(dir_ + "/killed/LIVE"));
  std::string out;
  ASSERT_EQ(Pheap("top --heap killed --dir " + dir_ + " --json", &out), 1) << out;
  const std::string message = nlohmann::json::parse(out)["error"]["message"];
  EXPECT_NE(message.find("process " + std::to_string(pid) + " is not running"), std::string::npos) << message;
  EXPECT_NE(message.find("stale"), std::string::npos) << message;

  // The next holder takes the file over.
  pheap* h = pheap_open("killed", ("dir=" + dir_ + ";size=64M").c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  ASSERT_EQ(Pheap("top --heap killed --dir " + dir_ + " --json", &out), 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["heaps"][0]["pid"].get<long>(), ::getpid());
  pheap_close(h);
}

// A heap written to four times its budget: the evictions, the refetches of
// a read-back and a resident count near the budget show in JSON and text.
TEST_F(PheapTop, ShowsEvictionsAndRefetchesUnderAMemoryBudget) {
  PHEAP_SKIP_UNDER_TSAN("the watched child's background commits stall: TSan defers the safepoint signal");
  constexpr uint64_t kBudget = uint64_t{2} << 20, kBudgetPages = kBudget / 4096;
  StartChild("budget", 2048, ";memory_max=2M");
  const std::string pid = std::to_string(child_);
  // The memory block once `done` holds (or after a minute).
  auto watch = [&](auto done) {
    nlohmann::json h;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      std::string out;
      EXPECT_EQ(Pheap("top " + pid + " --json", &out), 0) << out;
      const nlohmann::json j = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.contains("heaps") || j["heaps"].empty()) return j;
      h = j["heaps"][0];
      if (done(h["memory"])) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return h;
  };
  nlohmann::json h = watch([&](const nlohmann::json& m) {
    return m["max_bytes"].is_number() && m["resident_pages"].is_number() && m["evictions"].get<uint64_t>() > 0 &&
           m["resident_pages"].get<uint64_t>() <= kBudgetPages;
  });
  ASSERT_TRUE(h.contains("memory")) << h.dump();
  const nlohmann::json& m = h["memory"];
  if (m["max_bytes"] == 0) GTEST_SKIP() << "tracking " << h["tracking"] << " does not evict";
  EXPECT_EQ(m["max_bytes"].get<uint64_t>(), kBudget) << h.dump();
  EXPECT_GT(m["evictions"].get<uint64_t>(), 1024u) << h.dump();
  EXPECT_LE(m["resident_pages"].get<uint64_t>(), kBudgetPages) << h.dump();
  ASSERT_TRUE(h["resident_pages"].is_number()) << h.dump();
  EXPECT_LE(h["resident_pages"].get<uint64_t>(), kBudgetPages + 64) << "smaps: " << h.dump();

  Poke();  // reads all 2048 pages back: most were given back
  h = watch([&](const nlohmann::json& mem) { return mem["refetches"].get<uint64_t>() >= 1024; });
  EXPECT_GE(h["memory"]["refetches"].get<uint64_t>(), 1024u) << h.dump();
  std::string out;
  ASSERT_EQ(Pheap("inspect --pid " + pid, &out), 0) << out;
  EXPECT_NE(out.find("budget 2.0 MiB"), std::string::npos) << out;
  EXPECT_NE(out.find(" evicted"), std::string::npos) << out;
  EXPECT_NE(out.find(" refetched"), std::string::npos) << out;
  ASSERT_EQ(StopChild(), 0);
}

TEST_F(PheapTop, ExplainsEachFieldAndRefusesAProcessWithoutAHeap) {
  std::string out;
  ASSERT_EQ(Pheap("top --help", &out), 0) << out;
  for (const char* field : {"commits", "pause", "dirty", "faults", "resident", "memory_max", "evicted", "refetched",
                            "replicas", "not running"})
    EXPECT_NE(out.find(field), std::string::npos) << field;
  ASSERT_EQ(Pheap("top " + std::to_string(::getpid()) + " --json", &out), 1) << out;
  EXPECT_NE(nlohmann::json::parse(out)["error"]["message"].get<std::string>().find("has no heap open"),
            std::string::npos)
      << out;
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc > 1) g_pheap = argv[1];
  return RUN_ALL_TESTS();
}
