// TermStore: promises survive reopening, damage is refused, and a failed
// sync leaves the previous promise in force.
#include "replication/term_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "base/os.h"
#include "peer_test_util.h"

namespace pheap {
namespace {

TEST(TermStore, MissingFileIsNoPromise) {
  testing::TempDir d;
  auto ts = TermStore::Open(d.path() + "/heap");
  ASSERT_TRUE(ts.ok()) << ts.status().ToString();
  EXPECT_EQ(ts->promise().term, 0u);
}

TEST(TermStore, PromiseSurvivesReopen) {
  testing::TempDir d;
  const std::string dir = d.path() + "/heap";
  {
    auto ts = TermStore::Open(dir);
    ASSERT_TRUE(ts.ok());
    ASSERT_TRUE(ts->Promise(TermPromise{5, {11, 12}}).ok());
    ASSERT_TRUE(ts->Promise(TermPromise{7, {13, 14}}).ok());
    EXPECT_EQ(ts->promise().term, 7u);
  }
  auto ts = TermStore::Open(dir);
  ASSERT_TRUE(ts.ok()) << ts.status().ToString();
  EXPECT_EQ(ts->promise().term, 7u);
  EXPECT_EQ(ts->promise().claimant[0], 13u);
  EXPECT_EQ(ts->promise().claimant[1], 14u);
}

TEST(TermStore, DamagedFileIsCorruption) {
  testing::TempDir d;
  const std::string dir = d.path() + "/heap";
  {
    auto ts = TermStore::Open(dir);
    ASSERT_TRUE(ts.ok());
    ASSERT_TRUE(ts->Promise(TermPromise{3, {1, 2}}).ok());
  }
  {
    std::fstream f(dir + "/TERM", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(16);
    f.put('\x09');  // the term's low byte
  }
  auto ts = TermStore::Open(dir);
  EXPECT_EQ(ts.status().code(), Status::Code::kCorruption);
  EXPECT_NE(ts.status().message().find("TERM"), std::string::npos);
}

class FailFsync : public Os {
 public:
  int fsync(int) override { return -EIO; }
};

TEST(TermStore, FailedSyncKeepsThePreviousPromise) {
  testing::TempDir d;
  const std::string dir = d.path() + "/heap";
  auto ts = TermStore::Open(dir);
  ASSERT_TRUE(ts.ok());
  ASSERT_TRUE(ts->Promise(TermPromise{4, {1, 1}}).ok());
  FailFsync failing;
  SetOsForTesting(&failing);
  Status s = ts->Promise(TermPromise{9, {2, 2}});
  SetOsForTesting(nullptr);
  EXPECT_EQ(s.code(), Status::Code::kIoError);
  EXPECT_EQ(ts->promise().term, 4u);
  auto again = TermStore::Open(dir);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->promise().term, 4u);
}

}  // namespace
}  // namespace pheap
