// Opening damaged, foreign, newer, locked or unreachable stores: each fails
// with an error that names the thing and says what to do.
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "store/log_file.h"
#include "store/log_format.h"
#include "store_test_util.h"

namespace pheap::testing {
namespace {

void PersistRange(PageStore& store, uint64_t seed, Epoch from, Epoch to) {
  for (Epoch e = from; e <= to; ++e) ASSERT_TRUE(store.Persist(GenerateEpoch(seed, e).sealed).ok()) << "epoch " << e;
}

TEST(StoreRecovery, SessionsChainAcrossLogFiles) {
  TempDir dir;
  for (int session = 0; session < 4; ++session) {
    auto store = OpenOrDie(dir.path(), "chain");
    ASSERT_TRUE(store);
    ASSERT_TRUE(MatchesModel(*store, ModelAt(3, session * 5)));
    PersistRange(*store, 3, session * 5 + 1, session * 5 + 5);
  }
  auto store = OpenOrDie(dir.path(), "chain");
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, ModelAt(3, 20)));
  EXPECT_EQ(LogFiles(store->path()).size(), 5u);  // one per writer session
}

TEST(StoreRecovery, TruncatedMiddleLogFileFailsUnlessSalvaged) {
  TempDir dir;
  for (int session = 0; session < 3; ++session) {
    auto store = OpenOrDie(dir.path(), "gap");
    ASSERT_TRUE(store);
    PersistRange(*store, 9, session * 4 + 1, session * 4 + 4);
  }
  auto files = LogFiles(dir.path() + "/gap");
  ASSERT_EQ(files.size(), 3u);
  // Cut the middle session's file after its first epoch (5): epochs 6..8
  // are gone, yet the third file begins from epoch 8.
  const uint64_t first_epoch_end = 4096 + 4096 * (2 + GenerateEpoch(9, 5).sealed.pages.size()) +
                                   (GenerateEpoch(9, 5).sealed.discarded.empty() ? 0 : 4096);
  std::filesystem::resize_file(files[1], first_epoch_end);
  RecordingReporter rep;
  auto r = PageStore::Open(dir.path(), "gap", Options(), &rep);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kCorruption);
  const std::string& msg = r.status().message();
  EXPECT_NE(msg.find("log-00000003.pheap begins from epoch 8"), std::string::npos) << msg;
  EXPECT_NE(msg.find("last intact epoch is 5"), std::string::npos) << msg;
  EXPECT_NE(msg.find(files[1] + " offset " + std::to_string(first_epoch_end)), std::string::npos) << msg;
  EXPECT_NE(msg.find("salvage"), std::string::npos) << msg;
  EXPECT_EQ(rep.entries.size(), 1u);

  PageStoreOptions o = Options();
  o.salvage = true;
  rep.entries.clear();
  {
    auto store = OpenOrDie(dir.path(), "gap", o, &rep);
    ASSERT_TRUE(store);
    EXPECT_TRUE(MatchesModel(*store, ModelAt(9, 5)));
    EXPECT_EQ(rep.entries.size(), 1u);
    PersistRange(*store, 9, 6, 7);
  }
  // After a salvage the store opens normally at what the salvaging writer made.
  auto store = OpenOrDie(dir.path(), "gap");
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, ModelAt(9, 7)));
}

TEST(StoreRecovery, MissingFirstLogFileIsAGap) {
  TempDir dir;
  for (int session = 0; session < 2; ++session) {
    auto store = OpenOrDie(dir.path(), "first");
    ASSERT_TRUE(store);
    PersistRange(*store, 4, session * 3 + 1, session * 3 + 3);
  }
  std::filesystem::remove(LogFiles(dir.path() + "/first")[0]);
  auto r = PageStore::Open(dir.path(), "first", Options());
  EXPECT_EQ(r.status().code(), Status::Code::kCorruption) << r.status().ToString();
}

// Rewrites the header of `file` with `edit` applied, checksum resealed.
template <typename Edit>
void EditHeader(const std::string& file, Edit edit) {
  logfmt::FileHeader h;
  int fd = ::open(file.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pread(fd, &h, sizeof(h), 0), static_cast<ssize_t>(sizeof(h)));
  edit(h);
  logfmt::Seal(&h);
  ASSERT_EQ(::pwrite(fd, &h, sizeof(h), 0), static_cast<ssize_t>(sizeof(h)));
  ::close(fd);
}

