// libFuzzer target: the peer's message decoder on arbitrary frames.
// The first input byte says how many frames (0..4); each frame's length is
// the next 4 bytes (little-endian, cut to what is left), then its bytes.
// Decode must return a Status for anything; when it succeeds, every view it
// hands out must lie inside the frames (ASan checks the reads below). Every
// type is reachable: the type byte is part of the input (PAGES and REPAIR
// decode to Pages, INSTALL_PAGES to InstallPages).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "replication/wire.h"

using namespace pheap;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t nframes = data[0] % 5;
  size_t at = 1;
  // Copies, so each frame has its own allocation and ASan sees overreads.
  std::vector<std::vector<uint8_t>> frames;
  for (size_t i = 0; i < nframes; ++i) {
    uint32_t len = 0;
    if (size - at >= 4) {
      std::memcpy(&len, data + at, 4);
      at += 4;
    }
    len = static_cast<uint32_t>(std::min<size_t>(len, size - at));
    frames.emplace_back(data + at, data + at + len);
    at += len;
  }
  std::vector<std::span<const uint8_t>> spans;
  for (const auto& f : frames) spans.emplace_back(f.data(), f.size());
  wire::Message m;
  wire::ErrorCode code{};
  Status s = wire::Decode(spans, &m, &code);
  if (!s.ok()) {
    if (static_cast<uint16_t>(code) == 0 || static_cast<uint16_t>(code) > wire::kMaxErrorCode) __builtin_trap();
    return 0;
  }
  // Touch everything the views reach.
  volatile uint64_t sink = 0;
  if (const auto* p = std::get_if<wire::Pages>(&m.body)) {
    Pgno bad = 0;
    (void)wire::VerifyPages(*p, &bad);
    for (uint32_t i = 0; i < p->count; ++i) sink = sink + p->ref(i).pgno + p->page(i)[kPageSize - 1];
  } else if (const auto* r = std::get_if<wire::FetchReply>(&m.body)) {
    uint32_t k = 0;
    for (uint32_t i = 0; i < r->count; ++i)
      if (r->present(i)) {
        sink = sink + r->checksum(k) + r->data[uint64_t{k} * kPageSize + kPageSize - 1];
        ++k;
      }
    if (k != r->present_count) __builtin_trap();
  } else if (const auto* ip = std::get_if<wire::InstallPages>(&m.body)) {
    Pgno bad = 0;
    (void)wire::VerifyPages(ip->pages, &bad);
    for (uint32_t i = 0; i < ip->pages.count; ++i) sink = sink + ip->pages.ref(i).pgno + ip->pages.page(i)[kPageSize - 1];
    for (const Run& run : ip->discarded)
      if (run.count == 0) __builtin_trap();  // Decode must refuse empty runs
  } else if (const auto* h = std::get_if<wire::Hello>(&m.body)) {
    for (char c : h->name) sink = sink + static_cast<uint8_t>(c);
  } else if (const auto* e = std::get_if<wire::Error>(&m.body)) {
    for (char c : e->message) sink = sink + static_cast<uint8_t>(c);
  }
  return 0;
}
