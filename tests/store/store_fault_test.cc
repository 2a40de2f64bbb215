// Failed writes and syncs, injected through the OS seam: a failed Persist
// changes nothing visible, a retry succeeds, a reopen agrees.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/os.h"
#include "store_test_util.h"

namespace pheap::testing {
namespace {

class FaultyOs : public Os {
 public:
  int fail_writev = 0;        // fail this many writev_datasync calls
  bool write_half = false;    //   after writing the first half of their bytes
  bool write_all = false;     //   after writing all of them (the sync fails)
  int fail_fsync = 0;         // fail this many fsync calls
  int writev_calls = 0;

  int fail_pwritev = 0;       // fail this many pwritev calls, as writev_datasync
  int fail_fdatasync = 0;     // fail this many fdatasync calls

  int open_direct_error = 0;   // nonzero: an open with O_DIRECT fails with it
  bool direct_einval = false;  // writes through O_DIRECT descriptors fail with EINVAL
  std::set<int> direct_fds;    // open with O_DIRECT
  int direct_writes = 0, plain_writes = 0;
  // Reads: what cachestat answers (-1: the kernel's answer; 0: no page
  // cached; 1: all), and reads through O_DIRECT descriptors fail with EINVAL.
  int cached = -1;
  bool direct_read_einval = false;
  int direct_reads = 0, plain_reads = 0, cachestat_calls = 0;

  struct Advice {
    int fd;
    uint64_t off, len;
  };
  std::vector<Advice> will_need;  // fadvise(WILLNEED) calls, in order

  int fadvise(int fd, uint64_t off, uint64_t len, int advice) override {
    if (advice == POSIX_FADV_WILLNEED) will_need.push_back({fd, off, len});
    return Os::fadvise(fd, off, len, advice);
  }
  int cachestat(int fd, uint64_t off, uint64_t len, uint64_t* pages) override {
    ++cachestat_calls;
    if (cached < 0) return Os::cachestat(fd, off, len, pages);
    *pages = cached == 0 ? 0 : (len + kPageSize - 1) / kPageSize;
    return 0;
  }
  ssize_t pread(int fd, void* buf, size_t n, off_t off) override {
    if (direct_fds.count(fd) == 0) {
      ++plain_reads;
      return Os::pread(fd, buf, n, off);
    }
    ++direct_reads;
    return direct_read_einval ? -EINVAL : Os::pread(fd, buf, n, off);
  }

  int open(const char* path, int flags, mode_t mode) override {
    if ((flags & O_DIRECT) == 0) return Os::open(path, flags, mode);
    if (open_direct_error != 0) return open_direct_error;
    int fd = Os::open(path, flags, mode);
    if (fd >= 0) direct_fds.insert(fd);
    return fd;
  }
  int close(int fd) override {
    direct_fds.erase(fd);
    return Os::close(fd);
  }
  // Counts a write through fd; true if it must fail with EINVAL.
  bool RefuseDirect(int fd) {
    if (direct_fds.count(fd) == 0) {
      ++plain_writes;
      return false;
    }
    ++direct_writes;
    return direct_einval;
  }

