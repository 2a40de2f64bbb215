// A heap's durable image read from its store without mapping the region
// (so without the writer's lock, and from a process that runs no heap): the
// roots in the superblock's pages, and the bytes at any address of the
// region. heap/ owns the superblock's layout; readers outside it (pheap
// inspect, the preload statistics) go through this and never parse it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "store/page_store.h"

namespace pheap {

// A root as of the image: its name, the type it was stored with (a
// mangled C++ type name, or empty), and its address.
struct StoredRoot {
  std::string name, type;
  uint64_t address = 0;
};

// What the superblock says of the heap and of its last writer.
struct StoredHeapFacts {
  uint64_t opens = 0;       // processes that opened it for writing
  bool holds_code = false;  // its code identity is checked at open
  std::string build_id;     // of the last writer's executable, hex
  std::string exe;          // that executable's path
  bool aslr_disabled = false;
};

class StoredImage {
 public:
  // Reads the superblock of `store`'s durable image. REQUIRES: store
  // outlives the returned object. NotFound if the heap has no durable
  // epoch; Corruption if page 0 holds no pheap superblock.
  static Result<std::unique_ptr<StoredImage>> Open(PageStore& store);
  StoredImage(const StoredImage&) = delete;
  StoredImage& operator=(const StoredImage&) = delete;
  ~StoredImage();

  // The address stored under root `name` as of the image (whatever its
  // type), or NotFound.
  Result<uint64_t> Root(const std::string& name) const;
  // Every root, in name order.
  std::vector<StoredRoot> Roots() const;
  StoredHeapFacts Facts() const;
  // Copies len bytes of the region from address addr into out (a page the
  // store never held reads as zeros). Corruption if [addr, addr + len)
  // lies outside the region.
  Status Read(uint64_t addr, void* out, size_t len) const;

 private:
  StoredImage(PageStore* store, std::unique_ptr<uint8_t, void (*)(void*)> sb);
  PageStore* store_;
  ImageInfo image_;
  std::unique_ptr<uint8_t, void (*)(void*)> sb_;  // the superblock's pages
};

}  // namespace pheap
