// Installing a whole image into a store (recovery from replicas into a new
// directory, or a replica brought to a writer's image): parts arrive with the epoch they were read at, epochs
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

// Installing over a store that holds an image (a replica brought to a
// writer's image): the store serves its own image until the closing record,
// a crash before that leaves it, and after it the installed image replaces
// every earlier file, also the ones a crash left behind.
TEST(StoreInstall, OverAnImageKeepsItUntilTheClosingRecord) {
  TempDir dir;
  constexpr uint64_t kOther = 505;  // the installing writer's workload
  const Model old = ModelAt(kSeed, 12);
  const Model at9 = ModelAt(kOther, 9);
  auto parts = ImageParts(at9, 9, 4);
  auto fill = [&](const std::string& name) {
    auto store = OpenOrDie(dir.path(), name, Options());
    for (Epoch e = 1; e <= 12; ++e) EXPECT_TRUE(store->Persist(GenerateEpoch(kSeed, e).sealed).ok());
    return store;
  };
  {
    auto store = fill("a");
    ASSERT_TRUE(store);
    for (size_t i = 0; i + 1 < parts.size(); ++i) ASSERT_TRUE(store->InstallPages(parts[i].sealed).ok());
    EXPECT_TRUE(MatchesModel(*store, old)) << "the store serves its image while an install runs";
    Status s = store->Persist(GenerateEpoch(kSeed, 13).sealed);
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << "no epoch goes in while an install is open";
  }  // closed without the closing record, as a crash would leave it
  {
    auto store = OpenOrDie(dir.path(), "a", Options());
    ASSERT_TRUE(store);
    EXPECT_TRUE(MatchesModel(*store, old)) << "an unfinished install leaves the image as it was";
    // An abandoned install lets epochs go on.
    ASSERT_TRUE(store->InstallPages(parts[0].sealed).ok());
    store->AbandonInstall();
    auto d13 = GenerateEpoch(kSeed, 13);
    ASSERT_TRUE(store->Persist(d13.sealed).ok());
    Model m = old;
    m.Apply(d13.sealed);
    EXPECT_TRUE(MatchesModel(*store, m));
  }

  // A finished install replaces the image, of a newer term and an older
  // epoch number, and its files.
  auto store = fill("b");
  ASSERT_TRUE(store);
  const std::string path = store->path();
  const std::string saved = dir.path() + "/saved";
  std::filesystem::create_directory(saved);
  for (const auto& f : LogFiles(path)) std::filesystem::copy(f, saved);
  for (auto& p : parts) ASSERT_TRUE(store->InstallPages(p.sealed).ok());
  Status s = store->InstallCommit(ImageInfo{0, 9, 2, kBase, kSize, at9.hwm});
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(MatchesModel(*store, at9));
  EXPECT_EQ(store->image().term, 2u);
  auto name = [](const std::string& f) { return std::filesystem::path(f).filename().string(); };
  for (const auto& f : LogFiles(saved))
    EXPECT_FALSE(std::filesystem::exists(path + "/" + name(f))) << f << " was replaced and must be gone";
  store.reset();
  // A crash after the closing record, before the old files were removed.
  for (const auto& f : LogFiles(saved)) std::filesystem::copy(f, path);
  store = OpenOrDie(dir.path(), "b", Options());
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, at9));
  for (const auto& f : LogFiles(saved)) EXPECT_FALSE(std::filesystem::exists(path + "/" + name(f))) << f;
  EXPECT_TRUE(store->Verify(nullptr).ok());
}

// An install file whose pages later epochs superseded is compacted away
// like a writer file: the compaction stands for its link of the chain, and
// the store reopens at its newest epoch.
TEST(StoreInstall, CompactedInstallFileKeepsTheChain) {
  TempDir dir;
  PageStoreOptions o = Options();
  o.log_file_bytes = 64 << 10;  // a new file every few epochs
  const Model at9 = ModelAt(kSeed, 9);
  Model m = at9;
  {
    auto store = OpenOrDie(dir.path(), "c", o);
    ASSERT_TRUE(store);
    for (auto& p : ImageParts(at9, 9, 4)) ASSERT_TRUE(store->InstallPages(p.sealed).ok());
    ASSERT_TRUE(store->InstallCommit(ImageInfo{0, 9, 1, kBase, kSize, at9.hwm}).ok());
    for (Epoch e = 10; e <= 40; ++e) {  // rewrite every page, so the install file holds none live
      std::vector<Pgno> all;
      for (Pgno p = 0; p < 64; ++p) all.push_back(p);
      auto d = MakeEpoch(e, all, 64);
      ASSERT_TRUE(store->Persist(d.sealed).ok());
      m.Apply(d.sealed);
    }
    const uint64_t before = store->stats().compactions;
    ASSERT_TRUE(store->Compact().ok());
    EXPECT_GT(store->stats().compactions, before) << "the install file was a source";
    EXPECT_TRUE(MatchesModel(*store, m));
  }
  auto store = OpenOrDie(dir.path(), "c", o);
  ASSERT_TRUE(store);
  EXPECT_TRUE(MatchesModel(*store, m));
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
