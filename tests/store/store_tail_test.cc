// The newest log file losing durable epochs (deleted, or cut at a group
// boundary so that what is left reads as a shorter log) is refused with an
// error naming the file and the epochs lost, unless the open salvages; TAIL
// follows compactions and stores without it still open.
#include "store/log_file.h"
#include "store_test_util.h"

namespace pheap::testing {
namespace {

constexpr uint64_t kSeed = 21;

PageStoreOptions SmallFiles() {
  PageStoreOptions o = Options();
  o.log_file_bytes = 64 * 1024;
  return o;
}

// Persists epochs [from, to] in one session; the store's log end after each.
std::vector<uint64_t> PersistRange(PageStore& store, Epoch from, Epoch to) {
  std::vector<uint64_t> ends;
  for (Epoch e = from; e <= to; ++e) {
    EXPECT_TRUE(store.Persist(GenerateEpoch(kSeed, e).sealed).ok()) << "epoch " << e;
    ends.push_back(store.stats().bytes_on_disk);
  }
  return ends;
}

bool Has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Opens `name` expecting the loss of epochs (lost_from..lost_to] to be
// refused, then salvaged back to lost_from, then opened normally.
void ExpectLossReported(const std::string& dir, const std::string& name, const std::string& file, Epoch lost_from,
                        Epoch lost_to, const PageStoreOptions& options) {
  RecordingReporter rep;
  auto r = PageStore::Open(dir, name, options, &rep);
  ASSERT_FALSE(r.ok()) << "opened at epoch " << r.value()->image().epoch;
  EXPECT_EQ(r.status().code(), Status::Code::kCorruption);
  const std::string& msg = r.status().message();
  const std::string file_name = std::filesystem::path(file).filename().string();
  EXPECT_TRUE(Has(msg, "log file " + file_name + " held epoch " + std::to_string(lost_to))) << msg;
  EXPECT_TRUE(Has(msg, "the log ends at epoch " + std::to_string(lost_from))) << msg;
  const std::string lost = lost_to == lost_from + 1 ? "epoch " + std::to_string(lost_to) + " is lost"
                                                     : "epochs " + std::to_string(lost_from + 1) + " to " +
                                                           std::to_string(lost_to) + " are lost";
  EXPECT_TRUE(Has(msg, lost)) << msg;
  EXPECT_TRUE(Has(msg, "salvage")) << msg;
  ASSERT_EQ(rep.entries.size(), 1u);
  EXPECT_EQ(rep.entries[0].file, file);

  PageStoreOptions ro = options;
  ro.read_only = true;
  EXPECT_EQ(PageStore::Open(dir, name, ro).status().code(), Status::Code::kCorruption) << "read-only opens too";

  PageStoreOptions salvage = options;
  salvage.salvage = true;
  rep.entries.clear();
  {
    auto store = OpenOrDie(dir, name, salvage, &rep);
    ASSERT_TRUE(store);
    EXPECT_TRUE(MatchesModel(*store, ModelAt(kSeed, lost_from)));
    EXPECT_EQ(rep.entries.size(), 1u) << "salvage reports what it gives up";
  }
  // The salvaging writer moved TAIL back: later opens accept the log.
  auto store = OpenOrDie(dir, name, options);
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, ModelAt(kSeed, lost_from)));
  PersistRange(*store, lost_from + 1, lost_from + 2);
  store.reset();
  store = OpenOrDie(dir, name, options);
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, ModelAt(kSeed, lost_from + 2)));
}

TEST(StoreTail, NewestFileDeletedAfterRotationIsReported) {
  TempDir dir;
  constexpr Epoch kLast = 12;
  Epoch first_in_newest = 0;  // the first epoch of the file the last roll began
  {
    auto store = OpenOrDie(dir.path(), "gone", SmallFiles());
    ASSERT_TRUE(store);
    for (Epoch e = 1; e <= kLast; ++e) {
      const size_t files = LogFiles(store->path()).size();
      PersistRange(*store, e, e);
      if (e > 1 && LogFiles(store->path()).size() > files) first_in_newest = e;
    }
  }
  ASSERT_GT(first_in_newest, 0u) << "the log never rolled";
  const auto files = LogFiles(dir.path() + "/gone");
  ASSERT_GE(files.size(), 2u);
  std::filesystem::remove(files.back());
  ExpectLossReported(dir.path(), "gone", files.back(), first_in_newest - 1, kLast, SmallFiles());
}

TEST(StoreTail, NewestFileCutAtAGroupBoundaryIsReported) {
  TempDir dir;
  std::vector<uint64_t> ends;
  {
    auto store = OpenOrDie(dir.path(), "cut");
    ASSERT_TRUE(store);
    ends = PersistRange(*store, 1, 6);
  }
  const auto files = LogFiles(dir.path() + "/cut");
  ASSERT_EQ(files.size(), 1u);
  // After epoch 4's commit record: what is left is a whole, shorter log.
  std::filesystem::resize_file(files[0], ends[3]);
  ExpectLossReported(dir.path(), "cut", files[0], 4, 6, Options());
}

