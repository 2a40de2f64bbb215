// The store's history (store_history.cc): the retained epochs and their
// commit facts, what a range of them changed, the image as of an earlier
// epoch, what compaction leaves of them, and stores of format version 1.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <string_view>
#include <thread>
#include <utility>

#include "base/os.h"
#include "store/log_file.h"
#include "store_test_util.h"

namespace pheap::testing {
namespace {

constexpr uint64_t kSeed = 71;

// Persists GenerateEpoch(kSeed, e) for e in [first, last]; the pause of
// epoch e is e microseconds, Write then Sync for even epochs.
Model PersistEpochs(PageStore& store, Epoch first, Epoch last, Model m = {}) {
  for (Epoch e = first; e <= last; ++e) {
    EpochData d = GenerateEpoch(kSeed, e);
    const uint64_t pause = e * 1000;
    Status s;
    if (e % 2 == 0) {
      s = store.Write(d.sealed);
      if (s.ok()) s = store.Sync(pause);
    } else {
      d.sealed.pause_ns = pause;
      s = store.Persist(d.sealed);
    }
    EXPECT_TRUE(s.ok()) << s.ToString();
    m.Apply(d.sealed);
  }
  return m;
}

TEST(StoreHistory, EpochsRecordTimePauseAndSize) {
  TempDir dir;
  const uint64_t before = WallClockNs();
  auto store = OpenOrDie(dir.path(), "h");
  ASSERT_TRUE(store);
  PersistEpochs(*store, 1, 6);
  auto epochs = store->Epochs();
  ASSERT_TRUE(epochs.ok()) << epochs.status().ToString();
  ASSERT_EQ(epochs->size(), 6u);
  for (size_t i = 0; i < epochs->size(); ++i) {
    const EpochRecord& r = (*epochs)[i];
    const EpochData d = GenerateEpoch(kSeed, i + 1);
    EXPECT_EQ(r.epoch, i + 1);
    EXPECT_EQ(r.term, 1u);
    EXPECT_EQ(r.pause_ns, (i + 1) * 1000) << "epoch " << r.epoch;
    EXPECT_GE(r.time_ns, before);
    EXPECT_LE(r.time_ns, WallClockNs());
    EXPECT_EQ(r.pages, d.sealed.pages.size());
    EXPECT_GE(r.bytes, (r.pages + 2) * kPageSize);  // entries, data, commit record
  }
  // The same from a read-only store beside the writer, and after a reopen.
  PageStoreOptions ro = Options();
  ro.read_only = true;
  auto reader = OpenOrDie(dir.path(), "h", ro);
  ASSERT_TRUE(reader);
  auto seen = reader->Epochs();
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen->size(), 6u);
  // Epochs the writer makes after the reader's open are not seen by it.
  PersistEpochs(*store, 7, 8);
  seen = reader->Epochs();
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen->size(), 6u);
  store.reset();
  store = OpenOrDie(dir.path(), "h");
  ASSERT_TRUE(store);
  // Durable as written: an even epoch's pause, which Sync wrote into its
  // commit record again, as well as the others'.
  auto reopened = store->Epochs();
  ASSERT_TRUE(reopened.ok());
  ASSERT_EQ(reopened->size(), 8u);
  for (const EpochRecord& r : *reopened) EXPECT_EQ(r.pause_ns, r.epoch * 1000) << "epoch " << r.epoch;
}

TEST(StoreHistory, ChangesListTheEpochsPagesAndRefuseOthers) {
  TempDir dir;
  auto store = OpenOrDie(dir.path(), "h");
  ASSERT_TRUE(store);
  PersistEpochs(*store, 1, 10);
  auto c = store->Changes(3, 7);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  std::set<Pgno> want;
  std::set<Pgno> discarded;
  for (Epoch e = 4; e <= 7; ++e) {
    const EpochData d = GenerateEpoch(kSeed, e);
    want.insert(d.sealed.pages.begin(), d.sealed.pages.end());
    for (const pheap::Run& r : d.sealed.discarded)
      for (Pgno p = r.first; p < r.end(); ++p) discarded.insert(p);
  }
  EXPECT_EQ(c->pages, std::vector<Pgno>(want.begin(), want.end()));
  std::set<Pgno> got_discarded;
  for (const pheap::Run& r : c->discarded)
    for (Pgno p = r.first; p < r.end(); ++p) got_discarded.insert(p);
  EXPECT_EQ(got_discarded, discarded);
  EXPECT_TRUE(store->Changes(5, 5)->pages.empty());

  for (auto [from, to] : {std::pair<Epoch, Epoch>{0, 4}, {4, 11}, {6, 2}}) {
    auto bad = store->Changes(from, to);
    ASSERT_FALSE(bad.ok()) << from << ".." << to;
    EXPECT_EQ(bad.status().code(), Status::Code::kInvalidArgument);
    EXPECT_NE(bad.status().message().find("the log holds the records of epochs 1-10"), std::string::npos)
        << bad.status().ToString();
  }
}