  int writev_datasync(int fd, const struct iovec* iov, int iovcnt, off_t off) override {
    ++writev_calls;
    if (RefuseDirect(fd)) return -EINVAL;
    if (fail_writev == 0) return Os::writev_datasync(fd, iov, iovcnt, off);
    --fail_writev;
    return WriteThenFail(fd, iov, iovcnt, off);
  }
  ssize_t pwritev(int fd, const struct iovec* iov, int iovcnt, off_t off) override {
    if (RefuseDirect(fd)) return -EINVAL;
    if (fail_pwritev == 0) return Os::pwritev(fd, iov, iovcnt, off);
    --fail_pwritev;
    return WriteThenFail(fd, iov, iovcnt, off);
  }
  int fdatasync(int fd) override {
    if (fail_fdatasync == 0) return Os::fdatasync(fd);
    --fail_fdatasync;
    return -EIO;
  }
  // Writes none, half or all of the bytes (write_half, write_all), fails.
  int WriteThenFail(int fd, const struct iovec* iov, int iovcnt, off_t off) {
    if (write_half || write_all) {
      size_t total = 0;
      for (int i = 0; i < iovcnt; ++i) total += iov[i].iov_len;
      size_t left = write_all ? total : total / 2;
      for (int i = 0; i < iovcnt && left > 0; ++i) {
        size_t n = std::min(left, iov[i].iov_len);
        if (Os::pwrite(fd, iov[i].iov_base, n, off) != static_cast<ssize_t>(n)) return -EIO;
        off += static_cast<off_t>(n);
        left -= n;
      }
    }
    return -EIO;
  }
  std::vector<std::string> dirs_synced;  // directories fsync was called on
  std::string fail_dir;                 // fail the next fsync of this directory
  int fsync(int fd) override {
    if (fail_fsync > 0) { --fail_fsync; return -EIO; }
    std::error_code ec;
    const auto path = std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(fd), ec);
    if (!ec && std::filesystem::is_directory(path, ec)) {
      if (path == fail_dir) {
        fail_dir.clear();
        return -EIO;
      }
      dirs_synced.push_back(path);
    }
    return Os::fsync(fd);
  }
};

class StoreFault : public ::testing::Test {
 protected:
  void SetUp() override { SetOsForTesting(&os_); }
  void TearDown() override { SetOsForTesting(nullptr); }
  FaultyOs os_;
  TempDir dir_;
};

enum class Written { kNothing, kHalf, kAll };

// Persist, or Write then Sync (two_phase) with the pause Sync learns,
// which writes the commit record again before the sync.
Status PersistEpoch(PageStore& store, const SealedEpoch& e, bool two_phase, uint64_t pause_ns = 0) {
  if (!two_phase) return store.Persist(e);
  Status s = store.Write(e);
  return s.ok() ? store.Sync(pause_ns) : s;
}

// The pause the log records for each retained epoch.
std::map<Epoch, uint64_t> Pauses(const PageStore& store) {
  std::map<Epoch, uint64_t> out;
  auto epochs = store.Epochs();
  EXPECT_TRUE(epochs.ok()) << epochs.status().ToString();
  if (epochs.ok())
    for (const EpochRecord& r : *epochs) out[r.epoch] = r.pause_ns;
  return out;
}

// Epoch 4 fails (its write with `written` bytes on disk, or only its sync
// when kAll), changes nothing visible, and a retry succeeds. Two-phase, the
// retry is another cut under the same number, as the pager makes it after
// a failed Sync: the region has changed since.
void FailedPersistThenRetry(FaultyOs& fos, const std::string& dir, Written written, bool two_phase = false) {
  const uint64_t seed = 21;
  Model m;
  {
    auto store = OpenOrDie(dir, "fault");
    ASSERT_TRUE(store);
    for (Epoch e = 1; e <= 3; ++e) {
      auto d = GenerateEpoch(seed, e);
      ASSERT_TRUE(store->Persist(d.sealed).ok());
      m.Apply(d.sealed);
    }
    // Epoch 4 overwrites pages that epoch 3 holds, so a leak would show.
    auto d4 = MakeEpoch(4, {0, 1, 2, 3, 4, 5, 6, 7}, 64, {{10, 20}});
    if (!two_phase) fos.fail_writev = 1;
    else if (written == Written::kAll) fos.fail_fdatasync = 1;
    else fos.fail_pwritev = 1;
    fos.write_half = written == Written::kHalf;
    fos.write_all = written == Written::kAll;
    Status s = PersistEpoch(*store, d4.sealed, two_phase, 4000);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), Status::Code::kIoError);
    EXPECT_NE(s.message().find("persisting epoch 4 of heap 'fault'"), std::string::npos) << s.ToString();
    EXPECT_NE(s.message().find("retry"), std::string::npos) << s.ToString();
    EXPECT_TRUE(MatchesModel(*store, m)) << "a failed Persist must change nothing visible";
    EXPECT_EQ(store->stats().epoch, 3u);
    {
      // What a crash now would leave: exactly epoch 3.
      PageStoreOptions ro = Options();
      ro.read_only = true;
      auto peek = OpenOrDie(dir, "fault", ro);
      ASSERT_TRUE(peek);
      EXPECT_TRUE(MatchesModel(*peek, m));
    }
    auto d4b = MakeEpoch(4, {2, 3, 30}, 65, {});
    const SealedEpoch& retry = two_phase ? d4b.sealed : d4.sealed;
    ASSERT_TRUE(PersistEpoch(*store, retry, two_phase, 4444).ok());
    m.Apply(retry);
    EXPECT_TRUE(MatchesModel(*store, m));
    auto d5 = GenerateEpoch(seed, 5);
    ASSERT_TRUE(PersistEpoch(*store, d5.sealed, two_phase, 5000).ok());
    m.Apply(d5.sealed);
  }
  auto store = OpenOrDie(dir, "fault");
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, m));
  // Two-phase, the durable records carry the pauses of the cuts that took
  // the numbers, not the failed one's.
  std::map<Epoch, uint64_t> want{{1, 0}, {2, 0}, {3, 0}, {4, 0}, {5, 0}};
  if (two_phase) {
    want[4] = 4444;
    want[5] = 5000;
  }
  EXPECT_EQ(Pauses(*store), want);
}

