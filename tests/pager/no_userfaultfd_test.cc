// Without userfaultfd (the syscall refused, /dev/userfaultfd absent: an Os
// that says so), the pager falls back to mprotect tracking and loads the
// stored image eagerly; a forced userfaultfd mode is refused.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include <gtest/gtest.h>

#include "base/os.h"
#include "pager/kernel_probe.h"
#include "pager/pager.h"
#include "pager/uapi_compat.h"
#include "tests/pager/fake_store.h"

namespace pheap::testing {
namespace {

class NoUserfaultfdOs : public Os {
 public:
  int userfaultfd(int) override { ++refusals; return -ENOSYS; }
  int open(const char* path, int flags, mode_t mode) override {
    if (std::strcmp(path, "/dev/userfaultfd") == 0) { ++refusals; return -ENOENT; }
    return Os::open(path, flags, mode);
  }
  int refusals = 0;
};

class NoUserfaultfd : public ::testing::Test {
 protected:
  void SetUp() override {
    (void)Pager::Probe();  // the real probe, before the kernel is taken away
    SetOsForTesting(&os_);
  }
  void TearDown() override { SetOsForTesting(nullptr); }
  NoUserfaultfdOs os_;
  FakeStore store_{ImageInfo{1, 3, 1, kTestBase, uint64_t{16} << 20, 0}};
};

TEST_F(NoUserfaultfd, FallsBackToMprotectWithTheImageLoaded) {
  PHEAP_SKIP_IF_TSAN();
  for (Pgno p = 0; p < 40; ++p) store_.PutPage(p, static_cast<uint8_t>(p + 1));
  store_.PutPage(2000, 0xEE);
  auto r = Pager::Open(store_.image(), &store_, &store_, PagerOptions{});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Pager& pager = *r.value();
  EXPECT_EQ(pager.mode(), TrackingMode::kMprotect);
  EXPECT_GT(os_.refusals, 0);
  auto* base = static_cast<uint8_t*>(pager.base());
  for (Pgno p = 0; p < 40; ++p) ASSERT_EQ(base[p * kPageSize + 99], p + 1) << p;
  EXPECT_EQ(base[2000 * kPageSize], 0xEE);
  EXPECT_EQ(base[1000 * kPageSize], 0);
  // Loading is not writing: nothing is dirty until the program writes.
  base[5 * kPageSize] = 0x55;
  base[3000 * kPageSize] = 0x56;
  auto e = pager.Commit();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(*e, 4u);
  EXPECT_EQ(store_.LastPages(), (std::vector<Pgno>{5, 3000}));
  EXPECT_EQ(store_.Read(5)[0], 0x55);
  EXPECT_EQ(store_.Read(5)[1], 6);
  EXPECT_EQ(store_.contract_error(), "");
}

TEST_F(NoUserfaultfd, ForcedUserfaultfdModeIsUnsupported) {
  store_.PutPage(0, 1);
  for (TrackingMode m : {TrackingMode::kAsyncWp, TrackingMode::kSyncWp}) {
    PagerOptions o;
    o.mode = m;
    auto r = Pager::Open(store_.image(), &store_, &store_, o);
    ASSERT_FALSE(r.ok()) << TrackingModeName(m);
    EXPECT_EQ(r.status().code(), Status::Code::kUnsupported);
    if (m == TrackingMode::kSyncWp ? Pager::Probe().wp : Pager::Probe().wp_async) {
      // The kernel has the mode: it is refused at open, for want of a userfaultfd.
      EXPECT_NE(r.status().message().find("userfaultfd"), std::string::npos) << r.status().message();
    }
  }
}

TEST_F(NoUserfaultfd, MprotectUnderAutoIsRefusedWhenAskedSayingWhatToDo) {
  store_.PutPage(0, 1);
  PagerOptions o;
  o.auto_mprotect = false;
  auto r = Pager::Open(store_.image(), &store_, &store_, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kUnsupported);
  for (const char* what : {"EFAULT", "/dev/userfaultfd", "vm.unprivileged_userfaultfd=1", "tracking=mprotect"})
    EXPECT_NE(r.status().message().find(what), std::string::npos) << what << ": " << r.status().message();
  o.mode = TrackingMode::kMprotect;  // asked for by name: allowed
  r = Pager::Open(store_.image(), &store_, &store_, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r.value()->mode(), TrackingMode::kMprotect);
}

// As an unprivileged user on Debian: the full userfaultfd refused, one for
// user-mode faults only granted.
class UserModeOnlyOs : public Os {
 public:
  int userfaultfd(int flags) override {
    if ((flags & UFFD_USER_MODE_ONLY) == 0) return -EPERM;
    ++user_mode_only;
    return Os::userfaultfd(flags);
  }
  int open(const char* path, int flags, mode_t mode) override {
    if (std::strcmp(path, "/dev/userfaultfd") == 0) return -EACCES;
    return Os::open(path, flags, mode);
  }
  int user_mode_only = 0;
};

TEST(UserModeOnlyUserfaultfd, AutoPicksAsyncWpUserAndTheKernelsWritesWork) {
  PHEAP_SKIP_IF_TSAN();
  if (!Pager::Probe().wp_async || !Pager::Probe().pagemap_scan) GTEST_SKIP() << "needs async write-protect (6.7+)";
  UserModeOnlyOs os;
  SetOsForTesting(&os);
  struct Restore {
    ~Restore() { SetOsForTesting(nullptr); }
  } restore;
  KernelFeatures k = ProbeKernel();
  EXPECT_FALSE(k.userfaultfd);
  EXPECT_TRUE(k.user_wp_async);
  EXPECT_EQ(*ChooseMode(k, TrackingMode::kAuto), TrackingMode::kAsyncWpUser);

  FakeStore store{ImageInfo{1, 3, 1, kTestBase, uint64_t{16} << 20, 0}};
  for (Pgno p = 0; p < 40; ++p) store.PutPage(p, static_cast<uint8_t>(p + 1));
  store.PutPage(2000, 0xEE);
  PagerOptions o;
  o.auto_mprotect = false;
  // This process's cached probe saw the full userfaultfd: the open finds it
  // refused and takes the user-mode-only one.
  auto r = Pager::Open(store.image(), &store, &store, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Pager& pager = *r.value();
  EXPECT_EQ(pager.mode(), TrackingMode::kAsyncWpUser);
  EXPECT_GT(os.user_mode_only, 0);
  auto* base = static_cast<uint8_t*>(pager.base());
  for (Pgno p = 0; p < 40; ++p) ASSERT_EQ(base[p * kPageSize + 99], p + 1) << p;
  EXPECT_EQ(base[2000 * kPageSize], 0xEE);
  EXPECT_EQ(base[1000 * kPageSize], 0);
  EXPECT_EQ(pager.stats().pages_fetched, 41u);
  // Loading is not writing; the kernel's writes (a stored page, one never
  // populated) are tracked as the program's are.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_EQ(write(fds[1], "hellohello", 10), 10);
  ASSERT_EQ(read(fds[0], base + 7 * kPageSize + 100, 5), 5) << std::strerror(errno);
  ASSERT_EQ(read(fds[0], base + 3000 * kPageSize, 5), 5) << std::strerror(errno);
  close(fds[0]);
  close(fds[1]);
  base[5 * kPageSize] = 0x55;
  auto e = pager.Commit();
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(store.LastPages(), (std::vector<Pgno>{5, 7, 3000}));
  EXPECT_EQ(std::memcmp(store.Read(7).data() + 100, "hello", 5), 0);
  EXPECT_EQ(store.Read(7)[99], 8);
  EXPECT_EQ(std::memcmp(store.Read(3000).data(), "hello", 5), 0);
  e = pager.Commit();
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(store.LastPages().empty());
  EXPECT_EQ(store.contract_error(), "");
}

}  // namespace
}  // namespace pheap::testing