TEST(StoreHistory, ImageAtReadsEarlierEpochsUntilTheNewestCompaction) {
  TempDir dir;
  PageStoreOptions o = Options();
  o.log_file_bytes = 64 * 1024;  // several sealed files
  Model m;
  std::map<Epoch, Model> models;
  {
    auto store = OpenOrDie(dir.path(), "h", o);
    ASSERT_TRUE(store);
    for (Epoch e = 1; e <= 40; ++e) {
      m = PersistEpochs(*store, e, e, m);
      models[e] = m;
    }
    for (Epoch e : {Epoch{1}, Epoch{17}, Epoch{40}}) {
      auto at = store->ImageAt(e);
      ASSERT_TRUE(at.ok()) << at.status().ToString();
      EXPECT_EQ((*at)->image().epoch, e);
      EXPECT_TRUE(ImageMatchesModel(**at, models[e]));
    }
  }
  // Compaction: the replaced files' epochs leave the history, the image
  // before its epoch cannot be read, and the store says when it ran.
  auto store = OpenOrDie(dir.path(), "h", o);
  ASSERT_TRUE(store);
  const uint64_t before = WallClockNs();
  ASSERT_TRUE(store->Compact().ok());
  const PageStoreStats st = store->stats();
  ASSERT_NE(st.last_compaction.file, 0u);
  EXPECT_EQ(st.last_compaction.epoch, 40u);
  EXPECT_GE(st.last_compaction.time_ns, before);
  EXPECT_GT(st.last_compaction.reclaimed_bytes, 0u);
  EXPECT_GT(st.last_compaction.replaced_files, 0u);
  auto epochs = store->Epochs();
  ASSERT_TRUE(epochs.ok());
  EXPECT_LT(epochs->size(), 40u);
  auto old = store->ImageAt(10);
  ASSERT_FALSE(old.ok());
  EXPECT_NE(old.status().message().find("epoch 10 is not retained: the oldest retained epoch is 40 and the newest 40"),
            std::string::npos)
      << old.status().ToString();
  auto now = store->ImageAt(40);
  ASSERT_TRUE(now.ok()) << now.status().ToString();
  store.reset();
  // The last compaction is known from the log after a reopen too.
  PageStoreOptions ro = Options();
  ro.read_only = true;
  store = OpenOrDie(dir.path(), "h", ro);
  ASSERT_TRUE(store);
  EXPECT_EQ(store->stats().last_compaction.file, st.last_compaction.file);
  EXPECT_EQ(store->stats().last_compaction.reclaimed_bytes, st.last_compaction.reclaimed_bytes);
}

// Runs `during` once, inside the next creation of a log file (the open of
// its .tmp name): for a compaction, after it has begun and before it reads
// which pages are live.
class CreateHookOs : public Os {
 public:
  std::function<void()> during;
  int open(const char* path, int flags, mode_t mode) override {
    if (during && (flags & O_CREAT) != 0 && std::string_view(path).ends_with(".tmp")) std::exchange(during, nullptr)();
    return Os::open(path, flags, mode);
  }
};

// A commit that lands while a compaction starts moves pages out of its
// sources before it copies them: every epoch whose image the store then
// offers must still read as it was, and the image of the compaction's
// epoch must hold the pages it replaced.
TEST(StoreHistory, ImageAtIsExactWhenACommitLandsDuringACompaction) {
  TempDir dir;
  PageStoreOptions o = Options();
  o.log_file_bytes = 64 * 1024;  // several sealed files to compact
  std::map<Epoch, Model> models;
  auto store = OpenOrDie(dir.path(), "h", o);
  ASSERT_TRUE(store);
  Model m;
  for (Epoch e = 1; e <= 30; ++e) {
    m = PersistEpochs(*store, e, e, m);
    models[e] = m;
  }
  // Epoch 31 rewrites every page: the sources hold no live page after it.
  std::vector<Pgno> all(64);
  for (Pgno p = 0; p < 64; ++p) all[p] = p;
  EpochData d31 = MakeEpoch(31, all, 64);
  CreateHookOs hook;
  hook.during = [&] { ASSERT_TRUE(store->Persist(d31.sealed).ok()); };
  SetOsForTesting(&hook);
  Status compacted = store->Compact();
  SetOsForTesting(nullptr);
  ASSERT_TRUE(compacted.ok()) << compacted.ToString();
  ASSERT_EQ(hook.during, nullptr) << "the compaction created no file";
  m.Apply(d31.sealed);
  models[31] = m;
  ASSERT_GT(store->stats().last_compaction.file, 0u);

  // The same from the store that compacted and from a reopen of it.
  auto check = [&](PageStore& s) {
    for (Epoch e = 1; e <= 31; ++e) {
      auto at = s.ImageAt(e);
      if (!at.ok()) {
        EXPECT_EQ(at.status().code(), Status::Code::kNotFound) << at.status().ToString();
        EXPECT_LT(e, 31u) << "the durable image is always readable";
        continue;
      }
      EXPECT_TRUE(ImageMatchesModel(**at, models[e])) << "ImageAt(" << e << ")";
    }
  };
  check(*store);
  store.reset();
  PageStoreOptions ro = o;
  ro.read_only = true;
  auto reopened = OpenOrDie(dir.path(), "h", ro);
  ASSERT_TRUE(reopened);
  EXPECT_TRUE(MatchesModel(*reopened, m, 64));
  check(*reopened);
}

