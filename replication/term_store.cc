#include "replication/term_store.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <xxhash.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "base/os.h"

namespace pheap {
namespace {

constexpr uint64_t kTermMagic = 0x31304d5245544850ull;  // "PHTERM01"
constexpr uint32_t kTermVersion = 1;

struct TermFile {
  uint64_t magic;
  uint32_t version;
  uint32_t reserved0;
  uint64_t term;
  uint64_t claimant[2];
  uint8_t reserved[16];
  uint64_t checksum;  // XXH3-64 of bytes [0, 56)
};
static_assert(sizeof(TermFile) == 64 && offsetof(TermFile, checksum) == 56);

uint64_t Checksum(const TermFile& f) { return XXH3_64bits(&f, offsetof(TermFile, checksum)); }

// Writes all of `f` to `path` and fsyncs it.
Status WriteSynced(const std::string& path, const TermFile& f) {
  int fd = os().open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno("creating " + path, -fd);
  ssize_t w = os().pwrite(fd, &f, sizeof(f), 0);
  int s = w == static_cast<ssize_t>(sizeof(f)) ? os().fsync(fd) : (w < 0 ? static_cast<int>(w) : -EIO);
  os().close(fd);
  if (s < 0) return Status::FromErrno("writing " + path, -s);
  return Status::Ok();
}

}  // namespace

Result<TermStore> TermStore::Open(const std::string& dir) {
  TermStore ts(dir);
  const std::string path = dir + "/TERM";
  int fd = os().open(path.c_str(), O_RDONLY | O_CLOEXEC, 0);
  if (fd == -ENOENT) return ts;
  if (fd < 0) return Status::FromErrno("opening " + path, -fd);
  TermFile f{};
  ssize_t r = os().pread(fd, &f, sizeof(f), 0);
  os().close(fd);
  if (r < 0) return Status::FromErrno("reading " + path, static_cast<int>(-r));
  if (r != sizeof(f) || f.magic != kTermMagic || f.checksum != Checksum(f))
    return Status::Corruption(fmt::format("term promise file {} is damaged ({} bytes read); the promised term is unknown, "
                                          "so this peer cannot vote for the heap: restore the file or remove the heap's directory",
                                          path, r));
  if (f.version != kTermVersion)
    return Status::Unsupported(fmt::format("term promise file {} has version {}; this build reads version {}", path, f.version, kTermVersion));
  ts.promise_.term = f.term;
  ts.promise_.claimant[0] = f.claimant[0];
  ts.promise_.claimant[1] = f.claimant[1];
  return ts;
}

Status TermStore::Promise(const TermPromise& p) {
  int m = os().mkdir(dir_.c_str(), 0755);
  if (m < 0 && m != -EEXIST) return Status::FromErrno("creating heap directory " + dir_, -m);
  TermFile f{};
  f.magic = kTermMagic;
  f.version = kTermVersion;
  f.term = p.term;
  f.claimant[0] = p.claimant[0];
  f.claimant[1] = p.claimant[1];
  f.checksum = Checksum(f);
  const std::string path = dir_ + "/TERM";
  const std::string tmp = path + ".next";  // not ".tmp": the page store removes those
  PHEAP_RETURN_IF_ERROR(WriteSynced(tmp, f));
  if (int r = os().rename(tmp.c_str(), path.c_str()); r < 0) return Status::FromErrno("renaming " + tmp + " to " + path, -r);
  int dfd = os().open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
  if (dfd < 0) return Status::FromErrno("opening directory " + dir_, -dfd);
  int s = os().fsync(dfd);
  os().close(dfd);
  if (s < 0) return Status::FromErrno("syncing directory " + dir_, -s);
  promise_ = p;
  return Status::Ok();
}

}  // namespace pheap
