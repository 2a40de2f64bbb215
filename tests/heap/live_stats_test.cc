// The live statistics file (heap/live_stats.h): a reader mapping it apart
// from the writer never sees a torn snapshot, and files that are not one
// are refused.
#include "heap/live_stats.h"

#include "heap/engine.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/support/test_util.h"

namespace pheap {
namespace {

class LiveStatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pheap-live-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/" + kLiveFileName;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_, path_;
};

// Every word of snapshot i is i, every string byte is i's low byte (never
// 0): a snapshot mixing two writes shows it.
LiveStats Filled(uint64_t i) {
  LiveStats s;
  static_assert(sizeof(LiveStats) % 8 == 0);
  auto* w = reinterpret_cast<uint64_t*>(&s);
  for (size_t k = 0; k < sizeof(s) / 8; ++k) w[k] = i;
  return s;
}

bool Uniform(const LiveStats& s, uint64_t* value) {
  // Read() ends every string field with a NUL: skip those bytes.
  LiveStats copy = s;
  copy.heap[sizeof(copy.heap) - 1] = copy.exe[sizeof(copy.exe) - 1] = copy.tracking[sizeof(copy.tracking) - 1] = 0;
  for (auto& r : copy.replica) r.endpoint[sizeof(r.endpoint) - 1] = 0;
  const auto* w = reinterpret_cast<const uint64_t*>(&s);
  const uint64_t v = w[0];
  LiveStats want = Filled(v);
  want.heap[sizeof(want.heap) - 1] = want.exe[sizeof(want.exe) - 1] = want.tracking[sizeof(want.tracking) - 1] = 0;
  for (auto& r : want.replica) r.endpoint[sizeof(r.endpoint) - 1] = 0;
  want.replica_count = std::min<uint64_t>(v, kLiveReplicas);
  *value = v;
  return std::memcmp(&copy, &want, sizeof(want)) == 0;
}

TEST_F(LiveStatsTest, AReaderNeverSeesATornSnapshot) {
  auto writer = LiveStatsFile::Create(path_);
  ASSERT_TRUE(writer.ok()) << writer.status().ToString();
  auto reader = LiveStatsFile::Open(path_);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_EQ((*reader)->Read().status().code(), Status::Code::kNotFound);

  (*writer)->Publish(Filled(1));
  std::atomic<bool> done{false};
  std::thread w([&] {
    for (uint64_t i = 2; i < 200000; ++i) (*writer)->Publish(Filled(i));
    done = true;
  });
  uint64_t reads = 0, busy = 0, last = 0, reads_while_writing = 0;
  while (!done || reads < 1000) {
    const bool writing = !done;
    auto s = (*reader)->Read();
    if (!s.ok()) {
      ASSERT_EQ(s.status().code(), Status::Code::kBusy) << s.status().ToString();
      ++busy;
      continue;
    }
    uint64_t v = 0;
    ASSERT_TRUE(Uniform(*s, &v)) << "a torn snapshot after " << reads << " reads";
    ASSERT_GE(v, last) << "snapshots go back";
    last = v;
    ++reads;
    reads_while_writing += writing;
  }
  w.join();
  auto s = (*reader)->Read();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->pid, 199999u);
  // Not starved by a writer that publishes without pause (a real one
  // publishes every 250 ms). How often a read finds it mid-write depends on
  // their relative speed (TSan slows the reader's many loads), so only
  // whether some reads got through while it wrote is asserted.
  EXPECT_GT(reads_while_writing, 0u) << busy << " reads found a write in progress";
}

TEST_F(LiveStatsTest, RefusesWhatIsNotALiveStatisticsFile) {
  EXPECT_EQ(LiveStatsFile::Open(path_).status().code(), Status::Code::kNotFound);
  { std::ofstream(path_) << "short"; }
  EXPECT_EQ(LiveStatsFile::Open(path_).status().code(), Status::Code::kCorruption);
  { std::ofstream(path_) << std::string(4096, 'x'); }
  auto other = LiveStatsFile::Open(path_);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ((*other)->Read().status().code(), Status::Code::kCorruption);
  // A writer takes such a file over.
  auto writer = LiveStatsFile::Create(path_);
  ASSERT_TRUE(writer.ok());
  LiveStats st{};
  st.pid = 42;
  CopyLiveString(st.heap, sizeof(st.heap), std::string(100, 'h'));
  (*writer)->Publish(st);
  auto read = (*other)->Read();
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->pid, 42u);
  EXPECT_EQ(std::string(read->heap), std::string(sizeof(st.heap) - 1, 'h'));
}

