// Background compaction through the engine: a long run of one-page commits
// keeps the heap's files near twice its live image plus one log file, and
// what was committed survives every reopen.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <thread>

#include "base/config.h"
#include "heap/engine.h"

namespace pheap {
namespace {

constexpr uint64_t kLogFile = 256 << 10;
constexpr uint64_t kPages = 128;  // the live image: 512 KiB
// What the store may hold besides 2x the live image and one log file: the
// active file runs past log_file_size by up to its padding (256 KiB); files
// below the ratio with less than kCompactMinGain of garbage are left; and a
// compaction's file has a header, entry blocks, a sources list and a commit
// record.
constexpr uint64_t kSlack = (256 << 10) + PageStore::kCompactMinGain + 8 * kPageSize;

// The log files' sizes; one the compactor removes meanwhile counts 0.
uint64_t FileBytes(const std::string& path) {
  uint64_t n = 0;
  for (const auto& de : std::filesystem::directory_iterator(path)) {
    std::error_code ec;
    uint64_t size = de.path().extension() == ".pheap" ? std::filesystem::file_size(de.path(), ec) : 0;
    if (!ec) n += size;
  }
  return n;
}

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
  uint64_t commit = 0, checkpoints = 0, tight = 0, compactions = 0;
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
      if (commit % 25 != 0) continue;
      // At any instant the store may also hold one file sealed since the
      // compactor last caught up.
      const uint64_t live = (*e)->store().stats().live_pages * kPageSize;
      const uint64_t bytes = FileBytes(path);
      const uint64_t bound = 2 * live + kLogFile + kSlack;
      EXPECT_LE(bytes, bound + kLogFile + (256 << 10)) << "commit " << commit << ", live " << live;
      ++checkpoints;
      tight += bytes <= bound;
    }
    // Once the compactor has caught up, the bound holds without the file.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while ((*e)->store().CompactionDue() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a compaction under way publishes
    const uint64_t live = (*e)->store().stats().live_pages * kPageSize;
    EXPECT_EQ(live, kPages * kPageSize);
    EXPECT_LE(FileBytes(path), 2 * live + kLogFile + kSlack) << "session " << session;
    compactions += (*e)->store().stats().compactions;
  }
  // 1800 commits of a page wrote about 21 MiB of log; without compaction
  // it would all be there.
  EXPECT_GT(compactions, 10u);
  EXPECT_GT(tight * 2, checkpoints) << "the compactor is mostly caught up";
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

}  // namespace
}  // namespace pheap
