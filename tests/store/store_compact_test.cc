// Compaction: sealed log files shrink to their live pages, the image stays
// the same before and after reopening, and a crash part way leaves it whole.
#include <sys/stat.h>

#include <fstream>
#include <functional>
#include <thread>

#include "base/os.h"
#include "store/log_file.h"
#include "store_test_util.h"

namespace pheap::testing {
namespace {

constexpr uint64_t kSeed = 33;

PageStoreOptions SmallFiles() {
  PageStoreOptions o = Options();
  o.log_file_bytes = 64 * 1024;
  return o;
}

// Several sessions of epochs that overwrite the same few pages.
Model WriteOverwrites(const std::string& dir, const std::string& name, int sessions, Epoch per_session) {
  Model m;
  Epoch e = 0;
  for (int s = 0; s < sessions; ++s) {
    auto store = OpenOrDie(dir, name, SmallFiles());
    if (!store) return m;
    for (Epoch i = 0; i < per_session; ++i) {
      auto d = GenerateEpoch(kSeed, ++e, 16);  // 16 pages, rewritten over and over
      EXPECT_TRUE(store->Persist(d.sealed).ok());
      m.Apply(d.sealed);
    }
  }
  return m;
}

TEST(StoreCompact, ShrinksAndKeepsTheImage) {
  TempDir dir;
  Model m = WriteOverwrites(dir.path(), "c", 3, 40);
  auto store = OpenOrDie(dir.path(), "c", SmallFiles());
  ASSERT_TRUE(store);
  PageStoreStats before = store->stats();
  ASSERT_TRUE(MatchesModel(*store, m, 64));
  ASSERT_TRUE(store->Compact().ok());
  PageStoreStats after = store->stats();
  EXPECT_EQ(after.compactions, 1u);
  EXPECT_LT(after.bytes_on_disk * 4, before.bytes_on_disk) << before.bytes_on_disk << " -> " << after.bytes_on_disk;
  EXPECT_LT(after.log_files, before.log_files);
  EXPECT_EQ(after.live_pages, before.live_pages);
  EXPECT_EQ(after.log_files, LogFiles(store->path()).size()) << "sources are deleted";
  EXPECT_TRUE(MatchesModel(*store, m, 64));
  EXPECT_TRUE(store->Verify(nullptr).ok());
  // The store keeps working after compaction, and a second one compacts the
  // first compaction's output together with newer files.
  const Epoch resumed = m.epoch;
  for (Epoch e = resumed + 1; e <= resumed + 30; ++e) {
    auto d = GenerateEpoch(kSeed, e, 16);
    Status st = store->Persist(d.sealed);
    ASSERT_TRUE(st.ok()) << st.ToString();
    m.Apply(d.sealed);
  }
  store.reset();
  store = OpenOrDie(dir.path(), "c", SmallFiles());
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, m, 64));
  ASSERT_TRUE(store->Compact().ok());
  EXPECT_TRUE(MatchesModel(*store, m, 64));
  store.reset();
  store = OpenOrDie(dir.path(), "c", SmallFiles());
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, m, 64));
  EXPECT_TRUE(store->Verify(nullptr).ok());
}

// Epochs e in [first, last] of `models` read through ImageAt as they were.
::testing::AssertionResult Retained(const PageStore& store, const std::map<Epoch, Model>& models, Epoch first,
                                    Epoch last) {
  for (Epoch e = first; e <= last; ++e) {
    auto at = store.ImageAt(e);
    if (!at.ok()) return ::testing::AssertionFailure() << at.status().ToString();
    if (auto r = ImageMatchesModel(**at, models.at(e)); !r) return r;
  }
  return ::testing::AssertionSuccess();
}

