// Installing a whole image into an empty store (recovery from replicas into
// a new directory): parts arrive with the epoch they were read at, epochs
// committed meanwhile arrive as parts too, and only the closing record makes
// the image visible.
#include "tests/store/store_test_util.h"

namespace pheap::testing {
namespace {

constexpr uint64_t kSeed = 71;

// The pages of the image at `m`, as parts of at most `per_part` pages, each
// labelled `label`.
std::vector<EpochData> ImageParts(const Model& m, Epoch label, size_t per_part) {
  std::vector<EpochData> parts;
  std::vector<Pgno> pages;
  auto flush = [&] {
    if (pages.empty()) return;
    EpochData d = MakeEpoch(label, pages, m.hwm);
    size_t i = 0;
    for (Pgno p : pages) FillPage(d.data.get() + i++ * kPageSize, p, m.written.at(p));
    parts.push_back(std::move(d));
    pages.clear();
  };
  for (const auto& [p, e] : m.written) {
    if (p >= m.hwm) continue;
    pages.push_back(p);
    if (pages.size() == per_part) flush();
  }
  flush();
  return parts;
}

TEST(StoreInstall, ImageWithConcurrentEpochsAndStaleParts) {
  TempDir dir;
  const Model at15 = ModelAt(kSeed, 15);
  auto parts = ImageParts(at15, 15, 5);
  ASSERT_GE(parts.size(), 4u);
  auto store = OpenOrDie(dir.path(), "i", Options());
  ASSERT_TRUE(store);
  // Half of the fetched image, then epochs 16..20 as the writer commits
  // them, then the rest of the fetch, read before those commits: the newer
  // labels must win over it.
  const size_t half = parts.size() / 2;
  for (size_t i = 0; i < half; ++i) ASSERT_TRUE(store->InstallPages(parts[i].sealed).ok());
  Model m = at15;
  for (Epoch e = 16; e <= 20; ++e) {
    auto d = GenerateEpoch(kSeed, e);
    Status s = store->InstallPages(d.sealed);
    ASSERT_TRUE(s.ok()) << s.ToString();
    m.Apply(d.sealed);
  }
  for (size_t i = half; i < parts.size(); ++i) ASSERT_TRUE(store->InstallPages(parts[i].sealed).ok());
  EXPECT_EQ(store->image().epoch, 0u) << "nothing is visible before the closing record";
  ImageInfo im{0, 20, 1, kBase, kSize, m.hwm};
  Status s = store->InstallCommit(im);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(MatchesModel(*store, m));

  // Epochs continue from the installed one, and all of it survives a reopen.
  auto d21 = GenerateEpoch(kSeed, 21);
  ASSERT_TRUE(store->Persist(d21.sealed).ok());
  m.Apply(d21.sealed);
  EXPECT_TRUE(MatchesModel(*store, m));
  store.reset();
  store = OpenOrDie(dir.path(), "i", Options());
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, m));
  EXPECT_TRUE(store->Verify(nullptr).ok());
  ASSERT_TRUE(store->Compact().ok());
  EXPECT_TRUE(MatchesModel(*store, m));
}

TEST(StoreInstall, UnfinishedInstallLeavesTheStoreEmpty) {
  TempDir dir;
  const Model at9 = ModelAt(kSeed, 9);
  auto parts = ImageParts(at9, 9, 4);
  {
    auto store = OpenOrDie(dir.path(), "u", Options());
    ASSERT_TRUE(store);
    for (size_t i = 0; i + 1 < parts.size(); ++i) ASSERT_TRUE(store->InstallPages(parts[i].sealed).ok());
  }  // closed without the closing record, as a crash would leave it
  auto store = OpenOrDie(dir.path(), "u", Options());
  ASSERT_TRUE(store);
  EXPECT_EQ(store->image().epoch, 0u);
  EXPECT_TRUE(MatchesModel(*store, Model{}));
  // The install can start over and finish.
  for (auto& p : parts) ASSERT_TRUE(store->InstallPages(p.sealed).ok());
  ASSERT_TRUE(store->InstallCommit(ImageInfo{0, 9, 1, kBase, kSize, at9.hwm}).ok());
  store.reset();
  store = OpenOrDie(dir.path(), "u", Options());
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, at9));
}

TEST(StoreInstall, RefusedIntoAStoreThatHoldsEpochs) {
  TempDir dir;
  auto store = OpenOrDie(dir.path(), "r", Options());
  ASSERT_TRUE(store);
  auto d1 = GenerateEpoch(kSeed, 1);
  ASSERT_TRUE(store->Persist(d1.sealed).ok());
  auto part = GenerateEpoch(kSeed, 5);
  Status s = store->InstallPages(part.sealed);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("empty store"), std::string::npos) << s.ToString();
}

TEST(StoreInstall, CommitOlderThanAPartIsRefused) {
  TempDir dir;
  auto store = OpenOrDie(dir.path(), "o", Options());
  ASSERT_TRUE(store);
  auto part = GenerateEpoch(kSeed, 8);
  ASSERT_TRUE(store->InstallPages(part.sealed).ok());
  Status s = store->InstallCommit(ImageInfo{0, 7, 1, kBase, kSize, 64});
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
  EXPECT_EQ(store->image().epoch, 0u);
}

}  // namespace
}  // namespace pheap::testing
