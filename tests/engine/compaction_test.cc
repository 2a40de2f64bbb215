// Background compaction through the engine: a long run of one-page commits
// keeps the heap's files near twice its live image plus one log file, and
// what was committed survives every reopen.
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <thread>

#include "base/config.h"
#include "heap/engine.h"
#include "tests/support/test_util.h"

namespace pheap {
namespace {

std::string g_pheap;  // the pheap command, from argv

constexpr uint64_t kLogFile = 256 << 10;
constexpr uint64_t kPages = 128;  // the live image: 512 KiB
// What the store may hold besides 2x the live image and one log file: the
// active file runs past log_file_size by up to its padding (256 KiB); files
// below the ratio with less than kCompactMinGain of garbage are left; and a
// compaction's file has a header, entry blocks, a sources list and a commit
// record.
constexpr uint64_t kSlack = (256 << 10) + PageStore::kCompactMinGain + 8 * kPageSize;

using pheaptest::LogFileBytes;

class EngineCompaction : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pheap-compact-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    options_.dir = dir_;
    options_.size = uint64_t{64} << 20;
    options_.store.log_file_bytes = kLogFile;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string dir_;
  EngineOptions options_;
};

TEST_F(EngineCompaction, SmallCommitsStayWithinTwiceTheLiveImage) {
  std::map<uint64_t, uint64_t> model;  // page -> value of its first word
  const std::string path = dir_ + "/small";
  uint64_t commit = 0, compactions = 0;
  constexpr uint64_t kEvery = 25;
  for (int session = 0; session < 3; ++session) {
    auto e = Engine::Open("small", options_);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    auto* words = static_cast<uint64_t*>((*e)->base());
    for (const auto& [page, value] : model) ASSERT_EQ(words[page * 512], value) << "page " << page;
    for (int i = 0; i < 600; ++i) {
      ++commit;
      const uint64_t page = (commit * 37) % kPages;
      words[page * 512] = commit;
      model[page] = commit;
      auto r = (*e)->Commit();
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      if (commit % kEvery != 0) continue;
      const uint64_t live = (*e)->store().stats().live_pages * kPageSize;
      const uint64_t bound = 2 * live + kLogFile + kSlack;
      // Since the last checkpoint: at most its commits (a page, its entries
      // and commit record each), a file's padding, and the output of a
      // compaction under way (at most the live image), which exists beside
      // its sources until it is durable.
      EXPECT_LE(LogFileBytes(path), bound + live + kEvery * 3 * kPageSize + (256 << 10)) << "commit " << commit;
      // And the compactor catches up: some moment finds the files within the
      // bound.
      const uint64_t bytes = pheaptest::LogFileBytesOnceAtMost(path, bound, std::chrono::seconds(20));
      ASSERT_LE(bytes, bound) << "commit " << commit << ", live " << live;
    }
    EXPECT_EQ((*e)->store().stats().live_pages, kPages);
    compactions += (*e)->store().stats().compactions;
  }
  // 1800 commits of a page wrote about 21 MiB of log; without compaction
  // it would all be there.
  EXPECT_GT(compactions, 10u);
  options_.compact = false;
  auto e = Engine::Open("small", options_);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  auto* words = static_cast<uint64_t*>((*e)->base());
  for (const auto& [page, value] : model) ASSERT_EQ(words[page * 512], value) << "page " << page;
  EXPECT_TRUE((*e)->store().Verify(nullptr).ok());
}

TEST_F(EngineCompaction, ConfigTurnsItOffAndTunesIt) {
  auto cfg = Config::Parse("compact=off;compact_ratio=4", Engine::ConfigKeys());
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  auto o = Engine::OptionsFromConfig(*cfg);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_FALSE(o->compact);
  EXPECT_DOUBLE_EQ(o->store.compact_live_ratio, 0.25);
  for (const char* bad : {"compact_ratio=1", "compact_ratio=x", "compact_ratio=", "compact=sometimes"}) {
    cfg = Config::Parse(bad, Engine::ConfigKeys());
    ASSERT_TRUE(cfg.ok()) << bad;
    o = Engine::OptionsFromConfig(*cfg);
    ASSERT_FALSE(o.ok()) << bad;
    EXPECT_NE(o.status().message().find("compact"), std::string::npos) << o.status().ToString();
  }
}

TEST_F(EngineCompaction, OffLeavesTheLogAlone) {
  options_.compact = false;
  auto e = Engine::Open("off", options_);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  auto* words = static_cast<uint64_t*>((*e)->base());
  for (uint64_t i = 1; i <= 200; ++i) {
    words[(i % 4) * 512] = i;
    ASSERT_TRUE((*e)->Commit().ok());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ((*e)->store().stats().compactions, 0u);
  EXPECT_TRUE((*e)->store().CompactionDue()) << "the run leaves it due";
}

// Runs `pheap compact NAME --dir DIR`; its exit code, and what it printed
// (stdout and stderr) in *out.
int PheapCompact(const std::string& dir, const std::string& name, std::string* out) {
  return pheaptest::RunCommand(g_pheap + " compact " + name + " --dir " + dir + " 2>&1", out);
}

TEST_F(EngineCompaction, PheapCompactShrinksAClosedHeapAndRefusesAnOpenOne) {
  if (g_pheap.empty()) GTEST_SKIP() << "give the pheap command's path as the first argument";
  options_.compact = false;
  std::map<uint64_t, uint64_t> model;
  {
    auto e = Engine::Open("tool", options_);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    auto* words = static_cast<uint64_t*>((*e)->base());
    for (uint64_t i = 1; i <= 300; ++i) {
      words[(i % 16) * 512] = i;
      model[i % 16] = i;
      ASSERT_TRUE((*e)->Commit().ok());
    }
  }
  const std::string path = dir_ + "/tool";
  const uint64_t before = LogFileBytes(path);
  ASSERT_GT(before, 4 * kLogFile);
  std::string out;
  ASSERT_EQ(PheapCompact(dir_, "tool", &out), 0) << out;
  EXPECT_NE(out.find("heap 'tool'"), std::string::npos) << out;
  const uint64_t after = LogFileBytes(path);
  EXPECT_LE(after, 2 * 16 * kPageSize + kSlack) << out;
  EXPECT_LT(after * 4, before) << out;

  auto e = Engine::Open("tool", options_);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  auto* words = static_cast<uint64_t*>((*e)->base());
  for (const auto& [page, value] : model) ASSERT_EQ(words[page * 512], value) << "page " << page;
  // Held by this process: refused, naming it.
  out.clear();
  EXPECT_EQ(PheapCompact(dir_, "tool", &out), 1) << out;
  EXPECT_NE(out.find("held by pid " + std::to_string(::getpid())), std::string::npos) << out;
  EXPECT_EQ(LogFileBytes(path), after + kPageSize) << "only this session's file is new";
  out.clear();
  EXPECT_EQ(PheapCompact(dir_, "nosuch", &out), 1) << out;
  EXPECT_NE(out.find("no heap store"), std::string::npos) << out;
}

}  // namespace
}  // namespace pheap

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc > 1) pheap::g_pheap = argv[1];
  return RUN_ALL_TESTS();
}