// A machine that crashed before a new heap's first commit may leave its log
// file's directory entry on disk without the header (empty, or a block of
// zeros). Such a file holds no epoch: the heap opens empty, or at the epoch
// of the files before it, and the file is removed. A longer file with a
// broken header may have held epochs and is still refused.
TEST(StoreRecovery, LogFileBegunButNeverWrittenIsDropped) {
  TempDir dir;
  const std::string heap = dir.path() + "/torn";
  for (uint64_t size : {uint64_t{0}, uint64_t{100}, uint64_t{4096}}) {
    std::filesystem::create_directories(heap);
    { std::ofstream(heap + "/log-00000001.pheap"); }
    std::filesystem::resize_file(heap + "/log-00000001.pheap", size);
    RecordingReporter rep;
    auto store = OpenOrDie(dir.path(), "torn", Options(), &rep);
    ASSERT_TRUE(store) << "size " << size;
    EXPECT_EQ(store->image().epoch, 0u);
    EXPECT_TRUE(rep.entries.empty()) << "size " << size << ": " << rep.entries.front().what;
    EXPECT_EQ(LogFiles(heap).size(), 1u) << "only the new session's own file";
    PersistRange(*store, 4, 1, 2);
    store.reset();
    // Behind a file with epochs, the same.
    const std::string next = heap + "/" + LogFileName(9);
    { std::ofstream(next.c_str()); }
    std::filesystem::resize_file(next, size);
    auto again = OpenOrDie(dir.path(), "torn");
    ASSERT_TRUE(again);
    EXPECT_TRUE(MatchesModel(*again, ModelAt(4, 2)));
    EXPECT_FALSE(std::filesystem::exists(next));
    again.reset();
    std::filesystem::remove_all(heap);
  }
  std::filesystem::create_directories(heap);
  { std::ofstream(heap + "/log-00000001.pheap"); }
  std::filesystem::resize_file(heap + "/log-00000001.pheap", 8192);
  auto r = PageStore::Open(dir.path(), "torn", Options());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kCorruption) << r.status().ToString();
}

TEST(StoreRecovery, NewerFormatVersionIsUnsupported) {
  TempDir dir;
  {
    auto store = OpenOrDie(dir.path(), "newer");
    ASSERT_TRUE(store);
    PersistRange(*store, 1, 1, 2);
  }
  EditHeader(LogFiles(dir.path() + "/newer")[0], [](logfmt::FileHeader& h) { h.version = logfmt::kFormatVersion + 1; });
  auto r = PageStore::Open(dir.path(), "newer", Options());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kUnsupported);
  std::string want = "written by format version " + std::to_string(logfmt::kFormatVersion + 1) +
                     ", this pheap reads up to " + std::to_string(logfmt::kFormatVersion) + ": upgrade pheap";
  EXPECT_NE(r.status().message().find(want), std::string::npos) << r.status().ToString();
}

TEST(StoreRecovery, StoreOfAnotherHeapIsRefused) {
  TempDir dir;
  {
    auto a = OpenOrDie(dir.path(), "alpha");
    ASSERT_TRUE(a);
    PersistRange(*a, 1, 1, 2);
  }
  std::filesystem::create_directories(dir.path() + "/beta");
  std::filesystem::copy(LogFiles(dir.path() + "/alpha")[0], dir.path() + "/beta/");
  auto r = PageStore::Open(dir.path(), "beta", Options());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("belongs to heap 'alpha'"), std::string::npos) << r.status().ToString();
}

TEST(StoreRecovery, BadHeapNames) {
  TempDir dir;
  struct Case {
    std::string name, says;
  };
  for (const Case& c :
       {Case{"", "empty"}, Case{"a/b", "contains '/'"}, Case{".", "names a directory"}, Case{"..", "names a directory"},
        Case{std::string(kMaxHeapNameLength + 1, 'x'), "the limit is 200"}, Case{"sp ace", "contains"}}) {
    auto r = PageStore::Open(dir.path(), c.name, Options());
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.says), std::string::npos) << r.status().ToString();
  }
  EXPECT_TRUE(PageStore::ValidateHeapName(std::string(kMaxHeapNameLength, 'x')).ok());
  EXPECT_TRUE(PageStore::ValidateHeapName("my-heap_2.v1").ok());
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "a bad name must not create anything";
}

