// StoredImage's view of the allocator (heap/stored_image.h): what a heap's
// store says of its blocks, read without mapping the heap, agrees with what
// the program allocated.
// The C interface beside pheap's own headers: its handle is pheap::handle.
#define PHEAP_CXX_API
#include <pheap/pheap.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "heap/stored_image.h"
#include "heap/superblock.h"
#include "store/page_store.h"
#include "tests/support/test_util.h"

namespace {

using pheap::PageUse;
using pheaptest::TempDir;

constexpr size_t kSmall = 48, kLarge = 300 << 10, kHuge = 6 << 20;

class StoredAllocator : public ::testing::Test {
 protected:
  void SetUp() override {
    pheap::handle* h = pheap_open("facts", dir_.config("", "64M").c_str());
    ASSERT_NE(h, nullptr) << pheap_last_error();
    for (int i = 0; i < 100; ++i) small_[i] = pheap_malloc(h, kSmall);
    for (int i = 0; i < 20; ++i) pheap_free(h, small_[99 - i]);
    for (void*& p : large_) p = pheap_malloc(h, kLarge);
    huge_ = pheap_malloc(h, kHuge);
    ASSERT_NE(huge_, nullptr);
    // Written, so that the image holds (and the map reaches) every object.
    for (void* p : large_) static_cast<char*>(p)[kLarge - 1] = 1;
    static_cast<char*>(huge_)[kHuge - 1] = 1;
    ASSERT_EQ(pheap_set_root(h, "small", small_[0]), 0);
    ASSERT_EQ(pheap_set_root(h, "large", large_[0]), 0);
    ASSERT_EQ(pheap_set_root(h, "huge", huge_), 0);
    ASSERT_GT(pheap_commit(h), 0) << pheap_last_error();
    ASSERT_EQ(pheap_close(h), 0);
    pheap::PageStoreOptions o;
    o.read_only = true;
    o.create_if_missing = false;
    auto store = pheap::PageStore::Open(dir_.path(), "facts", o);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    auto image = pheap::StoredImage::Open(*store_);
    ASSERT_TRUE(image.ok()) << image.status().ToString();
    image_ = std::move(*image);
  }
  static uint64_t A(const void* p) { return reinterpret_cast<uint64_t>(p); }

  TempDir dir_{"pheap-stored"};
  void* small_[100] = {};
  void* large_[3] = {};
  void* huge_ = nullptr;
  std::unique_ptr<pheap::PageStore> store_;
  std::unique_ptr<pheap::StoredImage> image_;
};

TEST_F(StoredAllocator, FactsCountWhatTheProgramHolds) {
  auto f = image_->AllocatorFacts();
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  auto cls = std::find_if(f->size_classes.begin(), f->size_classes.end(),
                          [](const pheap::StoredSizeClass& c) { return c.block_size == kSmall; });
  ASSERT_NE(cls, f->size_classes.end());
  EXPECT_EQ(cls->live_blocks, 80u);
  EXPECT_GE(cls->heap_pages, 1u);
  EXPECT_GT(cls->free_blocks, 0u);
  EXPECT_EQ(f->large_objects, 3u);
  EXPECT_EQ(f->huge_objects, 1u);
  EXPECT_GE(f->huge_bytes, kHuge);
  EXPECT_GE(f->live_bytes, 80 * kSmall + 3 * kLarge + kHuge);
  EXPECT_GE(f->live_blocks, 80u + 3 + 1);
  EXPECT_GE(f->used_bytes, f->live_bytes);
  EXPECT_GE(f->fragmentation, 1.0);
  EXPECT_GE(f->reserved_bytes, f->used_bytes);
  EXPECT_GT(f->free_bytes, 0u);
  EXPECT_GT(f->largest_free_run, 0u);
  EXPECT_LE(f->segments_used, f->segments);
  EXPECT_GE(f->incarnation, 1u);
  EXPECT_EQ(f->damaged_descs, 0u);
  EXPECT_EQ(f->owned_pages + f->abandoned_pages, [&] {
    uint64_t n = 0;
    for (const auto& c : f->size_classes) n += c.heap_pages;
    return n;
  }());
}

TEST_F(StoredAllocator, UsableSizeAndRootsAgreeWithTheAllocator) {
  EXPECT_EQ(*image_->UsableSize(A(small_[0])), kSmall);
  EXPECT_EQ(*image_->UsableSize(A(small_[0]) + 8), kSmall - 8);
  EXPECT_GE(*image_->UsableSize(A(large_[0])), kLarge);
  EXPECT_GE(*image_->UsableSize(A(huge_)), kHuge);
  EXPECT_EQ(*image_->UsableSize(store_->image().base), 0u);  // the superblock
  for (const pheap::StoredRoot& r : image_->Roots()) {
    auto want = image_->UsableSize(r.address);
    ASSERT_TRUE(want.ok());
    EXPECT_EQ(r.size, *want) << r.name;
    EXPECT_GT(r.size, 0u) << r.name;
  }
}

TEST_F(StoredAllocator, PageMapShowsEachPagesUse) {
  const pheap::ImageInfo im = store_->image();
  auto m = image_->PageMap(im.hwm);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_EQ(m->use.size(), im.hwm);
  ASSERT_EQ(m->bin.size(), im.hwm);
  auto page = [&](const void* p) { return (A(p) - im.base) / pheap::kPageSize; };
  EXPECT_EQ(m->use[0], PageUse::kSuperblock);
  EXPECT_EQ(m->use[pheap::kSuperblockSize / pheap::kPageSize], PageUse::kAllocatorMeta);
  EXPECT_EQ(m->use[page(small_[0])], PageUse::kSmall);
  EXPECT_NE(m->bin[page(small_[0])], 0);
  EXPECT_EQ(m->use[page(large_[0])], PageUse::kLarge);
  ASSERT_LT(page(huge_), im.hwm);
  EXPECT_EQ(m->use[page(huge_)], PageUse::kHuge);
  // The extents tile the pages in address order.
  uint64_t at = im.base;
  for (const pheap::StoredExtent& e : m->extents) {
    EXPECT_EQ(e.address, at);
    at = e.address + e.bytes;
  }
  EXPECT_EQ(at, im.base + im.hwm * pheap::kPageSize);
}

}  // namespace