// retain_epochs: compaction keeps every page version the retained epochs'
// images need, through a reopen and a second compaction, and an older
// epoch is refused naming the oldest retained one.
TEST(StoreCompact, KeepsTheVersionsOfRetainedEpochs) {
  TempDir dir;
  PageStoreOptions o = SmallFiles();
  o.retain_epochs = 8;
  Model m;
  std::map<Epoch, Model> models;
  auto persist = [&](PageStore& store, Epoch first, Epoch last) {
    for (Epoch e = first; e <= last; ++e) {
      auto d = GenerateEpoch(kSeed, e, 16);  // 16 pages rewritten over and over, some discarded
      ASSERT_TRUE(store.Persist(d.sealed).ok());
      m.Apply(d.sealed);
      models[e] = m;
    }
  };
  {
    auto store = OpenOrDie(dir.path(), "r", o);
    ASSERT_TRUE(store);
    persist(*store, 1, 120);
  }
  auto store = OpenOrDie(dir.path(), "r", o);
  ASSERT_TRUE(store);
  const PageStoreStats before = store->stats();
  ASSERT_TRUE(store->Compact().ok());
  const PageStoreStats after = store->stats();
  EXPECT_EQ(after.compactions, 1u);
  EXPECT_LT(after.bytes_on_disk * 2, before.bytes_on_disk) << before.bytes_on_disk << " -> " << after.bytes_on_disk;
  EXPECT_EQ(after.last_compaction.epoch, 113u) << "the compaction is the image of the oldest retained epoch";
  EXPECT_TRUE(Retained(*store, models, 113, 120));
  EXPECT_TRUE(MatchesModel(*store, m, 64));
  auto old = store->ImageAt(112);
  ASSERT_FALSE(old.ok());
  EXPECT_EQ(old.status().code(), Status::Code::kNotFound);
  EXPECT_NE(old.status().message().find("epoch 112 is not retained: the oldest retained epoch is 113"),
            std::string::npos)
      << old.status().ToString();
  // A second session: the first compaction's file is compacted again
  // together with newer files, at the new floor.
  persist(*store, 121, 200);
  ASSERT_TRUE(store->Compact().ok());
  EXPECT_EQ(store->stats().last_compaction.epoch, 193u);
  store.reset();
  store = OpenOrDie(dir.path(), "r", o);
  ASSERT_TRUE(store);
  EXPECT_TRUE(Retained(*store, models, 193, 200));
  EXPECT_TRUE(MatchesModel(*store, m, 64));
  EXPECT_TRUE(store->Verify(nullptr).ok());
}

// retain_ns: epochs committed within the window are all kept, so a
// compaction now finds little to drop; without it the same log compacts
// down to the durable epoch.
TEST(StoreCompact, KeepsTheEpochsOfTheRetainedTime) {
  TempDir dir;
  PageStoreOptions o = SmallFiles();
  o.retain_ns = uint64_t{3600} * 1000000000;
  Model m;
  std::map<Epoch, Model> models;
  {
    auto store = OpenOrDie(dir.path(), "t", o);
    ASSERT_TRUE(store);
    for (Epoch e = 1; e <= 60; ++e) {
      auto d = GenerateEpoch(kSeed, e, 16);
      ASSERT_TRUE(store->Persist(d.sealed).ok());
      m.Apply(d.sealed);
      models[e] = m;
    }
  }
  {
    auto store = OpenOrDie(dir.path(), "t", o);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->Compact().ok());
    EXPECT_TRUE(Retained(*store, models, 1, 60));
  }
  auto store = OpenOrDie(dir.path(), "t", SmallFiles());
  ASSERT_TRUE(store);
  EXPECT_TRUE(Retained(*store, models, 1, 60)) << "the retaining compaction dropped a version";
  ASSERT_TRUE(store->Compact().ok());
  EXPECT_FALSE(store->ImageAt(59).ok()) << "without retain the compaction keeps only the durable epoch";
  EXPECT_TRUE(MatchesModel(*store, m, 64));
}

