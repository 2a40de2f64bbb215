// Epochs in, the same image out: overwrites, discards, hwm, reopen, rolling
// log files, and readers running alongside Persist.
#include <unistd.h>

#include <atomic>
#include <thread>

#include "store_test_util.h"

namespace pheap::testing {
namespace {

TEST(StoreRoundTrip, NewStoreRecordsRegion) {
  TempDir dir;
  auto store = OpenOrDie(dir.path(), "fresh");
  ASSERT_TRUE(store);
  ImageInfo im = store->image();
  EXPECT_EQ(im.epoch, 0u);
  EXPECT_EQ(im.base, kBase);
  EXPECT_EQ(im.size, kSize);
  EXPECT_EQ(im.hwm, 0u);
  EXPECT_EQ(store->path(), dir.path() + "/fresh");
  EXPECT_TRUE(MatchesModel(*store, Model{}));
  store.reset();
  // Reopened with other region options before any epoch is durable: nothing
  // depends on the first region yet, so the new one is taken (a failed
  // first open never pins a region the heap cannot use).
  PageStoreOptions o = Options();
  o.base = kBase * 2;
  o.size = kSize * 2;
  store = OpenOrDie(dir.path(), "fresh", o);
  ASSERT_TRUE(store);
  EXPECT_EQ(store->image().base, kBase * 2);
  EXPECT_EQ(store->image().size, kSize * 2);
  store.reset();
  // Once an epoch is durable, the store's own region wins.
  store = OpenOrDie(dir.path(), "fresh");
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Persist(MakeEpoch(1, {0}, 1).sealed).ok());
  store.reset();
  store = OpenOrDie(dir.path(), "fresh", o);
  ASSERT_TRUE(store);
  EXPECT_EQ(store->image().base, kBase);
  EXPECT_EQ(store->image().size, kSize);
}

// A store opened by a relative path keeps working after the process
// changes its working directory (as git -C does under the preload
// library): the first epoch syncs the directories it created, by name.
TEST(StoreRoundTrip, RelativeDirOutlivesAChangeOfWorkingDirectory) {
  TempDir dir;
  char here[4096];
  ASSERT_NE(getcwd(here, sizeof(here)), nullptr);
  ASSERT_EQ(chdir(dir.path().c_str()), 0);
  auto store = OpenOrDie("stores/rel", "moved");
  ASSERT_EQ(chdir("/"), 0);
  ASSERT_TRUE(store);
  EXPECT_EQ(store->path(), dir.path() + "/stores/rel/moved");
  auto e = MakeEpoch(1, {0, 7}, 8);
  Status s = store->Persist(e.sealed);
  EXPECT_TRUE(s.ok()) << s.ToString();
  store.reset();
  ASSERT_EQ(chdir(here), 0);
  Model m;
  m.Apply(e.sealed);
  store = OpenOrDie(dir.path() + "/stores/rel", "moved");
  ASSERT_TRUE(store);
  EXPECT_EQ(store->image().epoch, 1u);
  EXPECT_TRUE(MatchesModel(*store, m));
}

TEST(StoreRoundTrip, EpochsOverwritesDiscardsAndHwm) {
  TempDir dir;
  auto store = OpenOrDie(dir.path(), "rt");
  ASSERT_TRUE(store);
  Model m;
  std::vector<EpochData> epochs;
  epochs.push_back(MakeEpoch(1, {0, 1, 2, 3, 10, 11, 200}, 201));
  epochs.push_back(MakeEpoch(2, {1, 3, 12}, 201));                // overwrites
  epochs.push_back(MakeEpoch(3, {4}, 201, {{10, 3}, {199, 2}}));  // discards 10..12 and 200
  epochs.push_back(MakeEpoch(4, {11}, 201));                      // back after a discard
  epochs.push_back(MakeEpoch(5, {}, 201, {{0, 1}}));              // discard only
  epochs.push_back(MakeEpoch(6, {5, 6, 7, 8, 9}, 230));           // hwm grows
  for (auto& e : epochs) {
    ASSERT_TRUE(store->Persist(e.sealed).ok());
    m.Apply(e.sealed);
    ASSERT_TRUE(MatchesModel(*store, m)) << "after epoch " << e.sealed.image.epoch;
  }
  PageStoreStats st = store->stats();
  EXPECT_EQ(st.epoch, 6u);
  EXPECT_EQ(st.live_pages, m.written.size());
  store.reset();
  store = OpenOrDie(dir.path(), "rt");
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, m));
  EXPECT_EQ(store->stats().live_pages, m.written.size());
  EXPECT_EQ(store->image().term, 1u);
}

// Each page's epoch is the one that last wrote or discarded it, through a
// reopen (which rebuilds the index from the log); pages never stored read 0.
TEST(StoreRoundTrip, PageEpochsNameTheLastWriteOrDiscard) {
  TempDir dir;
  auto store = OpenOrDie(dir.path(), "pe");
  ASSERT_TRUE(store);
  std::vector<EpochData> epochs;
  epochs.push_back(MakeEpoch(1, {0, 1, 2, 10, 11}, 20));
  epochs.push_back(MakeEpoch(2, {1}, 20));
  epochs.push_back(MakeEpoch(3, {}, 20, {{10, 2}}));
  epochs.push_back(MakeEpoch(4, {11}, 20));
  for (auto& e : epochs) ASSERT_TRUE(store->Persist(e.sealed).ok());
  const std::vector<Epoch> want = {1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 3, 4, 0};
  EXPECT_EQ(store->PageEpochs(0, want.size()), want);
  store.reset();
  store = OpenOrDie(dir.path(), "pe");
  ASSERT_TRUE(store);
  EXPECT_EQ(store->PageEpochs(0, want.size()), want);
  EXPECT_EQ(store->PageEpochs(11, 2), (std::vector<Epoch>{4, 0}));
  EXPECT_EQ(store->PageEpochs(kRegionPages + 5, 2), (std::vector<Epoch>{0, 0}));
}