TEST_F(StoreFault, WriteFailsOnceNothingWritten) { FailedPersistThenRetry(os_, dir_.path(), Written::kNothing); }
TEST_F(StoreFault, WriteFailsOnceAfterHalfTheBytes) { FailedPersistThenRetry(os_, dir_.path(), Written::kHalf); }
TEST_F(StoreFault, SyncFailsOnceAfterEveryByteWasWritten) { FailedPersistThenRetry(os_, dir_.path(), Written::kAll); }
TEST_F(StoreFault, TwoPhaseWriteFailsOnceNothingWritten) {
  FailedPersistThenRetry(os_, dir_.path(), Written::kNothing, true);
}
TEST_F(StoreFault, TwoPhaseWriteFailsOnceAfterHalfTheBytes) {
  FailedPersistThenRetry(os_, dir_.path(), Written::kHalf, true);
}
TEST_F(StoreFault, TwoPhaseSyncFailsThenAnotherCutTakesTheNumber) {
  FailedPersistThenRetry(os_, dir_.path(), Written::kAll, true);
}

// Write leaves the epoch invisible until Sync, and refuses a second Write
// before it.
TEST_F(StoreFault, TwoPhaseEpochIsVisibleOnlyAfterSync) {
  auto store = OpenOrDie(dir_.path(), "twophase");
  ASSERT_TRUE(store);
  Model m;
  auto d1 = GenerateEpoch(3, 1);
  ASSERT_TRUE(store->Write(d1.sealed).ok());
  EXPECT_EQ(store->stats().epoch, 0u);
  EXPECT_TRUE(MatchesModel(*store, m));
  Status again = store->Write(GenerateEpoch(3, 2).sealed);
  EXPECT_EQ(again.code(), Status::Code::kInvalidArgument) << again.ToString();
  EXPECT_EQ(store->Persist(GenerateEpoch(3, 2).sealed).code(), Status::Code::kInvalidArgument);
  ASSERT_TRUE(store->Sync(0).ok());
  m.Apply(d1.sealed);
  EXPECT_EQ(store->stats().epoch, 1u);
  EXPECT_TRUE(MatchesModel(*store, m));
  ASSERT_TRUE(store->Sync(0).ok());  // nothing written: nothing to do
  store.reset();
  auto reopened = OpenOrDie(dir_.path(), "twophase");
  ASSERT_TRUE(reopened);
  EXPECT_TRUE(MatchesModel(*reopened, m));
}

TEST_F(StoreFault, OneSyncPerEpoch) {
  auto store = OpenOrDie(dir_.path(), "once");
  ASSERT_TRUE(store);
  for (Epoch e = 1; e <= 10; ++e) ASSERT_TRUE(store->Persist(GenerateEpoch(2, e).sealed).ok());
  EXPECT_EQ(os_.writev_calls, 10);
}

TEST_F(StoreFault, FailedRollToANewLogFileIsRetried) {
  PageStoreOptions o = Options();
  o.log_file_bytes = 12 * 1024;
  Model m;
  {
    auto store = OpenOrDie(dir_.path(), "roll", o);
    ASSERT_TRUE(store);
    auto d1 = GenerateEpoch(8, 1);
    ASSERT_TRUE(store->Persist(d1.sealed).ok());
    m.Apply(d1.sealed);
    ASSERT_GT(store->stats().bytes_on_disk, o.log_file_bytes) << "the next epoch must roll";
    auto d2 = GenerateEpoch(8, 2);
    os_.fail_fsync = 1;  // the new file's sync
    Status s = store->Persist(d2.sealed);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("creating log file"), std::string::npos) << s.ToString();
    EXPECT_TRUE(MatchesModel(*store, m));
    ASSERT_TRUE(store->Persist(d2.sealed).ok());
    m.Apply(d2.sealed);
  }
  auto store = OpenOrDie(dir_.path(), "roll", o);
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, m));
  for (const auto& f : std::filesystem::directory_iterator(store->path()))
    EXPECT_NE(f.path().extension(), ".tmp") << "no half-made log file stays behind";
}