TEST(StoreCompact, KeepsDiscardsThatHideOlderVersions) {
  TempDir dir;
  PageStoreOptions o = SmallFiles();
  o.log_file_bytes = 1;  // a new log file for every epoch
  o.compact_live_ratio = 0.3;
  Model m;
  {
    auto store = OpenOrDie(dir.path(), "trim", o);
    ASSERT_TRUE(store);
    // Epoch 1 fills pages 0..31 (this file stays live and is not compacted);
    // epoch 2 discards 0..3 and writes little; later epochs churn page 40.
    std::vector<Pgno> all;
    for (Pgno p = 0; p < 32; ++p) all.push_back(p);
    std::vector<EpochData> ds;
    ds.push_back(MakeEpoch(1, all, 64));
    ds.push_back(MakeEpoch(2, {40}, 64, {{0, 4}}));
    for (Epoch e = 3; e <= 6; ++e) ds.push_back(MakeEpoch(e, {40}, 64));
    for (auto& d : ds) {
      ASSERT_TRUE(store->Persist(d.sealed).ok());
      m.Apply(d.sealed);
    }
    ASSERT_TRUE(store->Compact().ok());
    EXPECT_EQ(store->stats().compactions, 1u);
    EXPECT_TRUE(MatchesModel(*store, m, 64));
  }
  auto store = OpenOrDie(dir.path(), "trim", o);
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, m, 64)) << "pages 0..3 must stay discarded after their trim record moved";
}

// A crash during compaction leaves the sources plus the compaction file,
// whole or cut short. Both states are rebuilt from a copy of the directory
// taken just before Compact() and the file it wrote.
TEST(StoreCompact, CrashDuringCompactionLeavesTheImageWhole) {
  TempDir dir, snapshot;
  Model m = WriteOverwrites(dir.path(), "crash", 2, 30);
  const std::string path = dir.path() + "/crash";
  std::string compacted;
  {
    auto store = OpenOrDie(dir.path(), "crash", SmallFiles());
    ASSERT_TRUE(store);
    std::filesystem::copy(path, snapshot.path(), std::filesystem::copy_options::recursive);
    std::vector<std::string> before = LogFiles(path);
    ASSERT_TRUE(store->Compact().ok());
    for (const auto& f : LogFiles(path))
      if (std::find(before.begin(), before.end(), f) == before.end()) compacted = f;
  }
  ASSERT_FALSE(compacted.empty());
  const std::string name = std::filesystem::path(compacted).filename().string();
  const uint64_t full = std::filesystem::file_size(compacted);
  for (uint64_t cut : {full - 4096, full / 2 / 4096 * 4096, uint64_t{4096}, full}) {
    SCOPED_TRACE("compaction file cut to " + std::to_string(cut) + " of " + std::to_string(full));
    TempDir crash;
    std::filesystem::copy(snapshot.path(), crash.path() + "/crash", std::filesystem::copy_options::recursive);
    std::filesystem::copy_file(compacted, crash.path() + "/crash/" + name);
    std::filesystem::resize_file(crash.path() + "/crash/" + name, cut);
    const size_t sources = LogFiles(crash.path() + "/crash").size() - 1;
    {
      PageStoreOptions ro = SmallFiles();
      ro.read_only = true;
      auto peek = OpenOrDie(crash.path(), "crash", ro);
      ASSERT_TRUE(peek);
      EXPECT_TRUE(MatchesModel(*peek, m, 64));
      EXPECT_EQ(LogFiles(crash.path() + "/crash").size(), sources + 1) << "a read-only open removes nothing";
    }
    auto store = OpenOrDie(crash.path(), "crash", SmallFiles());
    ASSERT_TRUE(store);
    EXPECT_TRUE(MatchesModel(*store, m, 64));
    EXPECT_TRUE(store->Verify(nullptr).ok());
    bool kept = std::filesystem::exists(crash.path() + "/crash/" + name);
    EXPECT_EQ(kept, cut == full) << "an unfinished compaction file is deleted, a finished one kept";
    if (cut == full) {
      EXPECT_LT(LogFiles(crash.path() + "/crash").size(), sources) << "its sources are deleted";
    }
    store.reset();
    store = OpenOrDie(crash.path(), "crash", SmallFiles());
    ASSERT_TRUE(store);
    EXPECT_TRUE(MatchesModel(*store, m, 64));
  }
}