TEST(StoreRoundTrip, RejectsOutOfSequenceAndBadEpochs) {
  TempDir dir;
  auto store = OpenOrDie(dir.path(), "seq");
  ASSERT_TRUE(store);
  auto e2 = MakeEpoch(2, {1}, 8);
  Status s = store->Persist(e2.sealed);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("persist epoch 1 next"), std::string::npos) << s.ToString();
  auto above_hwm = MakeEpoch(1, {9}, 8);
  EXPECT_EQ(store->Persist(above_hwm.sealed).code(), Status::Code::kInvalidArgument);
  auto unsorted = MakeEpoch(1, {3, 2}, 8);
  EXPECT_EQ(store->Persist(unsorted.sealed).code(), Status::Code::kInvalidArgument);
  auto e1 = MakeEpoch(1, {1}, 8, {}, /*term=*/5);
  ASSERT_TRUE(store->Persist(e1.sealed).ok());
  auto old_term = MakeEpoch(2, {1}, 8, {}, /*term=*/4);
  EXPECT_EQ(store->Persist(old_term.sealed).code(), Status::Code::kSuperseded);
  EXPECT_EQ(store->image().epoch, 1u);
}

TEST(StoreRoundTrip, ReadOnlyOpenSeesImageAndRefusesWrites) {
  TempDir dir;
  Model m;
  {
    auto store = OpenOrDie(dir.path(), "ro");
    ASSERT_TRUE(store);
    for (Epoch e = 1; e <= 5; ++e) {
      auto d = GenerateEpoch(7, e);
      ASSERT_TRUE(store->Persist(d.sealed).ok());
      m.Apply(d.sealed);
    }
    size_t files = LogFiles(store->path()).size();
    PageStoreOptions ro = Options();
    ro.read_only = true;
    auto reader = OpenOrDie(dir.path(), "ro", ro);  // alongside the writer: no lock taken
    ASSERT_TRUE(reader);
    EXPECT_TRUE(MatchesModel(*reader, m));
    EXPECT_EQ(LogFiles(store->path()).size(), files) << "a read-only open must not add a log file";
    auto d = GenerateEpoch(7, 6);
    EXPECT_EQ(reader->Persist(d.sealed).code(), Status::Code::kInvalidArgument);
    EXPECT_EQ(reader->Compact().code(), Status::Code::kInvalidArgument);
  }
  PageStoreOptions missing = Options();
  missing.read_only = true;
  EXPECT_EQ(PageStore::Open(dir.path(), "absent", missing).status().code(), Status::Code::kNotFound);
  missing.read_only = false;
  missing.create_if_missing = false;
  EXPECT_EQ(PageStore::Open(dir.path(), "absent", missing).status().code(), Status::Code::kNotFound);
}

TEST(StoreRoundTrip, RollsLogFilesAndEverySessionStartsOne) {
  TempDir dir;
  PageStoreOptions o = Options();
  o.log_file_bytes = 64 * 1024;
  Model m;
  const uint64_t seed = 11;
  Epoch e = 0;
  for (int session = 0; session < 3; ++session) {
    auto store = OpenOrDie(dir.path(), "roll", o);
    ASSERT_TRUE(store);
    ASSERT_TRUE(MatchesModel(*store, m));
    size_t before = LogFiles(store->path()).size();
    for (int i = 0; i < 20; ++i) {
      auto d = GenerateEpoch(seed, ++e);
      ASSERT_TRUE(store->Persist(d.sealed).ok());
      m.Apply(d.sealed);
    }
    EXPECT_GT(LogFiles(store->path()).size(), before + 1) << "20 epochs should pass 64 KiB more than once";
    EXPECT_EQ(store->stats().log_files, LogFiles(store->path()).size());
  }
  auto store = OpenOrDie(dir.path(), "roll", o);
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, m));
}

TEST(StoreRoundTrip, ReadersRunAlongsidePersist) {
  TempDir dir;
  auto store = OpenOrDie(dir.path(), "mt");
  ASSERT_TRUE(store);
  // Every page of epoch e holds FillPage(pgno, e); all 32 pages are written
  // every epoch, so any page read back must be some epoch's version of it.
  std::vector<Pgno> all;
  for (Pgno p = 0; p < 32; ++p) all.push_back(p);
  auto first = MakeEpoch(1, all, 32);
  ASSERT_TRUE(store->Persist(first.sealed).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      std::unique_ptr<uint8_t, decltype(&std::free)> buf(
          static_cast<uint8_t*>(std::aligned_alloc(kPageSize, 32 * kPageSize)), &std::free);
      std::vector<uint8_t> want(kPageSize);
      while (!stop.load()) {
        uint64_t present = 0;
        if (!store->ReadRun(0, 32, buf.get(), &present).ok() || present != 0xffffffffu) {
          ++bad;
          continue;
        }
        Pgno p = static_cast<Pgno>(t * 7 % 32);
        bool found = false;
        for (Epoch e = 1; e <= 40 && !found; ++e) {
          FillPage(want.data(), p, e);
          found = std::memcmp(buf.get() + p * kPageSize, want.data(), kPageSize) == 0;
        }
        if (!found) ++bad;
      }
    });
  }
  for (Epoch e = 2; e <= 40; ++e) {
    auto d = MakeEpoch(e, all, 32);
    if (!store->Persist(d.sealed).ok()) {
      ADD_FAILURE() << "epoch " << e;
      break;
    }
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
}  // namespace pheap::testing