// Open makes its new log file without a sync; the first epoch syncs it
// (data, then the directory entry). A failure there fails that epoch, which
// a retry then makes durable, and nothing before it is touched.
TEST_F(StoreFault, FailedFirstSyncAfterOpenIsRetried) {
  {
    auto store = OpenOrDie(dir_.path(), "open");
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->Persist(GenerateEpoch(4, 1).sealed).ok());
  }
  os_.fail_fsync = 1;  // the directory entry of the log file begun at open
  auto store = OpenOrDie(dir_.path(), "open");
  ASSERT_TRUE(store);
  EXPECT_EQ(os_.fail_fsync, 1) << "open must not sync";
  auto d2 = GenerateEpoch(4, 2);
  Status s = store->Persist(d2.sealed);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("persisting epoch 2"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find(dir_.path() + "/open/log-"), std::string::npos) << s.ToString();
  EXPECT_TRUE(MatchesModel(*store, ModelAt(4, 1)));
  ASSERT_TRUE(store->Persist(d2.sealed).ok());
  store.reset();
  auto again = OpenOrDie(dir_.path(), "open");
  ASSERT_TRUE(again);
  EXPECT_TRUE(MatchesModel(*again, ModelAt(4, 2)));
}

// A store whose directories did not exist creates them, and the first
// epoch's sync makes each one's entry in its parent durable, or the heap
// could vanish with them in a crash. A failed sync fails that epoch; the
// retry syncs what is still due, and later epochs sync no directory.
TEST_F(StoreFault, FirstEpochSyncsTheDirectoriesItCreated) {
  const std::string top = dir_.path() + "/a", mid = top + "/b", heap = mid + "/made";
  auto store = OpenOrDie(mid, "made");
  ASSERT_TRUE(store);
  EXPECT_TRUE(os_.dirs_synced.empty()) << "open must not sync";
  os_.fail_dir = top;
  auto d1 = GenerateEpoch(6, 1);
  Status s = store->Persist(d1.sealed);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("syncing directory " + top), std::string::npos) << s.ToString() << " / " << top;
  ASSERT_TRUE(store->Persist(d1.sealed).ok());
  auto synced = [&](const std::string& d) {
    return std::count(os_.dirs_synced.begin(), os_.dirs_synced.end(), d);
  };
  EXPECT_GE(synced(heap), 1);  // the log file's entry
  EXPECT_EQ(synced(mid), 1);   // the heap directory's
  EXPECT_EQ(synced(top), 1);   // b's, after the failure
  EXPECT_EQ(synced(dir_.path()), 1);  // a's
  const size_t after_first = os_.dirs_synced.size();
  ASSERT_TRUE(store->Persist(GenerateEpoch(6, 2).sealed).ok());
  EXPECT_EQ(os_.dirs_synced.size(), after_first);
}

// Why `dir` refuses a file opened O_DIRECT, or empty if it takes one.
std::string WhyNoODirect(const std::string& dir) {
  const std::string probe = dir + "/probe";
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_DIRECT, 0644);
  if (fd < 0) return dir + " refuses O_DIRECT: " + std::strerror(errno);
  ::close(fd);
  ::unlink(probe.c_str());
  return "";
}