// Snapshots written before dirty_pages, or the eviction fields, were
// appended (their size word says so) still read, with those unknown.
TEST_F(LiveStatsTest, ASnapshotWithoutTheNewestFieldsReadsThemAsUnknown) {
  auto writer = LiveStatsFile::Create(path_);
  ASSERT_TRUE(writer.ok()) << writer.status().ToString();
  LiveStats st{};
  st.pid = 7;
  st.dirty_pages = 5;
  st.memory_max = 1 << 20;
  st.resident_pages = 100;
  st.evictions = 3;
  st.refetches = 2;
  (*writer)->Publish(st);
  auto read_as = [&](uint32_t bytes) -> Result<LiveStats> {
    {
      std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(12);  // the size half of the version word
      f.write(reinterpret_cast<const char*>(&bytes), sizeof(bytes));
    }
    auto reader = LiveStatsFile::Open(path_);
    if (!reader.ok()) return reader.status();
    return (*reader)->Read();
  };
  auto read = read_as(sizeof(LiveStats));
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->evictions, 3u);
  EXPECT_EQ(read->refetches, 2u);
  read = read_as(offsetof(LiveStats, memory_max));
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->dirty_pages, 5u);
  for (uint64_t v : {read->memory_max, read->resident_pages, read->evictions, read->refetches})
    EXPECT_EQ(v, kLiveUnknown);
  read = read_as(offsetof(LiveStats, dirty_pages));
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->pid, 7u);
  EXPECT_EQ(read->dirty_pages, kLiveUnknown);
  EXPECT_EQ(read->evictions, kLiveUnknown);
}

// An open heap's snapshot counts the pages written since its last commit
// (in a tracking mode that can count them), and a commit takes them.
TEST_F(LiveStatsTest, CountsThePagesWrittenSinceTheLastCommit) {
  EngineOptions o;
  o.dir = dir_;
  o.size = uint64_t{64} << 20;
  auto e = Engine::Open("dirty", o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  ASSERT_TRUE((*e)->Commit().ok());
  auto reader = LiveStatsFile::Open(dir_ + "/dirty/" + kLiveFileName);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  auto latest = [&]() -> uint64_t {
    auto r = (*reader)->Read();
    return r.ok() ? r->dirty_pages : kLiveUnknown - 1;
  };
  for (int i = 0; i < 100 && latest() == kLiveUnknown - 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (latest() == kLiveUnknown) GTEST_SKIP() << "this tracking mode cannot count written pages without faults";
  auto* p = static_cast<char*>((*e)->base()) + (uint64_t{8} << 20);
  for (int i = 0; i < 40; ++i) p[i * 4096] = 1;
  uint64_t seen = 0;
  for (int i = 0; i < 200 && (seen = latest()) < 40; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_GE(seen, 40u) << "the 40 pages written did not show";
  ASSERT_TRUE((*e)->Commit().ok());
  for (int i = 0; i < 200 && (seen = latest()) >= 40; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_LT(seen, 40u) << "the commit took them";
}

// A heap eight times its budget reports the budget, pages evicted and
// refetched, and a resident count held near the budget.
TEST_F(LiveStatsTest, ReportsEvictionsUnderAMemoryBudget) {
  PHEAP_SKIP_UNDER_TSAN(
      "it defers the safepoint signal of a thread that waits in a page fault for room, so an eviction pause never "
      "holds it");
  constexpr uint64_t kBudget = uint64_t{2} << 20, kPages = 4096;
  EngineOptions o;
  o.dir = dir_;
  o.size = uint64_t{64} << 20;
  o.pager.memory_max = kBudget;
  auto e = Engine::Open("budget", o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  if ((*e)->pager().stats().memory_max == 0)
    GTEST_SKIP() << TrackingModeName((*e)->mode()) << " takes no missing faults: nothing is evicted";
  auto reader = LiveStatsFile::Open(dir_ + "/budget/" + kLiveFileName);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  auto* p = static_cast<uint8_t*>((*e)->base());
  for (uint64_t i = 0; i < kPages; ++i) {
    p[i * 4096] = static_cast<uint8_t>(i + 1);
    if (i % 128 == 127) {
      ASSERT_TRUE((*e)->Commit().ok());
    }
  }
  auto wait_for = [&](auto done) {
    Result<LiveStats> r = Status::NotFound("no snapshot read");
    for (int i = 0; i < 500; ++i) {
      r = (*reader)->Read();
      if (r.ok() && done(*r)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return r;
  };
  auto r = wait_for([&](const LiveStats& s) { return s.evictions > 0 && s.resident_pages <= kBudget / 4096; });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->memory_max, kBudget);
  EXPECT_GT(r->evictions, kPages / 2);
  EXPECT_LE(r->resident_pages, kBudget / 4096) << "evictions " << r->evictions;
  for (uint64_t i = 0; i < kPages; ++i) ASSERT_EQ(p[i * 4096], static_cast<uint8_t>(i + 1)) << i;
  r = wait_for([&](const LiveStats& s) { return s.refetches > 0; });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GT(r->refetches, 0u);
  EXPECT_LE(r->refetches, r->evictions);
}

}  // namespace
}  // namespace pheap
