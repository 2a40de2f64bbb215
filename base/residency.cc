#include "base/residency.h"

#include <fcntl.h>

#include <algorithm>
#include <string>

#include "base/os.h"
#include "base/types.h"

namespace pheap {

Result<std::vector<bool>> ResidentPages(long pid, uint64_t addr, uint64_t pages) {
  const std::string path = "/proc/" + std::to_string(pid) + "/pagemap";
  const int fd = os().open(path.c_str(), O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno("opening " + path, -fd);
  constexpr uint64_t kPresent = uint64_t{1} << 63;  // Documentation/admin-guide/mm/pagemap.rst
  constexpr uint64_t kChunk = 4096;                 // entries per read
  std::vector<bool> resident(pages, false);
  std::vector<uint64_t> entries(kChunk);
  Status status = Status::Ok();
  for (uint64_t done = 0; done < pages && status.ok();) {
    const uint64_t n = std::min(kChunk, pages - done);
    const auto off = static_cast<off_t>((addr / kPageSize + done) * sizeof(uint64_t));
    const ssize_t got = os().pread(fd, entries.data(), n * sizeof(uint64_t), off);
    if (got <= 0) {
      status = Status::FromErrno("reading " + path, got < 0 ? static_cast<int>(-got) : EIO);
      break;
    }
    const uint64_t m = static_cast<uint64_t>(got) / sizeof(uint64_t);
    for (uint64_t i = 0; i < m; ++i) resident[done + i] = (entries[i] & kPresent) != 0;
    done += m;
  }
  os().close(fd);
  if (!status.ok()) return status;
  return resident;
}

}  // namespace pheap
