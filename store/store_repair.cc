// Repairing a damaged stored page in place with a good copy from elsewhere.
//
// The good copy must hash to the checksum the store recorded when the page
// was written, so the rewrite puts back exactly the bytes first written:
// the log file becomes byte-identical to what it was, and no record, index
// entry or epoch changes. A crash mid-rewrite leaves bytes that still fail
// their checksum, which is what they did before.
#include <fcntl.h>
#include <fmt/format.h>

#include <mutex>
#include <vector>

#include "base/log.h"
#include "base/os.h"
#include "store/page_store_impl.h"

namespace pheap {

using logfmt::PageChecksum;

Status PageStore::RepairPage(Pgno pgno, const uint8_t* data) { return impl_->RepairPage(pgno, data); }

Status PageStore::Impl::RepairPage(Pgno pgno, const uint8_t* data) {
  if (options_.read_only)
    return Status::InvalidArgument(fmt::format("heap store {} is open read-only: open it for writing to repair", path_));
  const uint64_t sum = PageChecksum(data);
  // Shared: readers go on; Compact cannot switch the index to another file
  // (nor delete this one) until the rewrite is done.
  std::shared_lock lock(mu_);
  const Slot s = pgno < std::min<Pgno>(image_.hwm, index_.size()) ? index_[pgno] : Slot{};
  if (s.state != Slot::kPage)
    return Status::InvalidArgument(
        fmt::format("heap '{}': page {} has no stored version to repair (absent or trimmed)", name_, pgno));
  if (s.checksum != sum)
    return Status::InvalidArgument(fmt::format(
        "heap '{}': the copy given for page {} hashes to {:016x}, the stored version of epoch {} to {:016x}: it is "
        "another version of the page, not a repair",
        name_, pgno, sum, s.epoch, s.checksum));
  const LogFile& f = *files_.at(s.file);
  std::vector<uint8_t> now(kPageSize);
  if (ReadFull(f.fd, now.data(), kPageSize, s.offset) == static_cast<ssize_t>(kPageSize) &&
      PageChecksum(now.data()) == s.checksum)
    return Status::Ok();  // already good: nothing to write
  // Sealed log files are held open read-only: write through a fd of our own.
  int fd = os().open(f.path.c_str(), O_WRONLY | O_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno(fmt::format("opening {} to repair page {}", f.path, pgno), -fd);
  ssize_t w = os().pwrite(fd, data, kPageSize, static_cast<off_t>(s.offset));
  int synced = w == static_cast<ssize_t>(kPageSize) ? os().fdatasync(fd) : 0;
  os().close(fd);
  if (w < 0) return Status::FromErrno(fmt::format("rewriting page {} in {} at offset {}", pgno, f.path, s.offset), static_cast<int>(-w));
  if (w != static_cast<ssize_t>(kPageSize))
    return Status::IoError(fmt::format("rewriting page {} in {} at offset {}: short write", pgno, f.path, s.offset), EIO);
  if (synced < 0) return Status::FromErrno(fmt::format("syncing the repair of page {} in {}", pgno, f.path), -synced);
  PHEAP_LOG_INFO("heap '{}': repaired page {} (epoch {}) in {} at offset {}", name_, pgno, s.epoch, f.path, s.offset);
  return Status::Ok();
}

}  // namespace pheap
