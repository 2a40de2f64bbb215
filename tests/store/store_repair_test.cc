// PageStore::RepairPage: a damaged stored page rewritten in place with a
// good copy puts the log file back byte for byte; a copy of another version
// of the page is refused and nothing is written.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include "store/page_store.h"
#include "tests/store/store_test_util.h"

namespace pheap {
namespace {

using pheaptest::DamageStoredPage;
using testing::kBase;
using testing::kSize;
using testing::MakeEpoch;

std::vector<Pgno> Range(Pgno first, Pgno end) {
  std::vector<Pgno> v;
  for (Pgno p = first; p < end; ++p) v.push_back(p);
  return v;
}

// Every log file's bytes, by name.
std::map<std::string, std::string> Snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    if (f.path().extension() != ".pheap") continue;
    std::ifstream in(f.path(), std::ios::binary);
    files[f.path().filename().string()] = std::string(std::istreambuf_iterator<char>(in), {});
  }
  return files;
}

class StoreRepairTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PageStoreOptions o;
    o.base = kBase;
    o.size = kSize;
    auto s = PageStore::Open(tmp_.path(), "h", o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s.value());
    e1_ = MakeEpoch(1, Range(0, 40), 64);
    ASSERT_TRUE(store_->Persist(e1_.sealed).ok());
    e2_ = MakeEpoch(2, {5, 6, 50}, 64, {{30, 2}});
    ASSERT_TRUE(store_->Persist(e2_.sealed).ok());
  }
  // Page `p` as epoch `e` wrote it.
  static std::vector<uint8_t> PageOf(Pgno p, Epoch e) {
    std::vector<uint8_t> v(kPageSize);
    testing::FillPage(v.data(), p, e);
    return v;
  }
  Status Read(Pgno p) {
    std::vector<uint8_t> out(kPageSize);
    return store_->ReadRun(p, 1, out.data(), nullptr);
  }

  testing::TempDir tmp_;
  std::unique_ptr<PageStore> store_;
  testing::EpochData e1_, e2_;
};

TEST_F(StoreRepairTest, DamagedPageIsRewrittenByteForByte) {
  const auto before = Snapshot(store_->path());
  ASSERT_TRUE(DamageStoredPage(store_->path(), 6, 2));
  ASSERT_NE(Snapshot(store_->path()), before);
  ASSERT_EQ(Read(6).code(), Status::Code::kCorruption);

  // An older version of the page is not a repair: refused, nothing written.
  const auto damaged = Snapshot(store_->path());
  Status s = store_->RepairPage(6, PageOf(6, 1).data());
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
  EXPECT_EQ(Snapshot(store_->path()), damaged);

  s = store_->RepairPage(6, PageOf(6, 2).data());
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(Read(6).ok());
  EXPECT_EQ(Snapshot(store_->path()), before);
  EXPECT_TRUE(store_->Verify(nullptr).ok());

  // It survives reopening, and repairing a good page changes nothing.
  const std::string dir = tmp_.path();
  store_.reset();
  PageStoreOptions o;
  auto again = PageStore::Open(dir, "h", o);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  store_ = std::move(again.value());
  EXPECT_TRUE(Read(6).ok());
  EXPECT_TRUE(store_->RepairPage(6, PageOf(6, 2).data()).ok());
  EXPECT_TRUE(store_->Verify(nullptr).ok());
}

TEST_F(StoreRepairTest, PagesWithoutAStoredVersionAreRefused) {
  const auto zeros = std::vector<uint8_t>(kPageSize, 0);
  EXPECT_EQ(store_->RepairPage(30, PageOf(30, 1).data()).code(), Status::Code::kInvalidArgument);  // trimmed
  EXPECT_EQ(store_->RepairPage(45, zeros.data()).code(), Status::Code::kInvalidArgument);           // never written
  EXPECT_EQ(store_->RepairPage(5000, zeros.data()).code(), Status::Code::kInvalidArgument);         // past the hwm
}

}  // namespace
}  // namespace pheap
