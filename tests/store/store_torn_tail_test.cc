// Only an intact commit record makes an epoch visible: torn tails at every
// 512-byte point (the file cut there, or zeros from there on), damaged or
// missing commit records, damaged pages.
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <iterator>

#include "store/log_file.h"
#include "store_test_util.h"

namespace pheap::testing {
namespace {

constexpr uint64_t kSeed = 5;
constexpr Epoch kEpochs = 6;

// Persists epochs 1..kEpochs (the last one large) and returns the byte range
// the last epoch occupies in the newest log file.
struct Written {
  std::string file;
  uint64_t last_start = 0, last_end = 0;
  std::string tail_before;  // TAIL as it was before the last epoch
};

// The last epoch: 20 pages (in one entry block) and a discard.
EpochData LastEpoch() {
  std::vector<Pgno> pages;
  for (Pgno p = 0; p < 200; p += 10) pages.push_back(p);
  return MakeEpoch(kEpochs, pages, 220, {{201, 3}});
}

// Where the intact log of the store's one file ends: the file itself may go
// on, with the zeros a writer appends ahead of later epochs.
uint64_t LogEnd(PageStore& store) {
  EXPECT_EQ(LogFiles(store.path()).size(), 1u);
  return store.stats().bytes_on_disk;
}

Written WriteStore(const std::string& dir, const std::string& name) {
  Written w;
  auto store = OpenOrDie(dir, name);
  if (!store) return w;
  for (Epoch e = 1; e < kEpochs; ++e) EXPECT_TRUE(store->Persist(GenerateEpoch(kSeed, e).sealed).ok());
  w.file = LogFiles(store->path()).back();
  w.last_start = LogEnd(*store);
  EXPECT_GT(std::filesystem::file_size(w.file), w.last_start) << "small epochs write zeros ahead of the next";
  std::ifstream tail(store->path() + "/" + kTailFileName, std::ios::binary);
  w.tail_before.assign(std::istreambuf_iterator<char>(tail), std::istreambuf_iterator<char>());
  auto last = LastEpoch();
  EXPECT_TRUE(store->Persist(last.sealed).ok());
  w.last_end = LogEnd(*store);
  return w;
}

Model ModelBefore() { return ModelAt(kSeed, kEpochs - 1); }

// A write of the last epoch that tore never finished, so no TAIL recorded
// it: TAIL is put back as it was before (in the heap's directory `heap`).
void UnrecordLastEpoch(const Written& w, const std::string& heap) {
  ASSERT_FALSE(w.tail_before.empty());
  std::ofstream(heap + "/" + kTailFileName, std::ios::binary | std::ios::trunc) << w.tail_before;
}

void FlipByte(const std::string& file, uint64_t offset) {
  int fd = ::open(file.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint8_t b;
  ASSERT_EQ(::pread(fd, &b, 1, static_cast<off_t>(offset)), 1);
  b ^= 0x10;
  ASSERT_EQ(::pwrite(fd, &b, 1, static_cast<off_t>(offset)), 1);
  ::close(fd);
}

TEST(StoreTornTail, EveryTruncationPointOfTheLastEpoch) {
  TempDir src;
  Written w = WriteStore(src.path(), "torn");
  ASSERT_GT(w.last_end, w.last_start);
  ASSERT_EQ((w.last_end - w.last_start) % 4096, 0u);
  const Model before = ModelBefore();
  int points = 0;
  // The write of the last epoch stopped at `cut`: past it the file ends,
  // or (overwriting zeros written ahead) still holds zeros.
  for (uint64_t cut = w.last_start; cut < w.last_end; cut += 512, ++points)
  for (bool zeros : {false, true}) {
    SCOPED_TRACE((zeros ? "zeros from " : "truncated at ") + std::to_string(cut));
    TempDir copy;
    std::filesystem::copy(src.path(), copy.path(), std::filesystem::copy_options::recursive);
    std::string file = copy.path() + "/torn/" + std::filesystem::path(w.file).filename().string();
    UnrecordLastEpoch(w, copy.path() + "/torn");
    if (zeros) {
      int fd = ::open(file.c_str(), O_WRONLY);
      ASSERT_GE(fd, 0);
      std::vector<uint8_t> z(w.last_end - cut, 0);
      ASSERT_EQ(::pwrite(fd, z.data(), z.size(), static_cast<off_t>(cut)), static_cast<ssize_t>(z.size()));
      ::close(fd);
    } else {
      std::filesystem::resize_file(file, cut);
    }
    Model m = before;
    {
      auto store = OpenOrDie(copy.path(), "torn");
      ASSERT_TRUE(store);
      ASSERT_TRUE(MatchesModel(*store, m));
      // A new writer continues from the previous epoch.
      auto next = GenerateEpoch(kSeed + 1, kEpochs);
      ASSERT_TRUE(store->Persist(next.sealed).ok());
      m.Apply(next.sealed);
    }
    auto store = OpenOrDie(copy.path(), "torn");
    ASSERT_TRUE(store);
    ASSERT_TRUE(MatchesModel(*store, m));
  }
  EXPECT_GE(points, 8 * 20);
}

TEST(StoreTornTail, ZerosAndGarbageAfterTheEndAreIgnored) {
  TempDir dir;
  Written w = WriteStore(dir.path(), "tail");
  Model m = ModelBefore();
  m.Apply(LastEpoch().sealed);
  std::filesystem::resize_file(w.file, w.last_end + 3 * 4096);  // zeros
  {
    RecordingReporter rep;
    auto store = OpenOrDie(dir.path(), "tail", Options(), &rep);
    ASSERT_TRUE(store);
    EXPECT_TRUE(MatchesModel(*store, m));
    EXPECT_TRUE(rep.entries.empty()) << "zeros are an ordinary end of log";
  }
  // Garbage where the next block would be: reported, the image unchanged.
  int fd = ::open(w.file.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> junk(4096, 0xab);
  ASSERT_EQ(::pwrite(fd, junk.data(), junk.size(), static_cast<off_t>(w.last_end)), 4096);
  ::close(fd);
  RecordingReporter rep;
  auto store = OpenOrDie(dir.path(), "tail", Options(), &rep);
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, m));
  ASSERT_EQ(rep.entries.size(), 1u);
  EXPECT_EQ(rep.entries[0].offset, w.last_end);
  EXPECT_EQ(rep.entries[0].file, w.file);
}

TEST(StoreTornTail, DamagedCommitRecordHidesItsEpoch) {
  TempDir dir;
  Written w = WriteStore(dir.path(), "commit");
  FlipByte(w.file, w.last_end - 4096 + 40);  // inside the commit record's fields
  UnrecordLastEpoch(w, dir.path() + "/commit");
  RecordingReporter rep;
  auto store = OpenOrDie(dir.path(), "commit", Options(), &rep);
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, ModelBefore()));
  ASSERT_EQ(rep.entries.size(), 1u);
  EXPECT_EQ(rep.entries[0].offset, w.last_end - 4096);
  EXPECT_NE(rep.entries[0].what.find("commit record fails its checksum"), std::string::npos) << rep.entries[0].what;
}

