// Checking mode (AllocatorOptions::checking). Every block gets a CheckPad in
// its last 8 bytes and up to kCheckFillMax fill bytes after the request;
// Free verifies both, and recognises a second free of the same block by the
// freed tag left in the pad. Free-list heads are validated on every
// allocation, whole lists by Verify().
#include <fmt/format.h>

#include <cstdlib>
#include <cstring>

#include "base/log.h"
#include "heap/alloc_internal.h"
#include "heap/allocator.h"

namespace pheap {

using namespace alloc;

namespace {

uint32_t Canary(const void* p) {
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(p) >> 3) ^ 0x5ca1ab1eu;
}
uint32_t FreedTag(const void* p) { return ~Canary(p); }

}  // namespace

size_t Allocator::RequestedSize(const uint8_t* begin, size_t size) {
  CheckPad pad;
  memcpy(&pad, begin + size - kCheckPadSize, sizeof(pad));
  return pad.slack <= size - kCheckPadSize ? size - kCheckPadSize - pad.slack : 0;
}

void Allocator::ReportCorruption(const char* what, const void* p, size_t block_size) {
  std::atomic_ref<uint64_t>(hdr_->corruptions).fetch_add(1, std::memory_order_relaxed);
  PHEAP_LOG_ERROR("allocator check: {} (block {}, block size {})", what, p, block_size);
  if (checking_ && abort_on_corruption_) abort();
}

bool Allocator::CheckFreeHead(PageDesc* pg) {
  Block* b = pg->free;
  if (b == nullptr) return true;
  uintptr_t start = reinterpret_cast<uintptr_t>(PageStart(pg));
  uintptr_t a = reinterpret_cast<uintptr_t>(b);
  if (a >= start && a - start < size_t{pg->reserved} * pg->block_size &&
      (a - start) % pg->block_size == 0) {
    return true;
  }
  ReportCorruption("free list of a heap page points outside it or off a block boundary "
                   "(a freed block was written to); dropping the rest of the list",
                   b, pg->block_size);
  pg->free = nullptr;
  return false;
}

void* Allocator::MallocChecked(size_t n, size_t align) {
  size_t need = n + kCheckPadSize;
  if (need < n) return nullptr;
  if (need > 16) need = RoundUp(need, 16);  // keeps 16-byte alignment for n >= 16
  void* p = AllocGeneric(need, align, nullptr);
  if (p == nullptr) return nullptr;
  uint8_t* begin = nullptr;
  size_t size = 0;
  Extent(p, &begin, &size);
  if (SegInfo(SegIndex(reinterpret_cast<uintptr_t>(p))) == kSegPages) {
    PageDesc* pg = PageOf(p);
    if (pg->kind.load(std::memory_order_relaxed) == kPageSmall) CheckFreeHead(pg);
  }
  uint8_t* pad_at = begin + size - kCheckPadSize;
  uint8_t* req_end = static_cast<uint8_t*>(p) + n;
  size_t slack = static_cast<size_t>(pad_at - req_end);
  memset(req_end, kCheckFill, slack < kCheckFillMax ? slack : kCheckFillMax);
  CheckPad pad{Canary(p), static_cast<uint32_t>(slack > UINT32_MAX ? UINT32_MAX : slack)};
  memcpy(pad_at, &pad, sizeof(pad));
  return p;
}

void Allocator::FreeChecked(void* p) {
  uint8_t* begin = nullptr;
  size_t size = 0;
  if (!Extent(p, &begin, &size)) {
    ReportCorruption("free of a pointer that is no live block of this arena (a large or huge "
                     "object freed twice, or a foreign pointer)", p, 0);
    return;
  }
  if (begin != p) {
    ReportCorruption("free of a pointer into the middle of a block", p, size);
    return;
  }
  uint8_t* pad_at = begin + size - kCheckPadSize;
  CheckPad pad;
  memcpy(&pad, pad_at, sizeof(pad));
  if (pad.canary == FreedTag(p)) {
    ReportCorruption("double free", p, size);
    return;
  }
  if (pad.canary != Canary(p) || pad.slack > size - kCheckPadSize) {
    ReportCorruption("the canary at the end of the block was overwritten (a write past the "
                     "end of the block), or the block was never allocated", p, size);
    return;
  }
  uint8_t* req_end = pad_at - pad.slack;
  size_t fill = pad.slack < kCheckFillMax ? pad.slack : kCheckFillMax;
  for (size_t i = 0; i < fill; ++i) {
    if (req_end[i] != kCheckFill) {
      char what[160];
      auto r = fmt::format_to_n(what, sizeof(what) - 1,
                                "write past the end: byte {} after the {} requested bytes "
                                "was changed", i, static_cast<size_t>(req_end - begin));
      *r.out = '\0';
      ReportCorruption(what, p, size);
      return;
    }
  }
  pad.canary = FreedTag(p);
  memcpy(pad_at, &pad, sizeof(pad));
  FreeImpl(p, id_);
}

}  // namespace pheap
