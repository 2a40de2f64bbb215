// A heap's durable image read from its store without mapping the region
// (so without the writer's lock, and from a process that runs no heap): the
// roots in the superblock's pages, what the allocator's metadata says of
// the arena, and the bytes at any address of the region. heap/ owns the
// superblock's and the arena's layouts; readers outside it (pheap inspect,
// the preload statistics) go through this and never parse them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "store/page_store.h"

namespace pheap {

// A root as of the image: its name, the type it was stored with (a
// mangled C++ type name, or empty), its address, and the usable bytes of
// the block there (0 if the allocator holds no block at that address).
struct StoredRoot {
  std::string name, type;
  uint64_t address = 0;
  uint64_t size = 0;
};

// What the superblock says of the heap and of its last writer.
struct StoredHeapFacts {
  uint64_t opens = 0;       // processes that opened it for writing
  bool holds_code = false;  // its code identity is checked at open
  std::string build_id;     // of the last writer's executable, hex
  std::string exe;          // that executable's path
  bool aslr_disabled = false;
  std::string tracking;  // its dirty-tracking mode; empty where not recorded
};

// What a range of the region holds, by the allocator's metadata. The words
// (heap page, size class, large, huge, thread heap) are heap/alloc_types.h's.
enum class PageUse : uint8_t {
  kSlack = 0,      // held by no one and never written: alignment, the rest
                   // of a segment's header slot, a huge object's tail
  kSuperblock,     // the heap's own header: format, writer, roots
  kAllocatorMeta,  // the arena header and table, a segment's header
  kSmall,          // a heap page: blocks of one size class
  kLarge,          // a large object: a run of slots
  kHuge,           // a huge object: a run of segments
  kFree,           // free slots and segments, ready for allocation
};

// The word for a use in text and JSON: "slack", "superblock",
// "allocator-meta", "small", "large", "huge", "free".
const char* PageUseName(PageUse use);

// One extent of the region as the allocator's metadata describes it.
struct StoredExtent {
  uint64_t address = 0, bytes = 0;
  PageUse use = PageUse::kSlack;
  // kSmall: its size class, blocks out (as the page counts them), blocks
  // ever linked into its free lists, blocks that fit, and the thread heap
  // owning it (-1: abandoned).
  unsigned bin = 0;
  uint64_t block_size = 0, live_blocks = 0, capacity = 0, reserved = 0;
  int thread_heap = -1;
};

// Blocks of one size class, over every heap page of it.
struct StoredSizeClass {
  unsigned bin = 0;
  uint64_t block_size = 0, heap_pages = 0, live_blocks = 0, free_blocks = 0;
};

// The allocator as of the image. Live means handed out and not freed, as
// the metadata counts it (a block freed by another thread counts until its
// page collects it).
struct StoredAllocatorFacts {
  uint64_t arena_base = 0, arena_bytes = 0;
  uint64_t segments = 0;       // in the arena
  uint64_t segments_used = 0;  // ever used (below the arena's high-water mark)
  uint64_t live_bytes = 0, live_blocks = 0;
  // Free below the high-water mark: blocks of heap pages not out, free
  // slots and free segments; untouched: the segments past it.
  uint64_t free_bytes = 0, untouched_bytes = 0;
  // Heap pages, large runs and huge objects' segments: what live data
  // keeps from other uses; and the segments taken from the arena.
  uint64_t used_bytes = 0, reserved_bytes = 0;
  double fragmentation = 0;  // used_bytes / live_bytes (0 when nothing lives)
  // The longest free range (slots of one segment, or free and untouched
  // segments in a row): the largest object that fits without growing.
  uint64_t largest_free_run = 0, largest_free_address = 0;
  std::vector<StoredSizeClass> size_classes;  // bins holding a heap page
  uint64_t large_objects = 0, large_bytes = 0;
  uint64_t huge_objects = 0, huge_bytes = 0;
  // Thread heaps: those of the last incarnation (the writer's, when one
  // runs), those left by earlier ones, and the heap pages they own; heap
  // pages with no owner; pages ever reclaimed from a dead owner.
  uint64_t incarnation = 0, thread_heaps_live = 0, thread_heaps_earlier = 0;
  uint64_t owned_pages = 0, abandoned_pages = 0, reclaimed_pages = 0;
  uint64_t damaged_descs = 0;  // heap page descs recovery would not trust
  uint64_t corruptions = 0;    // reported by checking mode
};

// The region's pages [0, pages) by use, and the extents they belong to.
struct StoredPageMap {
  std::vector<PageUse> use;           // by pgno
  std::vector<uint8_t> bin;           // by pgno: a kSmall page's size class
  std::vector<StoredExtent> extents;  // by address, covering [base, base + pages * kPageSize)
};

class StoredImage {
 public:
  // Reads the superblock of `store`'s durable image. REQUIRES: store
  // outlives the returned object. NotFound if the heap has no durable
  // epoch; Corruption if page 0 holds no pheap superblock.
  static Result<std::unique_ptr<StoredImage>> Open(PageStore& store);
  // The same, as of the earlier epoch `epoch` (PageStore::ImageAt: its
  // errors name the epochs that can be read). The result may outlive store.
  static Result<std::unique_ptr<StoredImage>> OpenAt(const PageStore& store, Epoch epoch);
  // The same over any source of the image `image` (a heap's replicas, read
  // without a local store). REQUIRES: source outlives the returned object.
  static Result<std::unique_ptr<StoredImage>> OpenSource(PageSource& source, const ImageInfo& image);
  StoredImage(const StoredImage&) = delete;
  StoredImage& operator=(const StoredImage&) = delete;
  ~StoredImage();

  // The address stored under root `name` as of the image (whatever its
  // type), or NotFound.
  Result<uint64_t> Root(const std::string& name) const;
  // Every root, in name order.
  std::vector<StoredRoot> Roots() const;
  StoredHeapFacts Facts() const;
  // The allocator's metadata summed up. NotFound if the arena was never
  // formatted; Corruption if its header does not describe this region.
  Result<StoredAllocatorFacts> AllocatorFacts() const;
  // What each of the pages [0, pages) holds. Errors as AllocatorFacts.
  // REQUIRES: pages <= the region's pages.
  Result<StoredPageMap> PageMap(uint64_t pages) const;
  // Usable bytes of the block holding addr, from addr on (as
  // Allocator::UsableSize); 0 if no live block holds it.
  Result<uint64_t> UsableSize(uint64_t addr) const;
  // Copies len bytes of the region from address addr into out (a page the
  // store never held reads as zeros). Corruption if [addr, addr + len)
  // lies outside the region.
  Status Read(uint64_t addr, void* out, size_t len) const;

 private:
  StoredImage(PageSource* source, const ImageInfo& image, std::unique_ptr<EpochImage> owned,
              std::unique_ptr<uint8_t, void (*)(void*)> sb);
  static Result<std::unique_ptr<StoredImage>> FromSource(PageSource* source, const ImageInfo& image,
                                                         std::unique_ptr<EpochImage> owned);
  PageSource* source_;
  ImageInfo image_;
  std::unique_ptr<EpochImage> owned_;             // OpenAt: the source
  std::unique_ptr<uint8_t, void (*)(void*)> sb_;  // the superblock's pages
};

}  // namespace pheap
