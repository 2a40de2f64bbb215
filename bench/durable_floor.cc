// durable_floor: the least that making a new heap durable costs on this
// machine, without pheap: the baseline preload_bench sets beside a program
// that ran on a persistent heap. For each BYTES argument (one per heap the
// program's processes made), a new directory DIR/heap-PID-N receives a new
// file, BYTES of pages written to it in 1 MiB writes (with O_DIRECT from
// 1 MiB up, as pheap's store writes a commit), one fdatasync; then the new
// directory and DIR are fsynced, as a heap's first commit makes its store's
// entries durable. Prints the seconds all of it took. Files are kept: the
// caller removes DIR (deleting files here would slow the next file
// creations it measures).
//
//   durable_floor DIR BYTES...
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "bench/bench_util.h"

namespace {

constexpr size_t kWrite = size_t{1} << 20;
constexpr size_t kPage = 4096;

bool SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  bool ok = fd >= 0 && ::fsync(fd) == 0;
  if (fd >= 0) ::close(fd);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: durable_floor DIR BYTES...\n");
    return 2;
  }
  const std::string dir = argv[1];
  auto* pages = static_cast<char*>(std::aligned_alloc(kPage, kWrite));
  for (size_t i = 0; i < kWrite; ++i) pages[i] = static_cast<char>(i * 131 + 7);  // no zero pages
  const uint64_t t0 = pheap::bench::NowNs();
  for (int i = 2; i < argc; ++i) {
    const size_t bytes = (std::strtoull(argv[i], nullptr, 10) + kPage - 1) / kPage * kPage;
    const std::string heap = dir + "/heap-" + std::to_string(::getpid()) + "-" + std::to_string(i - 1);
    if (::mkdir(heap.c_str(), 0755) != 0) {
      std::perror(heap.c_str());
      return 1;
    }
    pheap::bench::FrameFile f(heap + "/log", bytes >= kWrite, kWrite, /*keep=*/true);
    bool ok = f.ok();
    for (size_t done = 0; ok && done < bytes; done += kWrite) ok = f.Append(pages, std::min(kWrite, bytes - done));
    if (!ok || !f.Sync() || !SyncDir(heap) || !SyncDir(dir)) {
      std::perror(heap.c_str());
      return 1;
    }
  }
  std::printf("%.6f\n", static_cast<double>(pheap::bench::NowNs() - t0) / 1e9);
  std::free(pages);
  return 0;
}