// One read of the history beside a writer: the epochs it lists as the log
// held them durable at one instant, and the newest one's image.
void CheckHistoryOnce(PageStore& store, int* images) {
  auto epochs = store.Epochs();
  const Epoch after = store.image().epoch;
  ASSERT_TRUE(epochs.ok()) << epochs.status().ToString();
  // Empty when a compaction took the file just sealed, before the next epoch.
  if (epochs->empty()) return;
  for (size_t i = 0; i < epochs->size(); ++i) {
    const EpochRecord& r = (*epochs)[i];
    if (i > 0) {
      ASSERT_GT(r.epoch, (*epochs)[i - 1].epoch);
    }
    ASSERT_LE(r.epoch, after);
    ASSERT_EQ(r.pause_ns, r.epoch * 1000) << "epoch " << r.epoch;
    ASSERT_EQ(r.pages, GenerateEpoch(kSeed, r.epoch).sealed.pages.size()) << "epoch " << r.epoch;
  }
  // A compaction since may have moved the oldest readable image past it.
  const Epoch last = epochs->back().epoch;
  auto at = store.ImageAt(last);
  if (!at.ok()) {
    ASSERT_EQ(at.status().code(), Status::Code::kNotFound) << at.status().ToString();
    return;
  }
  ++*images;
  ASSERT_TRUE(ImageMatchesModel(**at, ModelAt(kSeed, last)));
}