// Runs `hook` once, inside the first fsync of a file longer than a header:
// Compact's sync of its new file, after it copied the live pages and before
// it publishes them.
class HookedOs : public Os {
 public:
  std::function<void()> hook;
  int fsync(int fd) override {
    struct stat st {};
    if (hook && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > static_cast<off_t>(kPageSize))
      std::exchange(hook, nullptr)();
    return Os::fsync(fd);
  }
};

uint64_t FileBytes(const std::string& path) {
  uint64_t n = 0;
  for (const auto& f : LogFiles(path)) n += std::filesystem::file_size(f);
  return n;
}

// Compact may run beside Persist: an epoch that rewrites or discards pages
// while they are being copied keeps its versions, in memory and on reopen.
TEST(StoreCompact, EpochsDuringCompactionKeepTheirVersions) {
  TempDir dir;
  Model m = WriteOverwrites(dir.path(), "race", 3, 40);
  auto store = OpenOrDie(dir.path(), "race", SmallFiles());
  ASSERT_TRUE(store);
  HookedOs hooked;
  SetOsForTesting(&hooked);
  // Rewrites every page the compaction copies, but 3 and 4, which it discards.
  std::vector<Pgno> pages;
  for (Pgno p = 0; p < 16; ++p)
    if (p != 3 && p != 4) pages.push_back(p);
  EpochData mid = MakeEpoch(m.epoch + 1, pages, 16, {{3, 2}});
  hooked.hook = [&] {
    EXPECT_TRUE(store->Persist(mid.sealed).ok());
    m.Apply(mid.sealed);
  };
  Status s = store->Compact();
  SetOsForTesting(nullptr);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(hooked.hook, nullptr) << "the epoch ran inside the compaction";
  EXPECT_EQ(store->stats().compactions, 1u);
  EXPECT_TRUE(MatchesModel(*store, m, 64));
  EXPECT_TRUE(store->Verify(nullptr).ok());
  store.reset();
  store = OpenOrDie(dir.path(), "race", SmallFiles());
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, m, 64));
}

// Epochs on one thread, compactions on another, as a heap runs them.
TEST(StoreCompact, ConcurrentCompactionsAndEpochs) {
  TempDir dir;
  PageStoreOptions o = SmallFiles();
  auto store = OpenOrDie(dir.path(), "both", o);
  ASSERT_TRUE(store);
  std::atomic<bool> done{false};
  std::thread compactor([&] {
    while (!done.load()) {
      if (Status s = store->Compact(); !s.ok()) {
        ADD_FAILURE() << s.ToString();
        return;
      }
      std::this_thread::yield();
    }
  });
  Model m;
  for (Epoch e = 1; e <= 400; ++e) {
    auto d = GenerateEpoch(kSeed, e, 16);
    ASSERT_TRUE(store->Persist(d.sealed).ok());
    m.Apply(d.sealed);
  }
  done = true;
  compactor.join();
  EXPECT_GT(store->stats().compactions, 0u);
  EXPECT_TRUE(MatchesModel(*store, m, 64));
  store.reset();
  store = OpenOrDie(dir.path(), "both", o);
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, m, 64));
  EXPECT_TRUE(store->Verify(nullptr).ok());
}

