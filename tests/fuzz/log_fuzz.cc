// libFuzzer target: the page store's log file scanner (ScanLogFile) on an
// arbitrary file. The scan must report damage through its Status and
// reporter, never crash, and never describe a page whose data lies outside
// the file.
//
// Random bytes rarely pass a block checksum, so the input is shaped (see
// Shape): the fuzzer then explores what the blocks say.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "base/log.h"
#include "store/log_file.h"

using namespace pheap;

namespace {
class NullReporter : public CorruptionReporter {
 public:
  void Corruption(const std::string&, uint64_t, const std::string&) override {}
};

// Odd first byte: a valid header, then blocks built from the input. Each
// block takes a selector byte (entry, commit, page data or raw), a length
// byte n, then n * 16 input bytes laid over the block after its magic; entry
// and commit blocks are sealed. Short inputs thus reach deep into the scan.
std::vector<uint8_t> Shape(const uint8_t* data, size_t size, HeapId* id) {
  std::vector<uint8_t> file;
  if (size == 0 || (data[0] & 1) == 0) {
    file.assign(data, data + size);
    if (size >= 24) std::memcpy(id, data + 16, 8);
    return file;
  }
  LogFileInfo info;
  info.number = 1;
  info.base_image = ImageInfo{logfmt::HeapIdOf("f", 1), 0, 0, uint64_t{0x3000} << 32, 1 << 20, 0};
  *id = info.base_image.heap_id;
  logfmt::FileHeader h = MakeFileHeader("f", info);
  file.resize(sizeof(h));
  std::memcpy(file.data(), &h, sizeof(h));
  size_t at = 1;
  while (size - at >= 2 && file.size() < (64u << 10)) {
    const uint8_t kind = data[at] % 4;
    const size_t n = std::min<size_t>(size_t{data[at + 1]} * 16, size - at - 2);
    at += 2;
    const size_t off = file.size();
    file.resize(off + logfmt::kBlockSize);
    uint8_t* block = file.data() + off;
    const uint64_t magic = kind == 0 ? logfmt::kEntryMagic : logfmt::kCommitMagic;
    const size_t skip = kind <= 1 ? 8 : 0;
    if (kind <= 1) std::memcpy(block, &magic, 8);
    std::memcpy(block + skip, data + at, std::min(n, logfmt::kBlockSize - 8 - skip));
    at += n;
    if (kind <= 1) {
      uint64_t sum = logfmt::BlockChecksum(block);
      std::memcpy(block + logfmt::kBlockSize - 8, &sum, 8);
    }
  }
  return file;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const int fd = [] {
    SetLogLevel(LogLevel::kError);
    return memfd_create("log_fuzz", MFD_CLOEXEC);
  }();
  if (fd < 0 || ftruncate(fd, 0) != 0) return 0;
  HeapId id = 0;
  std::vector<uint8_t> file = Shape(data, size, &id);
  if (!file.empty() && pwrite(fd, file.data(), file.size(), 0) != static_cast<ssize_t>(file.size())) return 0;
  NullReporter reporter;
  ScannedFile out;
  Status s = ScanLogFile(fd, "log-00000001.pheap", 1, id, &reporter, &out);
  if (!s.ok()) return 0;
  for (const ScannedGroup& g : out.groups)
    for (const ScannedPage& p : g.pages)
      if (p.offset > file.size() || file.size() - p.offset < kPageSize) __builtin_trap();
  return 0;
}