TEST(StoreTornTail, MissingCommitRecordHidesItsEpoch) {
  TempDir dir;
  Written w = WriteStore(dir.path(), "nocommit");
  std::filesystem::resize_file(w.file, w.last_end - 4096);
  UnrecordLastEpoch(w, dir.path() + "/nocommit");
  auto store = OpenOrDie(dir.path(), "nocommit");
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, ModelBefore()));
}

TEST(StoreTornTail, DamageBeforeLaterCommitsIsCorruptionNotATail) {
  TempDir dir;
  Written w = WriteStore(dir.path(), "mid");
  // The first entry block of epoch 1 sits right after the file header; the
  // epochs after it are durable and must not be silently dropped.
  FlipByte(w.file, 4096 + 30);
  RecordingReporter rep;
  auto r = PageStore::Open(dir.path(), "mid", Options(), &rep);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kCorruption);
  EXPECT_NE(r.status().message().find(w.file), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find("salvage"), std::string::npos) << r.status().ToString();
  EXPECT_FALSE(rep.entries.empty());
  PageStoreOptions o = Options();
  o.salvage = true;
  auto store = OpenOrDie(dir.path(), "mid", o);
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, Model{}));
  store.reset();
  // The salvaged session began from epoch 0: later opens accept that.
  store = OpenOrDie(dir.path(), "mid");
  ASSERT_TRUE(store);
  EXPECT_EQ(store->image().epoch, 0u);
}

TEST(StoreTornTail, DamagedPageIsReportedNeverReturned) {
  TempDir dir;
  Written w = WriteStore(dir.path(), "page");
  // Page 100 of the last epoch is its 11th page: in the first entry block.
  const uint64_t page_offset = w.last_start + 4096 + 10 * 4096;
  FlipByte(w.file, page_offset + 1234);
  auto store = OpenOrDie(dir.path(), "page");
  ASSERT_TRUE(store);
  std::unique_ptr<uint8_t, decltype(&std::free)> buf(
      static_cast<uint8_t*>(std::aligned_alloc(kPageSize, 4 * kPageSize)), &std::free);
  Status s = store->ReadRun(99, 3, buf.get(), nullptr);
  ASSERT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_NE(s.message().find("page 100 "), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find(w.file), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("offset " + std::to_string(page_offset)), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("'page'"), std::string::npos) << "names the heap: " << s.ToString();
  // Other pages still read.
  EXPECT_TRUE(store->ReadRun(90, 1, buf.get(), nullptr).ok());
  EXPECT_TRUE(store->ReadRun(101, 1, buf.get(), nullptr).ok());
  RecordingReporter rep;
  EXPECT_EQ(store->Verify(&rep).code(), Status::Code::kCorruption);
  ASSERT_EQ(rep.entries.size(), 1u);
  EXPECT_EQ(rep.entries[0].file, w.file);
  EXPECT_EQ(rep.entries[0].offset, page_offset);
  EXPECT_NE(rep.entries[0].what.find("page 100 "), std::string::npos);
}

TEST(StoreTornTail, VerifyPassesOnAnIntactStore) {
  TempDir dir;
  WriteStore(dir.path(), "fine");
  auto store = OpenOrDie(dir.path(), "fine");
  ASSERT_TRUE(store);
  RecordingReporter rep;
  EXPECT_TRUE(store->Verify(&rep).ok());
  EXPECT_TRUE(rep.entries.empty());
}

}  // namespace
}  // namespace pheap::testing
