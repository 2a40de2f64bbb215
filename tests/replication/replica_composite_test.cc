// ReplicatedPages: a local page store and three real peers as one sink and
// source. Both sides hold every epoch; a damaged local page is read from the
// replicas; recovery into an empty directory reads the replicas' image and
// goes on committing to them.
#include "replication/replica_composite.h"

#include <gtest/gtest.h>

#include "replica_test_util.h"

namespace pheap {
namespace {

using testing::DamageStoredPage;
using testing::kBase;
using testing::kSize;
using testing::MakeEpoch;
using testing::Oracle;
using testing::Range;

using ReplicatedPagesTest = testing::ReplicaFixture;

std::unique_ptr<PageStore> OpenStore(const std::string& dir) {
  PageStoreOptions o;
  o.base = kBase;
  o.size = kSize;
  auto s = PageStore::Open(dir, "replicated", o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s.value()) : nullptr;
}

TEST_F(ReplicatedPagesTest, LocalAndQuorumHoldEveryEpoch) {
  auto local = OpenStore(tmp_.path() + "/local");
  ASSERT_TRUE(local);
  auto remote = Open(Options());
  ASSERT_TRUE(remote);
  ReplicatedPages pages(local.get(), remote.get());
  EXPECT_TRUE(pages.local_in_use());
  Oracle oracle;
  auto e1 = MakeEpoch(1, Range(0, 100), 128, {}, &oracle);
  ASSERT_TRUE(pages.Persist(e1.sealed).ok());
  auto e2 = MakeEpoch(2, {3, 50, 127}, 128, {{10, 4}}, &oracle);
  ASSERT_TRUE(pages.Persist(e2.sealed).ok());
  EXPECT_EQ(local->image().epoch, 2u);
  EXPECT_EQ(remote->image().epoch, 2u);
  EXPECT_EQ(pages.image().epoch, 2u);
  for (const auto& ep : endpoints_) EXPECT_EQ(DurableAt(ep), 2) << ep;
  VerifyImage(pages, 128, oracle);

  // A page damaged in the local log is served by the replicas.
  ASSERT_TRUE(DamageStoredPage(local->path(), 50, 2));
  std::vector<uint8_t> probe(kPageSize);
  ASSERT_EQ(local->ReadRun(50, 1, probe.data(), nullptr).code(), Status::Code::kCorruption);
  VerifyImage(pages, 128, oracle);
  // ... and the local copy is repaired with theirs.
  Status s = local->ReadRun(50, 1, probe.data(), nullptr);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(local->Verify(nullptr).ok());
}

TEST_F(ReplicatedPagesTest, RecoveryIntoAnEmptyDirectory) {
  Oracle oracle;
  {
    auto w = Open(Options());
    ASSERT_TRUE(w);
    ShipFirstEpochs(*w, &oracle);
  }
  auto local = OpenStore(tmp_.path() + "/empty");
  ASSERT_TRUE(local);
  auto remote = Open(Options());
  ASSERT_TRUE(remote);
  ReplicatedPages pages(local.get(), remote.get());
  EXPECT_FALSE(pages.local_in_use());
  EXPECT_EQ(pages.image().epoch, 3u);
  EXPECT_EQ(pages.image().hwm, 1501u);
  VerifyImage(pages, 1501, oracle);
  // It goes on committing, to the replicas alone.
  auto e4 = MakeEpoch(4, {0, 1500}, 1501, {}, &oracle);
  Status s = pages.Persist(e4.sealed);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(local->image().epoch, 0u);
  VerifyImage(pages, 1501, oracle);
}

}  // namespace
}  // namespace pheap