// The file a session begins at open is the newest: cut after its first
// epoch, the files before it cannot show the loss.
TEST(StoreTail, NewestSessionsFileCutAfterItsFirstEpochIsReported) {
  TempDir dir;
  uint64_t first_end = 0;
  for (Epoch from : {Epoch{1}, Epoch{4}}) {
    auto store = OpenOrDie(dir.path(), "session");
    ASSERT_TRUE(store);
    const uint64_t before = store->stats().bytes_on_disk;  // the new file holds its header
    first_end = PersistRange(*store, from, from + 2)[0] - before + logfmt::kBlockSize;
  }
  const auto files = LogFiles(dir.path() + "/session");
  ASSERT_EQ(files.size(), 2u);
  std::filesystem::resize_file(files[1], first_end);
  ExpectLossReported(dir.path(), "session", files[1], 4, 6, Options());
}

TEST(StoreTail, OnlyLogFileDeletedIsNotAnEmptyHeap) {
  TempDir dir;
  {
    auto store = OpenOrDie(dir.path(), "only");
    ASSERT_TRUE(store);
    PersistRange(*store, 1, 3);
  }
  const auto files = LogFiles(dir.path() + "/only");
  ASSERT_EQ(files.size(), 1u);
  std::filesystem::remove(files[0]);
  ExpectLossReported(dir.path(), "only", files[0], 0, 3, Options());
}

// A store written before TAIL existed opens as it did, and from then on the
// newest file is guarded.
TEST(StoreTail, StoreWithoutTailOpensAndGainsOne) {
  TempDir dir;
  const std::string heap = dir.path() + "/old";
  {
    auto store = OpenOrDie(dir.path(), "old");
    ASSERT_TRUE(store);
    PersistRange(*store, 1, 3);
  }
  ASSERT_TRUE(std::filesystem::remove(heap + "/" + kTailFileName));
  {
    auto store = OpenOrDie(dir.path(), "old");
    ASSERT_TRUE(store);
    EXPECT_TRUE(MatchesModel(*store, ModelAt(kSeed, 3)));
    EXPECT_TRUE(std::filesystem::exists(heap + "/" + kTailFileName));
    PersistRange(*store, 4, 5);
  }
  const auto files = LogFiles(heap);
  ASSERT_EQ(files.size(), 2u);
  std::filesystem::remove(files[1]);
  ExpectLossReported(dir.path(), "old", files[1], 3, 5, Options());
}

// A TAIL that is not whole (a crash tore it) checks nothing and is rewritten.
TEST(StoreTail, DamagedTailIsIgnored) {
  TempDir dir;
  const std::string heap = dir.path() + "/torn";
  {
    auto store = OpenOrDie(dir.path(), "torn");
    ASSERT_TRUE(store);
    PersistRange(*store, 1, 3);
  }
  std::filesystem::resize_file(heap + "/" + kTailFileName, 20);
  auto store = OpenOrDie(dir.path(), "torn");
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, ModelAt(kSeed, 3)));
  EXPECT_EQ(std::filesystem::file_size(heap + "/" + kTailFileName), sizeof(logfmt::TailRecord));
}

// A compaction file stands in for the files it replaced, the one TAIL names
// among them.
TEST(StoreTail, FollowsCompaction) {
  TempDir dir;
  const std::string heap = dir.path() + "/compact";
  Epoch e = 0;
  for (int session = 0; session < 3; ++session) {
    auto store = OpenOrDie(dir.path(), "compact", SmallFiles());
    ASSERT_TRUE(store);
    for (int i = 0; i < 12; ++i) {
      auto d = GenerateEpoch(kSeed, ++e, 8);  // 8 pages rewritten over and over: little stays live
      ASSERT_TRUE(store->Persist(d.sealed).ok());
    }
  }
  const auto before = LogFiles(heap);
  {
    auto store = OpenOrDie(dir.path(), "compact", SmallFiles());
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->Compact().ok());
    ASSERT_GT(store->stats().compactions, 0u);
  }
  // The newest file of the last session, which TAIL names, was compacted.
  const auto after = LogFiles(heap);
  ASSERT_FALSE(std::filesystem::exists(before.back())) << "compaction left " << before.back();
  Model m;
  for (Epoch i = 1; i <= e; ++i) m.Apply(GenerateEpoch(kSeed, i, 8).sealed);
  auto store = OpenOrDie(dir.path(), "compact", SmallFiles());
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, m));
}

}  // namespace
}  // namespace pheap::testing
