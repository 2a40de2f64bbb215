// FaultAroundOff: a read fault in a registered file mapping maps the page
// alone; removed (or destroyed), the kernel faults around again. And the
// read-only segments of a loaded object are found from an address in it.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include <gtest/gtest.h>

#include "pager/fault_around.h"
#include "pager/pager.h"

namespace pheap::testing {
namespace {

constexpr int kPages = 256;

// Pages of [p, p + n pages) that the page tables map (/proc/self/pagemap).
int MappedPages(const uint8_t* p, int n) {
  int fd = open("/proc/self/pagemap", O_RDONLY);
  std::vector<uint64_t> e(n);
  ssize_t got = pread(fd, e.data(), n * 8, reinterpret_cast<uintptr_t>(p) / kPageSize * 8);
  close(fd);
  if (got != n * 8) return -1;
  return static_cast<int>(std::count_if(e.begin(), e.end(), [](uint64_t v) { return (v >> 63) != 0; }));
}

class FaultAround : public ::testing::Test {
 protected:
  void SetUp() override {
    char path[] = "/tmp/pheap-fault-around-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    unlink(path);
    std::vector<uint8_t> data(kPages * kPageSize, 0x5a);
    ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    void* m = mmap(nullptr, data.size(), PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    ASSERT_NE(m, MAP_FAILED);
    file_ = static_cast<const uint8_t*>(m);
    range_ = {reinterpret_cast<uint64_t>(m), data.size()};
    // The first fault in a fresh mapping of a just-written file does not
    // always fault around; from the second on the kernel behaves steadily.
    for (int p = 0; p < kPages; ++p) (void)Touch(p);
    Drop();
  }
  void TearDown() override {
    if (file_ != nullptr) munmap(const_cast<uint8_t*>(file_), kPages * kPageSize);
  }
  void Drop() { ASSERT_EQ(madvise(const_cast<uint8_t*>(file_), kPages * kPageSize, MADV_DONTNEED), 0); }
  uint8_t Touch(int page) { return *static_cast<const volatile uint8_t*>(file_ + page * kPageSize); }

  const uint8_t* file_ = nullptr;
  MappedRange range_;
};

TEST_F(FaultAround, RegisteredRangeMapsOnlyTouchedPages) {
  auto off = FaultAroundOff::Open();
  if (!off.ok() && !Pager::Probe().wp_async) GTEST_SKIP() << off.status().ToString();
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_EQ(Touch(64), 0x5a);
  const int around = MappedPages(file_, kPages);  // the kernel's own behaviour: 16 with the default 64 KiB
  ASSERT_GE(around, 1);

  ASSERT_TRUE((*off)->Add(range_).ok());
  EXPECT_EQ(MappedPages(file_, kPages), around) << "pages mapped before stay mapped";
  Drop();
  for (int p : {3, 100, 101, 200}) EXPECT_EQ(Touch(p), 0x5a);
  EXPECT_EQ(MappedPages(file_, kPages), 4);

  ASSERT_TRUE((*off)->Remove(range_).ok());
  Drop();
  (void)Touch(64);
  EXPECT_EQ(MappedPages(file_, kPages), around);

  ASSERT_TRUE((*off)->Add(range_).ok());
  off->reset();  // destroyed: the kernel faults around again
  Drop();
  (void)Touch(64);
  EXPECT_EQ(MappedPages(file_, kPages), around);
}

TEST_F(FaultAround, RangeOfAnotherUserfaultfdIsRefused) {
  auto a = FaultAroundOff::Open();
  if (!a.ok()) GTEST_SKIP() << a.status().ToString();
  auto b = FaultAroundOff::Open();
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE((*a)->Add(range_).ok());
  Status st = (*b)->Add(range_);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("UFFDIO_REGISTER"), std::string::npos) << st.ToString();
}

int InThisBinary() { return 7; }

TEST(ReadOnlySegments, FoundFromAnAddressInTheObject) {
  MappedRange r[4];
  for (const void* addr : {reinterpret_cast<const void*>(&InThisBinary), reinterpret_cast<const void*>(&getpid)}) {
    const int n = ReadOnlySegmentsOf(addr, r, 4);
    ASSERT_GE(n, 1);
    const auto a = reinterpret_cast<uint64_t>(addr);
    bool inside = false;
    for (int i = 0; i < n; ++i) {
      EXPECT_EQ(r[i].start % kPageSize, 0u);
      EXPECT_EQ(r[i].len % kPageSize, 0u);
      inside |= a - r[i].start < r[i].len;
    }
    EXPECT_TRUE(inside) << "the text holding the address is read-only";
  }
  int on_stack = 0;
  EXPECT_EQ(ReadOnlySegmentsOf(&on_stack, r, 4), 0);
  EXPECT_EQ(ReadOnlySegmentsOf(reinterpret_cast<const void*>(&InThisBinary), r, 0), 0);
}

}  // namespace
}  // namespace pheap::testing