// History read beside a writer (Persist, and Write then Sync) and a
// compactor, as pheap inspect reads a heap in use: each read sees the log
// as durable at one instant, so no epoch lacks its record's final form
// (its pause, which Sync writes again) or lies past the durable one, and
// each earlier image offered reads as it was.
TEST(StoreHistory, ReadBesideAWriterAndACompactor) {
  TempDir dir;
  PageStoreOptions o = Options();
  o.log_file_bytes = 64 * 1024;
  auto store = OpenOrDie(dir.path(), "busy", o);
  ASSERT_TRUE(store);
  constexpr Epoch kEpochs = 120;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    Model m;
    for (Epoch e = 1; e <= kEpochs; ++e) m = PersistEpochs(*store, e, e, m);
    done = true;
  });
  std::thread compactor([&] {
    while (!done) {
      if (Status s = store->Compact(); !s.ok()) {
        ADD_FAILURE() << s.ToString();
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  int reads = 0, images = 0;
  while (!done && !::testing::Test::HasFailure()) {
    CheckHistoryOnce(*store, &images);
    ++reads;
    std::this_thread::yield();
  }
  writer.join();
  compactor.join();
  EXPECT_GT(reads, 1);
  EXPECT_GT(images, 0);
  EXPECT_GT(store->stats().compactions, 0u);
}

uint32_t HeaderVersion(const std::string& file) {
  logfmt::FileHeader h{};
  int fd = ::open(file.c_str(), O_RDONLY);
  if (fd < 0 || ::pread(fd, &h, sizeof(h), 0) != static_cast<ssize_t>(sizeof(h))) h.version = 0;
  if (fd >= 0) ::close(fd);
  return h.version;
}

// Makes the store under `heap_dir` what format version 1 wrote: version 1
// in every header and in TAIL, zeros where version 2 keeps commit facts.
void RewriteAsVersionOne(const std::string& heap_dir) {
  for (const std::string& file : LogFiles(heap_dir)) {
    int fd = ::open(file.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    logfmt::FileHeader h;
    ASSERT_EQ(::pread(fd, &h, sizeof(h), 0), static_cast<ssize_t>(sizeof(h)));
    h.version = 1;
    logfmt::Seal(&h);
    ASSERT_EQ(::pwrite(fd, &h, sizeof(h), 0), static_cast<ssize_t>(sizeof(h)));
    const off_t size = ::lseek(fd, 0, SEEK_END);
    for (off_t off = kPageSize; off < size; off += kPageSize) {
      logfmt::CommitBlock c;
      ASSERT_EQ(::pread(fd, &c, sizeof(c), off), static_cast<ssize_t>(sizeof(c)));
      if (c.magic != logfmt::kCommitMagic || !logfmt::Intact(c)) continue;
      c.time_ns = c.pause_ns = c.reclaimed_bytes = 0;
      logfmt::Seal(&c);
      ASSERT_EQ(::pwrite(fd, &c, sizeof(c), off), static_cast<ssize_t>(sizeof(c)));
    }
    ::close(fd);
  }
  const std::string tail = heap_dir + "/" + kTailFileName;
  int fd = ::open(tail.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  logfmt::TailRecord t;
  ASSERT_EQ(::pread(fd, &t, sizeof(t), 0), static_cast<ssize_t>(sizeof(t)));
  t.version = 1;
  t.checksum = XXH3_64bits(&t, offsetof(logfmt::TailRecord, checksum));
  ASSERT_TRUE(TailRecordIntact(t));
  ASSERT_EQ(::pwrite(fd, &t, sizeof(t), 0), static_cast<ssize_t>(sizeof(t)));
  ::close(fd);
}

// A store written by format version 1 (no commit facts) opens, read-only
// and for writing; its epochs read as retained with their time and pause
// not recorded, and their changes and images read as any others. A writer
// goes on beside its files without rewriting them, and compacts them.
TEST(StoreHistory, FormatVersionOneStoresOpen) {
  TempDir dir;
  PageStoreOptions o = Options();
  o.log_file_bytes = 64 * 1024;  // several version 1 files
  const std::string heap_dir = dir.path() + "/old";
  std::map<Epoch, Model> models;
  Model m;
  {
    auto store = OpenOrDie(dir.path(), "old", o);
    ASSERT_TRUE(store);
    for (Epoch e = 1; e <= 20; ++e) {
      m = PersistEpochs(*store, e, e, m);
      models[e] = m;
    }
  }
  RewriteAsVersionOne(heap_dir);
  const std::vector<std::string> old_files = LogFiles(heap_dir);
  ASSERT_GT(old_files.size(), 1u);

  PageStoreOptions ro = o;
  ro.read_only = true;
  {
    auto reader = OpenOrDie(dir.path(), "old", ro);
    ASSERT_TRUE(reader);
    EXPECT_TRUE(MatchesModel(*reader, m, 64));
    auto epochs = reader->Epochs();
    ASSERT_TRUE(epochs.ok()) << epochs.status().ToString();
    ASSERT_EQ(epochs->size(), 20u);
    for (const EpochRecord& r : *epochs) {
      EXPECT_EQ(r.time_ns, 0u) << "epoch " << r.epoch;
      EXPECT_EQ(r.pause_ns, 0u) << "epoch " << r.epoch;
      EXPECT_GT(r.bytes, 0u);
    }
    auto c = reader->Changes(4, 5);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_EQ(c->pages, GenerateEpoch(kSeed, 5).sealed.pages);
    auto at = reader->ImageAt(9);
    ASSERT_TRUE(at.ok()) << at.status().ToString();
    EXPECT_TRUE(ImageMatchesModel(**at, models[9]));
    EXPECT_EQ(reader->stats().last_compaction.file, 0u);
  }

  auto store = OpenOrDie(dir.path(), "old", o);
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, m, 64));
  m = PersistEpochs(*store, 21, 21, m);
  auto epochs = store->Epochs();
  ASSERT_TRUE(epochs.ok());
  ASSERT_EQ(epochs->size(), 21u);
  EXPECT_EQ((*epochs)[19].time_ns, 0u);
  EXPECT_NE(epochs->back().time_ns, 0u);
  EXPECT_EQ(epochs->back().pause_ns, 21000u);
  for (const std::string& f : LogFiles(heap_dir))
    EXPECT_EQ(HeaderVersion(f), std::count(old_files.begin(), old_files.end(), f) != 0 ? 1u : logfmt::kFormatVersion)
        << f;
  // Its version 1 files compact into one of version 2.
  ASSERT_TRUE(store->Compact().ok());
  ASSERT_NE(store->stats().last_compaction.file, 0u);
  EXPECT_TRUE(MatchesModel(*store, m, 64));
  store.reset();
  auto reopened = OpenOrDie(dir.path(), "old", ro);
  ASSERT_TRUE(reopened);
  EXPECT_TRUE(MatchesModel(*reopened, m, 64));
  EXPECT_NE(reopened->stats().last_compaction.time_ns, 0u);
}

}  // namespace
}  // namespace pheap::testing