// A session gives back its padding when it closes, and leaves no file if it
// wrote no epoch: reopening a heap again and again does not grow it.
TEST(StoreCompact, SessionsLeaveOnlyTheirLog) {
  TempDir dir;
  Model m;
  const std::string path = dir.path() + "/open";
  for (int session = 0; session < 8; ++session) {
    auto store = OpenOrDie(dir.path(), "open", Options());
    ASSERT_TRUE(store);
    for (int i = 0; i < 3; ++i) {
      auto d = MakeEpoch(m.epoch + 1, {1}, 4);
      ASSERT_TRUE(store->Persist(d.sealed).ok());
      m.Apply(d.sealed);
    }
  }
  // Each session's file: a header and three epochs of a page, its entries
  // and its commit record.
  EXPECT_EQ(FileBytes(path), 8 * (1 + 3 * 3) * kPageSize);
  for (int session = 0; session < 4; ++session) ASSERT_TRUE(OpenOrDie(dir.path(), "open", Options()));
  EXPECT_EQ(LogFiles(path).size(), 8u) << "sessions without an epoch leave no file";
  auto store = OpenOrDie(dir.path(), "open", Options());
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, m, 4));
  EXPECT_TRUE(store->CompactionDue());
  ASSERT_TRUE(store->Compact().ok());
  EXPECT_FALSE(store->CompactionDue());
  EXPECT_EQ(LogFiles(path).size(), 2u) << "one compaction file and this session's";
  EXPECT_TRUE(MatchesModel(*store, m, 4));
}

// A new heap's only file records its region, epoch 0 or not.
TEST(StoreCompact, NewHeapKeepsItsOnlyFile) {
  TempDir dir;
  ASSERT_TRUE(OpenOrDie(dir.path(), "new", Options()));
  PageStoreOptions o = Options();
  o.create_if_missing = false;
  o.base = o.size = 0;
  auto store = OpenOrDie(dir.path(), "new", o);
  ASSERT_TRUE(store);
  EXPECT_EQ(store->image().base, kBase);
  EXPECT_EQ(store->image().size, kSize);
}

// After a salvage passed over damage in a file that stays (its intact part
// mostly live), the writer file the salvage began is what lets later opens
// accept the damage: compaction keeps it, however empty.
TEST(StoreCompact, KeepsTheFileThatSettlesDamage) {
  TempDir dir;
  Model m;
  std::vector<Pgno> dense;
  for (Pgno p = 0; p < 32; ++p) dense.push_back(p);
  std::vector<EpochData> ds;
  ds.push_back(MakeEpoch(1, dense, 64));
  ds.push_back(MakeEpoch(2, {40}, 64));
  ds.push_back(MakeEpoch(3, {41}, 64));
  {
    auto store = OpenOrDie(dir.path(), "s", Options());
    ASSERT_TRUE(store);
    for (auto& d : ds) ASSERT_TRUE(store->Persist(d.sealed).ok());
  }
  m.Apply(ds[0].sealed);
  // Epoch 2's entry block follows epoch 1's entry block, pages and commit.
  const std::string first = LogFiles(dir.path() + "/s").front();
  {
    std::fstream f(first, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp((1 + 1 + 32 + 1) * kPageSize + 30);
    f.put('\x5a');
  }
  PageStoreOptions salvage = Options();
  salvage.salvage = true;
  ASSERT_TRUE(OpenOrDie(dir.path(), "s", salvage));
  PageStoreOptions o = Options();
  o.log_file_bytes = 16 * 1024;
  {
    auto store = OpenOrDie(dir.path(), "s", o);
    ASSERT_TRUE(store);
    ASSERT_TRUE(MatchesModel(*store, m, 64));
    for (Epoch e = 2; e <= 20; ++e) {
      auto d = MakeEpoch(e, {50}, 64);
      ASSERT_TRUE(store->Persist(d.sealed).ok());
      m.Apply(d.sealed);
    }
    ASSERT_TRUE(store->Compact().ok());
    EXPECT_EQ(store->stats().compactions, 1u);
  }
  auto store = OpenOrDie(dir.path(), "s", o);
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, m, 64));
}

}  // namespace
}  // namespace pheap::testing