// Epochs of at least direct_write_bytes go through an O_DIRECT descriptor of
// the log file, smaller ones through the page cache, and both, mixed in one
// file, read back and reopen as the model says.
TEST_F(StoreFault, LargeEpochsAreWrittenPastThePageCache) {
  if (const std::string why = WhyNoODirect(dir_.path()); !why.empty()) GTEST_SKIP() << why;
  PageStoreOptions o = Options();
  o.direct_write_bytes = 8 * kPageSize;
  Model m;
  {
    auto store = OpenOrDie(dir_.path(), "direct", o);
    ASSERT_TRUE(store);
    // 1 page + entry + commit: 3 blocks, buffered; 10 pages: 12 blocks, direct.
    auto small = MakeEpoch(1, {3}, 64);
    ASSERT_TRUE(store->Persist(small.sealed).ok());
    m.Apply(small.sealed);
    EXPECT_EQ(os_.direct_writes, 0);
    EXPECT_EQ(os_.plain_writes, 1);
    auto large = MakeEpoch(2, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 64);
    ASSERT_TRUE(store->Persist(large.sealed).ok());
    m.Apply(large.sealed);
    EXPECT_EQ(os_.direct_writes, 1);
    EXPECT_EQ(os_.direct_fds.size(), 1u);
    EXPECT_TRUE(MatchesModel(*store, m)) << "read back right after an O_DIRECT write";
    auto two_phase = MakeEpoch(3, {5, 20, 21, 22, 23, 24, 25, 26, 27}, 64, {{40, 4}});
    ASSERT_TRUE(store->Write(two_phase.sealed).ok());
    EXPECT_EQ(os_.direct_writes, 2);
    ASSERT_TRUE(store->Sync(3000).ok());  // its commit record again, through the page cache
    m.Apply(two_phase.sealed);
    auto small2 = MakeEpoch(4, {21}, 64);
    ASSERT_TRUE(store->Persist(small2.sealed).ok());
    m.Apply(small2.sealed);
    EXPECT_EQ(os_.direct_writes, 2);
    EXPECT_TRUE(MatchesModel(*store, m));
  }
  EXPECT_TRUE(os_.direct_fds.empty()) << "the O_DIRECT descriptor is closed with the store";
  auto store = OpenOrDie(dir_.path(), "direct", o);
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, m));
  EXPECT_EQ(Pauses(*store)[3], 3000u);
}

// Pages 0 .. n-1.
std::vector<Pgno> PagesBelow(Pgno n) {
  std::vector<Pgno> pages;
  for (Pgno p = 0; p < n; ++p) pages.push_back(p);
  return pages;
}

// Persists epoch e of `pages` (hwm 64) and applies it to *m.
bool PersistEpoch(PageStore& store, Model* m, Epoch e, const std::vector<Pgno>& pages) {
  EpochData d = MakeEpoch(e, pages, 64);
  if (!store.Persist(d.sealed).ok()) return false;
  m->Apply(d.sealed);
  return true;
}

// A run of pages read back that the page cache does not hold whole, and of
// at least direct_read_bytes, is read through an O_DIRECT descriptor; a run
// the cache holds, a shorter one or one into memory O_DIRECT cannot take
// is read through the page cache, and a device that refuses the direct
// read (EINVAL) gets it through the page cache instead, and every later
// read of that file too. Every way reads the pages the model says.
TEST_F(StoreFault, RunsNotInThePageCacheAreReadPastIt) {
  if (const std::string why = WhyNoODirect(dir_.path()); !why.empty()) GTEST_SKIP() << why;
  PageStoreOptions o = Options();
  o.direct_write_bytes = 0;
  o.direct_read_bytes = 8 * kPageSize;
  Model m;
  auto store = OpenOrDie(dir_.path(), "direct-read", o);
  ASSERT_TRUE(store);
  ASSERT_TRUE(PersistEpoch(*store, &m, 1, PagesBelow(20)));
  std::unique_ptr<uint8_t, decltype(&std::free)> buf(
      static_cast<uint8_t*>(std::aligned_alloc(kPageSize, 21 * kPageSize)), &std::free);
  std::vector<uint8_t> want(kPageSize);
  // Reads `n` pages from 0 into buf + skew and checks them.
  auto read = [&](uint32_t n, size_t skew) {
    ASSERT_TRUE(store->ReadRun(0, n, buf.get() + skew, nullptr).ok());
    for (Pgno p = 0; p < n; ++p) {
      FillPage(want.data(), p, 1);
      EXPECT_EQ(std::memcmp(buf.get() + skew + p * kPageSize, want.data(), kPageSize), 0) << "page " << p;
    }
  };
  os_.cached = 0;
  read(20, 0);
  EXPECT_EQ(os_.direct_reads, 1);
  EXPECT_EQ(os_.plain_reads, 0);
  read(7, 0);  // shorter than direct_read_bytes
  EXPECT_EQ(os_.direct_reads, 1);
  EXPECT_EQ(os_.plain_reads, 1);
  read(20, 512);  // into memory that is not page aligned
  EXPECT_EQ(os_.direct_reads, 1);
  EXPECT_EQ(os_.plain_reads, 2);
  os_.cached = 1;
  read(20, 0);
  EXPECT_EQ(os_.direct_reads, 1);
  EXPECT_EQ(os_.plain_reads, 3);
  os_.cached = 0;
  os_.direct_read_einval = true;
  read(20, 0);
  EXPECT_EQ(os_.direct_reads, 2);
  EXPECT_EQ(os_.plain_reads, 4);
  os_.direct_read_einval = false;
  const int asked = os_.cachestat_calls;
  read(20, 0);  // the file refused once: not tried again, nor its cache asked
  EXPECT_EQ(os_.direct_reads, 2);
  EXPECT_EQ(os_.plain_reads, 5);
  EXPECT_EQ(os_.cachestat_calls, asked);
  EXPECT_TRUE(MatchesModel(*store, m));
  store.reset();
  EXPECT_TRUE(os_.direct_fds.empty()) << "the O_DIRECT descriptor is closed with the store";
}

