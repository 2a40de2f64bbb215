// Failed writes and syncs, injected through the OS seam: a failed Persist
// changes nothing visible, a retry succeeds, a reopen agrees.
#include <algorithm>
#include <filesystem>
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

  int writev_datasync(int fd, const struct iovec* iov, int iovcnt, off_t off) override {
    ++writev_calls;
    if (fail_writev == 0) return Os::writev_datasync(fd, iov, iovcnt, off);
    --fail_writev;
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

void FailedPersistThenRetry(FaultyOs& fos, const std::string& dir, Written written) {
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
    fos.fail_writev = 1;
    fos.write_half = written == Written::kHalf;
    fos.write_all = written == Written::kAll;
    Status s = store->Persist(d4.sealed);
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
    ASSERT_TRUE(store->Persist(d4.sealed).ok());
    m.Apply(d4.sealed);
    EXPECT_TRUE(MatchesModel(*store, m));
    auto d5 = GenerateEpoch(seed, 5);
    ASSERT_TRUE(store->Persist(d5.sealed).ok());
    m.Apply(d5.sealed);
  }
  auto store = OpenOrDie(dir, "fault");
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, m));
}

TEST_F(StoreFault, WriteFailsOnceNothingWritten) { FailedPersistThenRetry(os_, dir_.path(), Written::kNothing); }
TEST_F(StoreFault, WriteFailsOnceAfterHalfTheBytes) { FailedPersistThenRetry(os_, dir_.path(), Written::kHalf); }
TEST_F(StoreFault, SyncFailsOnceAfterEveryByteWasWritten) { FailedPersistThenRetry(os_, dir_.path(), Written::kAll); }

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

}  // namespace
}  // namespace pheap::testing