TEST(StoreRecovery, UnwritableDirectory) {
  TempDir dir;
  std::string target;
  if (::geteuid() != 0) {
    std::filesystem::create_directories(dir.path() + "/locked");
    std::filesystem::permissions(dir.path() + "/locked",
                                 std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
    target = dir.path() + "/locked/stores";
  } else {
    // Root writes through permission bits; sysfs refuses new directories.
    target = "/sys/pheap-store-test";
    if (::access("/sys", F_OK) != 0) GTEST_SKIP() << "no /sys to stand in for an unwritable directory";
  }
  auto r = PageStore::Open(target, "h", Options());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kIoError);
  EXPECT_NE(r.status().message().find("is not writable"), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find(target), std::string::npos) << r.status().ToString();

  // A path through a regular file.
  std::string file = dir.path() + "/plain";
  {
    std::FILE* f = std::fopen(file.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }
  r = PageStore::Open(file + "/stores", "h", Options());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kIoError);
  EXPECT_NE(r.status().message().find(file), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find("names a directory"), std::string::npos) << r.status().ToString();
}

TEST(StoreRecovery, SecondWriterGetsBusyNamingTheHolder) {
  TempDir dir;
  int ready[2], release[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(release), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto r = PageStore::Open(dir.path(), "held", Options());
    char ok = r.ok() ? '1' : '0';
    (void)!::write(ready[1], &ok, 1);
    char c;
    (void)!::read(release[0], &c, 1);
    ::_exit(r.ok() ? 0 : 1);
  }
  char ok = 0;
  ASSERT_EQ(::read(ready[0], &ok, 1), 1);
  ASSERT_EQ(ok, '1');
  auto r = PageStore::Open(dir.path(), "held", Options());
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kBusy);
  std::string want = "heap store " + dir.path() + "/held is held by pid " + std::to_string(child) +
                     "; stop that process or use another dir";
  EXPECT_EQ(r.status().message(), want);
  // Readers need no lock.
  PageStoreOptions ro = Options();
  ro.read_only = true;
  EXPECT_TRUE(PageStore::Open(dir.path(), "held", ro).ok());
  (void)!::write(release[1], "x", 1);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  // Once the holder is gone the store opens.
  EXPECT_TRUE(PageStore::Open(dir.path(), "held", Options()).ok());
  for (int fd : {ready[0], ready[1], release[0], release[1]}) ::close(fd);
}

// A holder that exited while a process it forked (here without fork's
// handlers, which would let go of the lock) still runs: the error says so,
// and once that process ends the store opens without a retry by the caller.
TEST(StoreRecovery, HolderThatExitedIsNamedAsExited) {
  TempDir dir;
  int ready[2], release[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(release), 0);
  pid_t holder = ::fork();
  ASSERT_GE(holder, 0);
  if (holder == 0) {
    auto r = PageStore::Open(dir.path(), "orphaned", Options());
    if (!r.ok()) ::_exit(1);
    if (::syscall(SYS_fork) == 0) {  // no fork handlers run: it keeps the lock
      char c;
      (void)!::read(release[0], &c, 1);
      ::_exit(0);
    }
    (void)!::write(ready[1], "r", 1);
    ::_exit(0);
  }
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  int status = 0;
  ASSERT_EQ(::waitpid(holder, &status, 0), holder);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  auto r = PageStore::Open(dir.path(), "orphaned", Options());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kBusy);
  EXPECT_EQ(r.status().message(), "heap store " + dir.path() + "/orphaned is held by pid " + std::to_string(holder) +
                                      " (exited; a process it forked still holds it); stop that process or use "
                                      "another dir");
  (void)!::write(release[1], "x", 1);
  EXPECT_TRUE(PageStore::Open(dir.path(), "orphaned", Options()).ok());
  for (int fd : {ready[0], ready[1], release[0], release[1]}) ::close(fd);
}

// A fork child shares its parent's open files, the store's lock among them,
// but never holds the store: once the parent closes it, it opens again
// while the child still runs.
TEST(StoreRecovery, ForkChildDoesNotKeepTheStoreLocked) {
  TempDir dir;
  auto held = PageStore::Open(dir.path(), "forked", Options());
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  int ready[2], release[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(release), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // fork has returned here, its handlers run
    (void)!::write(ready[1], "r", 1);
    char c;
    (void)!::read(release[0], &c, 1);
    ::_exit(0);
  }
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  held->reset();
  auto again = PageStore::Open(dir.path(), "forked", Options());
  EXPECT_TRUE(again.ok()) << again.status().ToString();
  // And the new holder's lock still keeps a second writer out.
  EXPECT_EQ(PageStore::Open(dir.path(), "forked", Options()).status().code(), Status::Code::kBusy);
  (void)!::write(release[1], "x", 1);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  for (int fd : {ready[0], ready[1], release[0], release[1]}) ::close(fd);
}

}  // namespace
}  // namespace pheap::testing