// WillNeed starts the disk reads of the stored pages of a range: one
// fadvise per run of pages back to back in a file, none for pages never
// stored or past the image, and the reads that follow get the model's pages.
TEST_F(StoreFault, WillNeedAdvisesEachStoredExtentOnce) {
  Model m;
  auto store = OpenOrDie(dir_.path(), "will-need", Options());
  ASSERT_TRUE(store);
  ASSERT_TRUE(PersistEpoch(*store, &m, 1, PagesBelow(20)));
  ASSERT_TRUE(PersistEpoch(*store, &m, 2, {5, 6, 7, 8, 9, 30}));  // a newer run inside, and one past a gap

  store->WillNeed(0, 64);
  ASSERT_EQ(os_.will_need.size(), 4u);
  const std::vector<uint64_t> lens = {5, 5, 10, 1};
  for (size_t i = 0; i < lens.size(); ++i) {
    EXPECT_EQ(os_.will_need[i].len, lens[i] * kPageSize) << "extent " << i;
    EXPECT_EQ(os_.will_need[i].off % kPageSize, 0u) << "extent " << i;
  }
  // Pages 0-4 and 10-19 are epoch 1's, back to back where it wrote them.
  EXPECT_EQ(os_.will_need[2].fd, os_.will_need[0].fd);
  EXPECT_EQ(os_.will_need[2].off, os_.will_need[0].off + 10 * kPageSize);
  EXPECT_NE(os_.will_need[1].off, os_.will_need[0].off + 5 * kPageSize) << "pages 5-9 are epoch 2's";

  os_.will_need.clear();
  store->WillNeed(20, 10);   // never stored
  store->WillNeed(64, 100);  // past the image
  EXPECT_TRUE(os_.will_need.empty());
  EXPECT_TRUE(MatchesModel(*store, m));
}

// A filesystem that refuses O_DIRECT, at open or at the write (EINVAL: an
// alignment the device does not take), gets the same epochs through the
// page cache, durable and whole; the refused write is not retried direct.
void DirectRefused(FaultyOs& fos, const std::string& dir, bool at_open) {
  PageStoreOptions o = Options();
  o.direct_write_bytes = 4 * kPageSize;
  if (at_open) fos.open_direct_error = -EINVAL;
  else fos.direct_einval = true;
  Model m;
  {
    auto store = OpenOrDie(dir, "refused", o);
    ASSERT_TRUE(store);
    for (Epoch e = 1; e <= 3; ++e) {
      auto d = MakeEpoch(e, {e, e + 1, e + 2, e + 3, e + 10}, 64);
      ASSERT_TRUE(store->Persist(d.sealed).ok());
      m.Apply(d.sealed);
    }
    auto d4 = MakeEpoch(4, {30, 31, 32, 33, 34}, 64);
    ASSERT_TRUE(store->Write(d4.sealed).ok());
    ASSERT_TRUE(store->Sync(4000).ok());
    m.Apply(d4.sealed);
    EXPECT_EQ(fos.direct_writes, at_open ? 0 : 1) << "one refusal is enough";
    EXPECT_EQ(fos.plain_writes, 4);
    EXPECT_TRUE(MatchesModel(*store, m));
  }
  auto store = OpenOrDie(dir, "refused", o);
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, m));
  EXPECT_EQ(Pauses(*store)[4], 4000u);
}
TEST_F(StoreFault, DirectOpenRefusedWritesThroughThePageCache) { DirectRefused(os_, dir_.path(), true); }
TEST_F(StoreFault, DirectWriteRefusedWritesThroughThePageCache) { DirectRefused(os_, dir_.path(), false); }

}  // namespace
}  // namespace pheap::testing
