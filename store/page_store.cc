#include "store/page_store.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "base/log.h"
#include "base/os.h"
#include "store/page_store_impl.h"

namespace pheap {

using namespace logfmt;

LogFile::~LogFile() {
  if (const uint8_t* v = view.load(); v != nullptr) os().munmap(const_cast<uint8_t*>(v), view_bytes);
  if (fd >= 0) os().close(fd);
  if (direct_fd >= 0) os().close(direct_fd);
  if (const int d = direct_read_fd.load(); d >= 0) os().close(d);
}

// ---- public face ----

Status PageStore::ValidateHeapName(const std::string& name) {
  if (name.empty()) return Status::InvalidArgument("heap name is empty: give the heap a name");
  if (name.size() > kMaxHeapNameLength)
    return Status::InvalidArgument(
        fmt::format("heap name '{}...' is {} bytes long; the limit is {}: choose a shorter name", name.substr(0, 32),
                    name.size(), kMaxHeapNameLength));
  if (name == "." || name == "..")
    return Status::InvalidArgument(fmt::format("heap name '{}' names a directory: choose another name", name));
  for (char c : name) {
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok)
      return Status::InvalidArgument(
          fmt::format("heap name '{}' contains '{}'; a heap name uses only A-Z a-z 0-9 . _ -", name,
                      c == '/' ? std::string("/") : fmt::format("\\x{:02x}", static_cast<unsigned char>(c))));
  }
  return Status::Ok();
}

Result<std::unique_ptr<PageStore>> PageStore::Open(const std::string& dir, const std::string& name,
                                                   const PageStoreOptions& options, CorruptionReporter* reporter) {
  PHEAP_RETURN_IF_ERROR(ValidateHeapName(name));
  auto impl = std::make_unique<Impl>(dir, name, options, reporter);
  Status s = impl->Open();
  if (!s.ok()) {
    // A store this open created is not left behind to shape the next one.
    if (auto r = impl->RemoveIfCreated(); !r.ok()) PHEAP_LOG_WARN("{}; remove it by hand", r.status().ToString());
    return s;
  }
  return std::unique_ptr<PageStore>(new PageStore(std::move(impl)));
}

long PageStore::Holder(const std::string& dir, const std::string& name) {
  if (!ValidateHeapName(name).ok()) return 0;
  struct stat st;
  if (::stat((dir + "/" + name + "/LOCK").c_str(), &st) != 0) return 0;
  // "1: FLOCK  ADVISORY  WRITE 4242 00:2d:1234 0 EOF"; a waiter's line has "->".
  const std::string file = fmt::format("{:02x}:{:02x}:{}", major(st.st_dev), minor(st.st_dev), st.st_ino);
  FILE* locks = std::fopen("/proc/locks", "re");
  if (locks == nullptr) return 0;
  long holder = 0;
  char line[256];
  while (holder == 0 && std::fgets(line, sizeof(line), locks) != nullptr) {
    char kind[16], mode[16], access[16], id[64];
    long pid;
    if (std::strstr(line, "->") == nullptr &&
        std::sscanf(line, "%*d: %15s %15s %15s %ld %63s", kind, mode, access, &pid, id) == 5 &&
        std::strcmp(kind, "FLOCK") == 0 && file == id)
      holder = pid;
  }
  std::fclose(locks);
  return holder;
}

std::string PageStore::SetAsideName(const std::string& path, std::string_view mark, const std::string& detail) {
  const std::string first = path + std::string(mark) + detail;
  std::string aside = first;
  for (int n = 2; ::access(aside.c_str(), F_OK) == 0; ++n) aside = fmt::format("{}.{}", first, n);
  return aside;
}

bool PageStore::IsSetAside(const std::string& name) {
  return name.find(kStaleEpochMark) != std::string::npos || name.find(kDamagedMark) != std::string::npos;
}

Status PageStore::Remove(const std::string& dir, const std::string& name) {
  PHEAP_RETURN_IF_ERROR(ValidateHeapName(name));
  Impl impl(dir, name, PageStoreOptions{}, nullptr);
  std::error_code ec;
  if (!std::filesystem::is_directory(impl.path(), ec))
    return Status::NotFound(fmt::format("no heap store at {}: check the dir and the heap name", impl.path()));
  PHEAP_RETURN_IF_ERROR(impl.Lock());
  return impl.RemoveDirectory();
}

Result<bool> PageStore::RemoveIfCreated() { return impl_->RemoveIfCreated(); }

Status PageStore::Impl::RemoveDirectory() {
  const std::string parent = path_.substr(0, path_.size() - name_.size() - 1);
  const std::string aside = fmt::format("{}/.{}.removed-{}", parent, name_, ::getpid());
  if (int r = os().rename(path_.c_str(), aside.c_str()); r < 0)
    return Status::FromErrno(fmt::format("removing heap store {} (renaming it to {})", path_, aside), -r);
  PHEAP_RETURN_IF_ERROR(SyncDirectory(parent));
  std::error_code ec;
  std::filesystem::remove_all(aside, ec);
  if (ec)
    return Status::IoError(fmt::format("removing {}: {} (the heap is gone and no open looks at it; remove it by hand)",
                                       aside, ec.message()),
                           ec.value());
  return Status::Ok();
}

Result<bool> PageStore::Impl::RemoveIfCreated() {
  if (!created_ || !locked_ || options_.read_only) return false;
  {
    std::shared_lock lock(mu_);
    if (image_.epoch != 0 || install_ != nullptr) return false;
  }
  PHEAP_RETURN_IF_ERROR(RemoveDirectory());
  created_ = false;
  PHEAP_LOG_INFO("heap store {}: removed: the open that created it failed", path_);
  return true;
}

PageStore::PageStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PageStore::~PageStore() = default;
ImageInfo PageStore::image() const { return impl_->image(); }
const std::string& PageStore::path() const { return impl_->path(); }
bool PageStore::created() const { return impl_->created(); }
Status PageStore::ReadRun(Pgno first, uint32_t count, uint8_t* out, uint64_t* present) {
  return impl_->ReadRun(first, count, out, present);
}
PageStore::StoredRun PageStore::LocateRun(Pgno first, uint64_t count) { return impl_->LocateRun(first, count); }
void PageStore::WillNeed(Pgno first, uint64_t count) { impl_->WillNeed(first, count); }
Status PageStore::Persist(const SealedEpoch& e) { return impl_->Persist(e); }
Status PageStore::Write(const SealedEpoch& e) { return impl_->Write(e); }
Status PageStore::Sync(uint64_t pause_ns) { return impl_->Sync(pause_ns); }
Status PageStore::InstallPages(const SealedEpoch& part) { return impl_->InstallPages(part); }
Status PageStore::InstallCommit(const ImageInfo& image) { return impl_->InstallCommit(image); }
void PageStore::AbandonInstall() { impl_->AbandonInstall(); }
Status PageStore::Compact() { return impl_->Compact(); }
bool PageStore::CompactionDue() const { return impl_->CompactionDue(); }
Status PageStore::Verify(CorruptionReporter* reporter) { return impl_->Verify(reporter); }
PageStoreStats PageStore::stats() const { return impl_->stats(); }
std::vector<Epoch> PageStore::PageEpochs(Pgno first, uint64_t count) const { return impl_->PageEpochs(first, count); }

// ---- opening ----

namespace {

// `dir` made absolute: the store opens its files and directories by name
// long after its open (a new log file, a directory sync), and a program may
// change its working directory meanwhile (git -C does, under the preload
// library). As given if the working directory cannot be read.
std::string AbsoluteDir(std::string dir) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(dir, ec);
  if (ec) return dir;
  std::string out = p.lexically_normal().string();
  if (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

}  // namespace

PageStore::Impl::Impl(std::string dir, std::string name, const PageStoreOptions& options, CorruptionReporter* reporter)
    : dir_(AbsoluteDir(std::move(dir))),
      name_(std::move(name)),
      path_(dir_ + "/" + name_),
      heap_id_(HeapIdOf(name_.data(), name_.size())),
      options_(options),
      reporter_(reporter) {}

namespace {

// A writer's flock belongs to the open file, which fork shares with the
// child: a child that outlived its parent would keep the store locked, and
// the next opener would be told of a holder that is gone. So in a fork
// child each store lock descriptor is pointed at /dev/null (closed again,
// harmlessly, if the child destroys the store), and the lock stays with
// the parent alone. Stores past kMaxLocks open at once stay shared.
constexpr int kMaxLocks = 64;
std::atomic<int> g_lock_fds[kMaxLocks];  // fd + 1; 0 for a free slot

void DropLocksInChild() {
  for (auto& slot : g_lock_fds) {
    const int fd = slot.load(std::memory_order_relaxed) - 1;
    if (fd < 0) continue;
    const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) continue;
    ::dup3(null_fd, fd, O_CLOEXEC);
    ::close(null_fd);
  }
}

void RegisterLock(int fd) {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(nullptr, nullptr, DropLocksInChild); });
  for (auto& slot : g_lock_fds) {
    int empty = 0;
    if (slot.compare_exchange_strong(empty, fd + 1)) return;
  }
}

// A no-op for a descriptor never registered (one that did not get the lock).
void UnregisterLock(int fd) {
  for (auto& slot : g_lock_fds) {
    int mine = fd + 1;
    if (slot.compare_exchange_strong(mine, 0)) return;
  }
}

constexpr int kExitedHolderWaitMs = 200;

// The pid the holder wrote into the LOCK file `fd`, 0 if unreadable.
long HolderPid(int fd) {
  char buf[32] = {};
  ssize_t n = ReadFull(fd, buf, sizeof(buf) - 1, 0);
  return n > 0 ? std::strtol(buf, nullptr, 10) : 0;
}

bool Exited(long pid) { return pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH; }

}  // namespace

PageStore::Impl::~Impl() {
  CloseActive();
  files_.clear();
  if (tail_fd_ >= 0) os().close(tail_fd_);
  if (lock_fd_ < 0) return;
  UnregisterLock(lock_fd_);
  os().close(lock_fd_);
}

namespace {

bool NotWritable(int err) { return err == EACCES || err == EROFS || err == EPERM; }

Status DirError(const std::string& what, const std::string& path, int err) {
  if (NotWritable(err))
    return Status::IoError(
        fmt::format(
            "heap store directory {} is not writable ({} failed: {}): choose a writable dir or fix its permissions",
            path, what, std::strerror(err)),
        err);
  return Status::IoError(fmt::format("cannot {} heap store directory {}: {}: check that the path names a directory",
                                     what, path, std::strerror(err)),
                         err);
}

}  // namespace

Status PageStore::Impl::MakeDirs() {
  for (const std::string& d : {dir_, path_}) {
    // mkdir -p: create each missing component in turn.
    for (size_t at = 1; at <= d.size(); ++at) {
      if (at != d.size() && d[at] != '/') continue;
      std::string part = d.substr(0, at);
      int r = os().mkdir(part.c_str(), 0755);
      if (r < 0 && r != -EEXIST) return DirError("create", part, -r);
      if (r == 0 && at == d.size() && d == path_) created_ = true;
      if (r == 0) {  // its entry in the parent is durable once the parent is synced (SyncDir)
        size_t slash = part.find_last_of('/');
        unsynced_parents_.push_back(slash == std::string::npos ? "." : slash == 0 ? "/" : part.substr(0, slash));
      }
    }
  }
  return Status::Ok();
}

Status PageStore::Impl::Lock() {
  std::string lock_path = path_ + "/LOCK";
  int fd = os().open(lock_path.c_str(), O_RDWR | O_CREAT, 0644);
  if (fd < 0) return DirError("create LOCK in", path_, -fd);
  lock_fd_ = fd;
  int r = os().flock(fd, LOCK_EX | LOCK_NB);
  // A holder that has exited may have left a child in the middle of fork,
  // which shares the lock until its fork handler lets go of it
  // (DropLocksInChild): give it a moment.
  long holder = r == -EWOULDBLOCK ? HolderPid(fd) : 0;
  for (int wait_ms = 0; r == -EWOULDBLOCK && Exited(holder) && wait_ms < kExitedHolderWaitMs; ++wait_ms) {
    ::usleep(1000);
    r = os().flock(fd, LOCK_EX | LOCK_NB);
    if (r == -EWOULDBLOCK) holder = HolderPid(fd);  // another opener may have taken it meanwhile
  }
  if (r == -EWOULDBLOCK)
    return Status::Busy(fmt::format("heap store {} is held by pid {}{}; stop that process or use another dir", path_,
                                    holder, Exited(holder) ? " (exited; a process it forked still holds it)" : ""));
  if (r < 0) return Status::FromErrno("locking " + lock_path, -r);
  RegisterLock(fd);
  locked_ = true;
  std::string pid = fmt::format("{}\n", ::getpid());
  if (int w = os().ftruncate(fd, 0); w < 0) return Status::FromErrno("writing " + lock_path, -w);
  if (int w = WriteFull(fd, pid.data(), pid.size(), 0); w < 0) return Status::FromErrno("writing " + lock_path, -w);
  return Status::Ok();
}

Status PageStore::Impl::SyncDir() {
  std::lock_guard l(dir_mu_);
  PHEAP_RETURN_IF_ERROR(SyncDirectory(path_));
  // Deepest first, each dropped once durable: a failure leaves the rest for
  // the next call.
  while (!unsynced_parents_.empty()) {
    PHEAP_RETURN_IF_ERROR(SyncDirectory(unsynced_parents_.back()));
    unsynced_parents_.pop_back();
  }
  return Status::Ok();
}

void PageStore::Impl::RecordTail(uint64_t file, const ImageInfo& im, uint64_t end, bool sync) {
  const std::string p = path_ + "/" + kTailFileName;
  if (tail_fd_ < 0) {
    if (tail_warned_) return;
    int fd = os().open(p.c_str(), O_RDWR | O_CREAT, 0644);
    if (fd < 0) {
      tail_warned_ = true;
      PHEAP_LOG_WARN("heap store {}: cannot open {}: {}; a loss of the newest log file's epochs may go unnoticed",
                     path_, p, std::strerror(-fd));
      return;
    }
    tail_fd_ = fd;
  }
  ImageInfo labeled = im;
  labeled.heap_id = heap_id_;
  const TailRecord t = MakeTailRecord(file, labeled, end);
  int r = WriteFull(tail_fd_, &t, sizeof(t), 0);
  if (r == 0 && sync) r = os().fsync(tail_fd_);
  if (r < 0 && !tail_warned_) {
    tail_warned_ = true;
    PHEAP_LOG_WARN("heap store {}: cannot write {}: {}; a loss of the newest log file's epochs may go unnoticed",
                   path_, p, std::strerror(-r));
  }
}

void PageStore::Impl::CloseActive() {
  if (active_ == nullptr || install_ != nullptr) return;
  // A file with no epoch holds nothing another file does not (its base
  // image is the newest image, which some other file records), unless it
  // is the store's only file (it records a new heap's region) or a salvage
  // began it (it marks the epochs after its base as given up).
  if (active_->last_epoch == active_->info.base_image.epoch) {
    if (files_.size() > 1 && !options_.salvage) Remove(active_->path, "session wrote no epoch");
    return;
  }
  // Zeros past the log; a crash before the truncation is durable leaves
  // them, which readers pass over.
  if (active_->padded_to > active_->end && os().ftruncate(active_->fd, static_cast<off_t>(active_->end)) == 0)
    active_->padded_to = active_->end;
}

void PageStore::Impl::Remove(const std::string& file, const char* why) {
  PHEAP_LOG_INFO("heap store {}: removing {} ({})", path_, file, why);
  int r = os().unlink(file.c_str());
  if (r < 0 && r != -ENOENT) PHEAP_LOG_WARN("heap store {}: cannot remove {}: {}", path_, file, std::strerror(-r));
}

Status PageStore::Impl::Open() {
  if (!options_.read_only && options_.create_if_missing) PHEAP_RETURN_IF_ERROR(MakeDirs());
  std::error_code ec;
  if (!std::filesystem::is_directory(path_, ec)) {
    if (options_.read_only || !options_.create_if_missing)
      return Status::NotFound(fmt::format("no heap store at {}: check the dir and the heap name", path_));
    return DirError("use", path_, ENOTDIR);
  }
  if (!options_.read_only) PHEAP_RETURN_IF_ERROR(Lock());
  PHEAP_RETURN_IF_ERROR(Recover());
  for (auto& [n, f] : files_) {
    struct stat st {};
    if (::fstat(f->fd, &st) == 0) f->size_at_open = static_cast<uint64_t>(st.st_size);
  }
  if (options_.read_only) return Status::Ok();
  // TAIL starts from what the log holds: behind it when an earlier session's
  // last record was lost, ahead of it after a salvage, which must then be
  // durable lest the next open report the same loss again.
  RecordTail(recovered_tail_.file_number, image_, recovered_tail_.end, /*sync=*/tail_ahead_);
  // Its syncs wait for the first commit: a process that opens its heap
  // and exits soon pays for them once, with its only epoch.
  auto f = CreateLogFile(FileKind::kWriter, image_, /*defer=*/true);
  if (!f.ok()) return f.status();
  active_ = f->get();
  std::unique_lock lock(mu_);
  files_.emplace(static_cast<uint32_t>(active_->info.number), std::move(f.value()));
  return Status::Ok();
}

Result<std::unique_ptr<LogFile>> PageStore::Impl::CreateLogFile(FileKind kind, const ImageInfo& base, bool defer) {
  auto f = std::make_unique<LogFile>();
  {
    // A number that fails to become a file is skipped: gaps are harmless.
    std::lock_guard l(number_mu_);
    f->info = LogFileInfo{next_file_number_++, kind, base};
  }
  f->info.base_image.heap_id = heap_id_;
  f->last_epoch = base.epoch;
  f->path = path_ + "/" + LogFileName(f->info.number);
  std::string tmp = f->path + ".tmp";
  int fd = os().open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return DirError("create a log file in", path_, -fd);
  f->fd = fd;
  FileHeader h = MakeFileHeader(name_, f->info);
  int r = WriteFull(fd, &h, sizeof(h), 0);
  if (r == 0 && !defer) r = os().fsync(fd);
  if (r == 0) r = os().rename(tmp.c_str(), f->path.c_str());
  if (r < 0) {
    os().unlink(tmp.c_str());
    return Status::FromErrno("creating log file " + f->path, -r);
  }
  if (!defer) PHEAP_RETURN_IF_ERROR(SyncDir());
  f->synced = !defer;
  f->end = kBlockSize;
  return f;
}

ImageInfo PageStore::Impl::image() const {
  std::shared_lock lock(mu_);
  return image_;
}

// ---- reading ----

std::string PageStore::Impl::PageError(Pgno pgno, const Slot& s, uint64_t got) const {
  auto f = files_.find(s.file);
  return fmt::format(
      "heap '{}' ({:016x}): page {} (epoch {}) in log file {} at offset {} fails its checksum "
      "(stored {:016x}, data {:016x}); the stored copy is damaged: fetch the page from a replica or restore the store",
      name_, heap_id_, pgno, s.epoch, f != files_.end() ? f->second->path : LogFileName(s.file), s.offset, s.checksum,
      got);
}

int PageStore::Impl::DirectReadFd(LogFile& f) {
  int fd = f.direct_read_fd.load(std::memory_order_acquire);
  if (fd >= 0) return fd;
  std::lock_guard lk(f.direct_read_mu);
  fd = f.direct_read_fd.load(std::memory_order_relaxed);
  if (fd >= 0 || f.direct_read_refused.load(std::memory_order_relaxed)) return fd;
  fd = os().open(f.path.c_str(), O_RDONLY | O_DIRECT, 0);
  if (fd < 0) {
    PHEAP_LOG_DEBUG("heap store {}: {} refuses O_DIRECT reads ({}); reading through the page cache", path_, f.path,
                    std::strerror(-fd));
    f.direct_read_refused.store(true, std::memory_order_relaxed);
    return -1;
  }
  f.direct_read_fd.store(fd, std::memory_order_release);
  return fd;
}

ssize_t PageStore::Impl::ReadPages(LogFile& f, uint8_t* dst, uint64_t bytes, uint64_t off) {
  const uint64_t direct_min = options_.direct_read_bytes;
  uint64_t cached = 0;
  const bool direct = direct_min != 0 && bytes >= direct_min &&
                      !f.direct_read_refused.load(std::memory_order_relaxed) &&
                      (reinterpret_cast<uintptr_t>(dst) & (kPageSize - 1)) == 0 && (off & (kPageSize - 1)) == 0 &&
                      os().cachestat(f.fd, off, bytes, &cached) == 0 && cached < bytes / kPageSize;
  if (const int fd = direct ? DirectReadFd(f) : -1; fd >= 0) {
    const ssize_t r = ReadFull(fd, dst, bytes, off);
    if (r != -EINVAL) return r;
    // The device wants another alignment than 4 KiB: say so once per file.
    if (!f.direct_read_refused.exchange(true))
      PHEAP_LOG_DEBUG("heap store {}: {} refuses O_DIRECT reads of 4 KiB-aligned pages; reading through the page cache",
                      path_, f.path);
  }
  return ReadFull(f.fd, dst, bytes, off);
}

uint32_t PageStore::Impl::ExtentPages(Pgno first, uint32_t max) const {
  const Pgno stored = std::min<Pgno>(image_.hwm, index_.size());
  const Slot& s0 = index_[first];
  uint32_t n = 1;
  while (n < max && first + n < stored) {
    const Slot& s = index_[first + n];
    if (s.state != Slot::kPage || s.file != s0.file || s.offset != s0.offset + uint64_t{n} * kPageSize) break;
    ++n;
  }
  return n;
}

void PageStore::Impl::WillNeed(Pgno first, uint64_t count) {
  std::shared_lock lock(mu_);
  const Pgno end = std::min<Pgno>({first + count, image_.hwm, index_.size()});
  for (Pgno pg = first; pg < end;) {
    if (index_[pg].state != Slot::kPage) {
      ++pg;
      continue;
    }
    const uint32_t n = ExtentPages(pg, static_cast<uint32_t>(std::min<uint64_t>(end - pg, UINT32_MAX)));
    // A hint: a failure costs only the reads it would have started.
    os().fadvise(files_.at(index_[pg].file)->fd, index_[pg].offset, uint64_t{n} * kPageSize, POSIX_FADV_WILLNEED);
    pg += n;
  }
}

Status PageStore::Impl::ReadRun(Pgno first, uint32_t count, uint8_t* out, uint64_t* present) {
  if (present != nullptr) std::memset(present, 0, ((count + 63) / 64) * sizeof(uint64_t));
  std::shared_lock lock(mu_);
  const Pgno stored = std::min<Pgno>(image_.hwm, index_.size());
  uint32_t i = 0;
  while (i < count) {
    const Pgno pg = first + i;
    if (pg >= stored || index_[pg].state != Slot::kPage) {
      std::memset(out + uint64_t{i} * kPageSize, 0, kPageSize);
      ++i;
      continue;
    }
    // Pages that lie one after another in one file come in one pread.
    const Slot& s0 = index_[pg];
    const uint32_t n = ExtentPages(pg, count - i);
    uint8_t* dst = out + uint64_t{i} * kPageSize;
    LogFile& f = *files_.at(s0.file);
    ssize_t r = ReadPages(f, dst, uint64_t{n} * kPageSize, s0.offset);
    if (r < 0)
      return Status::FromErrno(
          fmt::format("reading page {} of heap '{}' from {} at offset {}", pg, name_, f.path, s0.offset),
          static_cast<int>(-r));
    if (static_cast<uint64_t>(r) < uint64_t{n} * kPageSize)
      return Status::Corruption(
          fmt::format("heap '{}': page {} in log file {} at offset {} lies past the end of the file; restore the store",
                      name_, pg + static_cast<uint64_t>(r) / kPageSize, f.path,
                      s0.offset + (static_cast<uint64_t>(r) & ~(kPageSize - 1))));
    for (uint32_t k = 0; k < n; ++k) {
      const Slot& s = index_[pg + k];
      uint64_t got = PageChecksum(dst + uint64_t{k} * kPageSize);
      if (got != s.checksum) return Status::Corruption(PageError(pg + k, s, got));
      if (present != nullptr) present[(i + k) >> 6] |= uint64_t{1} << ((i + k) & 63);
    }
    i += n;
  }
  return Status::Ok();
}

// ---- persisting ----

Status PageStore::Impl::CheckEpoch(const SealedEpoch& e) const {
  const ImageInfo& im = e.image;
  if (options_.read_only)
    return Status::InvalidArgument(
        fmt::format("heap store {} is open read-only: open it for writing to persist", path_));
  if (im.epoch != image_.epoch + 1)
    return Status::InvalidArgument(
        fmt::format("heap store {}: epoch {} cannot follow durable epoch {}; persist epoch {} next", path_, im.epoch,
                    image_.epoch, image_.epoch + 1));
  if (im.term < image_.term)
    return Status::Superseded(fmt::format(
        "heap store {}: epoch {} comes from term {}, but term {} wrote this store; the writer was superseded", path_,
        im.epoch, im.term, image_.term));
  // A region grows (its pages keep their places), never shrinks or moves.
  if (im.base != image_.base || im.size < image_.size)
    return Status::InvalidArgument(
        fmt::format("heap store {}: epoch {} is for region {:#x}+{:#x}, the store holds region {:#x}+{:#x}", path_,
                    im.epoch, im.base, im.size, image_.base, image_.size));
  if (im.hwm > im.size / kPageSize)
    return Status::InvalidArgument(
        fmt::format("heap store {}: epoch {} has hwm {} beyond its region", path_, im.epoch, im.hwm));
  if (!e.pages.empty() && e.data == nullptr && e.region == nullptr)
    return Status::InvalidArgument(fmt::format("heap store {}: epoch {} lists pages but no data", path_, im.epoch));
  for (size_t i = 0; i < e.pages.size(); ++i) {
    if (e.pages[i] >= im.hwm || (i > 0 && e.pages[i] <= e.pages[i - 1]))
      return Status::InvalidArgument(fmt::format("heap store {}: epoch {}: page {} is out of order or at/after hwm {}",
                                                 path_, im.epoch, e.pages[i], im.hwm));
  }
  for (const Run& r : e.discarded)
    if (r.first > im.size / kPageSize || r.count > im.size / kPageSize - r.first)
      return Status::InvalidArgument(fmt::format("heap store {}: epoch {}: discarded run {}+{} lies outside the region",
                                                 path_, im.epoch, r.first, r.count));
  return Status::Ok();
}

namespace {

// 256 KiB of zeros is a small part of one epoch's write and fdatasync; an
// epoch past 64 KiB gains less from padding than the zeros cost it.
constexpr uint64_t kLogPadBytes = uint64_t{256} << 10, kLogPadMaxGroup = uint64_t{64} << 10;

// kLogPadBytes of zeros to write from, or null: a read-only anonymous
// mapping, every page of it the kernel's zero page, so it costs no memory.
// (Process-wide and never unmapped, like a constant; not through os().)
const uint8_t* LogPadZeros() {
  static const uint8_t* const zeros = [] {
    void* p = ::mmap(nullptr, kLogPadBytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : static_cast<const uint8_t*>(p);
  }();
  return zeros;
}

}  // namespace

Result<std::unique_ptr<PageStore::Impl::Group>> PageStore::Impl::LayOut(const SealedEpoch& e) {
  PHEAP_RETURN_IF_ERROR(CheckEpoch(e));
  if (active_->end > options_.log_file_bytes) {
    auto f = CreateLogFile(FileKind::kWriter, image_);
    if (!f.ok()) return f.status().Annotate(fmt::format("persisting epoch {}", e.image.epoch));
    std::unique_lock lock(mu_);
    if (active_->direct_fd >= 0) {  // sealed: never written again
      os().close(active_->direct_fd);
      active_->direct_fd = -1;
    }
    active_ = f->get();
    files_.emplace(static_cast<uint32_t>(active_->info.number), std::move(f.value()));
    lock.unlock();
    if (options_.on_log_file_sealed) options_.on_log_file_sealed();
  }
  const Epoch epoch = e.image.epoch;
  auto g = std::make_unique<Group>(active_->end, epoch);
  g->slots.resize(e.pages.size());
  const auto file = static_cast<uint32_t>(active_->info.number);
  for (size_t i = 0; i < e.pages.size(); ++i) {
    const uint8_t* data = e.page_data(i);
    uint64_t sum = PageChecksum(data);
    g->slots[i] = Slot{epoch, g->w.AddPage(e.pages[i], epoch, sum, data), sum, file, Slot::kPage};
  }
  for (const Run& r : e.discarded) g->w.AddTrim(TrimEntry{r.first, r.count, epoch});
  g->im = e.image;
  g->im.heap_id = heap_id_;
  g->time_ns = WallClockNs();
  g->w.Commit(CommitKind::kEpoch, g->im, CommitFacts{g->time_ns, e.pause_ns, 0});
  // An append past the file's end changes its size, so its fdatasync also
  // commits the filesystem's journal: on ext4 a small epoch's sync costs
  // about twice an overwrite's. So from the second epoch of a file on, a
  // small epoch that extends the file also writes zeros up to the next
  // kLogPadBytes boundary, made durable by the same fdatasync, and the
  // epochs after it overwrite blocks that exist. Not the first epoch (a
  // process that commits once would pay for the zeros and gain nothing),
  // nor a large one: past kLogPadMaxGroup, writing every byte twice costs
  // more than the journal commit saves. A reader ends the file at the
  // first all-zero block (docs/store-format.md).
  const uint64_t end = g->w.end();
  g->padded_to = active_->padded_to;
  if (end > g->padded_to && end - g->start <= kLogPadMaxGroup &&
      active_->last_epoch > active_->info.base_image.epoch && LogPadZeros() != nullptr) {
    g->padded_to = (end + kLogPadBytes - 1) / kLogPadBytes * kLogPadBytes;
    if (g->padded_to > end) {
      g->padded = g->w.iov();
      g->padded.push_back({const_cast<uint8_t*>(LogPadZeros()), g->padded_to - end});
    }
  }
  return g;
}

// `r`: how writing the group and syncing it went (0 or -errno).
Status PageStore::Impl::Publish(const Group& g, const std::vector<Pgno>& pages, const std::vector<Run>& discarded,
                                int r) {
  const Epoch epoch = g.im.epoch;
  // A file made at open becomes durable with its first epoch: the datasync
  // covered its header, and the directory entry follows.
  Status dir;
  if (r == 0 && !active_->synced) {
    dir = SyncDir();
    r = dir.ok() ? 0 : -dir.err();
    if (r == 0) active_->synced = true;
  }
  if (r < 0) {
    // The write may have reached the page cache whole and only the sync
    // failed: blank the commit record so no later open takes the epoch as
    // durable. Best effort; the next epoch overwrites this range anyway,
    // since `end` stays where it was.
    static const Block kZeros{};
    (void)WriteFull(active_->fd, &kZeros, sizeof(kZeros), g.w.end() - kBlockSize);
    const std::string what = fmt::format(
        "persisting epoch {} of heap '{}' to {} at offset {} (the epoch is not durable; retry it)", epoch, name_,
        active_->path, g.start);
    return dir.ok() ? Status::FromErrno(what, -r) : dir.Annotate(what);
  }
  const auto file = static_cast<uint32_t>(active_->info.number);
  std::unique_lock lock(mu_);
  if (index_.size() < g.im.hwm) index_.resize(g.im.hwm);
  for (size_t i = 0; i < pages.size(); ++i) {
    Slot& cur = index_[pages[i]];
    if (cur.state == Slot::kPage) --files_.at(cur.file)->live_pages;
    cur = g.slots[i];
  }
  active_->live_pages += pages.size();
  for (const Run& run : discarded) {
    Pgno end = std::min<Pgno>(run.end(), index_.size());
    for (Pgno p = run.first; p < end; ++p) {
      Slot& cur = index_[p];
      if (cur.state == Slot::kPage) --files_.at(cur.file)->live_pages;
      cur = Slot{epoch, 0, 0, file, Slot::kTrim};
    }
  }
  active_->end = g.w.end();
  active_->padded_to = std::max(g.padded_to, g.w.end());
  active_->last_epoch = epoch;
  image_ = g.im;
  if (options_.retain_ns != 0) {
    epoch_times_[epoch] = g.time_ns;
    // Only the window's epochs and the one before them are ever asked for.
    const uint64_t window = g.time_ns > options_.retain_ns ? g.time_ns - options_.retain_ns : 0;
    while (epoch_times_.size() > 1 && std::next(epoch_times_.begin())->second < window)
      epoch_times_.erase(epoch_times_.begin());
  }
  lock.unlock();
  // Written after the epoch is durable, so TAIL never claims more than the
  // log holds; left to writeback, so a crash of the machine may leave it
  // behind, never ahead.
  RecordTail(file, g.im, g.w.end());
  return Status::Ok();
}

int PageStore::Impl::WriteGroup(const Group& g, bool sync) {
  const std::vector<iovec>& iov = g.iov();
  auto write = [&](int fd) {
    return sync ? os().writev_datasync(fd, iov.data(), static_cast<int>(iov.size()), static_cast<off_t>(g.start))
                : WritevFull(fd, iov.data(), iov.size(), g.start);
  };
  LogFile* f = active_;
  const uint64_t bytes = g.w.end() - g.start;
  if (options_.direct_write_bytes == 0 || bytes < options_.direct_write_bytes || f->direct_failed)
    return write(f->fd);
  if (f->direct_fd < 0) {
    int fd = os().open(f->path.c_str(), O_WRONLY | O_DIRECT, 0);
    if (fd < 0) {
      PHEAP_LOG_DEBUG("heap store {}: {} refuses O_DIRECT ({}); writing through the page cache", path_, f->path,
                      std::strerror(-fd));
      f->direct_failed = true;
      return write(f->fd);
    }
    f->direct_fd = fd;
  }
  int r = write(f->direct_fd);
  if (r != -EINVAL) return r;
  // The device wants another alignment than the 4 KiB every block and page
  // has (SealedEpoch's contract), or memory broke it. The whole group is
  // written again, and from now on this file, through the page cache.
  PHEAP_LOG_DEBUG("heap store {}: O_DIRECT write to {} refused; writing through the page cache", path_, f->path);
  f->direct_failed = true;
  return write(f->fd);
}

Status PageStore::Impl::Persist(const SealedEpoch& e) {
  if (written_ != nullptr) return Status::InvalidArgument(NotSynced(e.image.epoch));
  if (install_ != nullptr) return Status::InvalidArgument(InstallInProgress(e.image.epoch));
  auto g = LayOut(e);
  if (!g.ok()) return g.status();
  // Nothing below `start` changes; a failed write leaves `end` where it was,
  // so a retry overwrites whatever part of the group reached the file.
  return Publish(**g, e.pages, e.discarded, WriteGroup(**g, /*sync=*/true));
}

std::string PageStore::Impl::NotSynced(Epoch epoch) const {
  return fmt::format("heap store {}: epoch {} was written but not synced; call Sync before epoch {}", path_,
                     written_->im.epoch, epoch);
}

std::string PageStore::Impl::InstallInProgress(Epoch epoch) const {
  return fmt::format("heap store {}: an image is being installed; epoch {} waits for InstallCommit or AbandonInstall",
                     path_, epoch);
}

Status PageStore::Impl::Write(const SealedEpoch& e) {
  if (written_ != nullptr) return Status::InvalidArgument(NotSynced(e.image.epoch));
  if (install_ != nullptr) return Status::InvalidArgument(InstallInProgress(e.image.epoch));
  auto g = LayOut(e);
  if (!g.ok()) return g.status();
  int r = WriteGroup(**g, /*sync=*/false);
  if (r < 0) return Publish(**g, e.pages, e.discarded, r);  // blanks what reached the file, names it
  (*g)->pages = e.pages;
  (*g)->discarded = e.discarded;
  written_ = std::move(*g);
  return Status::Ok();
}

Status PageStore::Impl::Sync(uint64_t pause_ns) {
  if (written_ == nullptr) return Status::Ok();
  std::unique_ptr<Group> g = std::move(written_);
  // The pause ended after Write: its commit record is written again with it,
  // into the page cache, before the one fdatasync that makes it durable.
  int r = 0;
  if (pause_ns != 0) r = WriteFull(active_->fd, &g->w.SetPause(pause_ns), kBlockSize, g->w.end() - kBlockSize);
  if (r == 0) r = os().fdatasync(active_->fd);
  return Publish(*g, g->pages, g->discarded, r);
}

PageStoreStats PageStore::Impl::stats() const {
  std::shared_lock lock(mu_);
  PageStoreStats st;
  st.epoch = image_.epoch;
  st.log_files = files_.size();
  for (const auto& [n, f] : files_) {
    st.bytes_on_disk += f->end;
    st.file_bytes += f->footprint();
    st.live_pages += f->live_pages;
  }
  st.compactions = compactions_;
  for (auto it = files_.rbegin(); it != files_.rend(); ++it) {
    const LogFile& f = *it->second;
    if (f.info.kind != FileKind::kCompaction) continue;
    st.last_compaction = {f.info.number, f.info.base_image.epoch, f.closing.time_ns, f.closing.reclaimed_bytes,
                          f.sources.size()};
    break;
  }
  return st;
}

std::vector<Epoch> PageStore::Impl::PageEpochs(Pgno first, uint64_t count) const {
  std::shared_lock lock(mu_);
  std::vector<Epoch> epochs(count, 0);
  for (uint64_t i = 0; i < count && first + i < index_.size(); ++i)
    if (index_[first + i].state != Slot::kAbsent) epochs[i] = index_[first + i].epoch;
  return epochs;
}

}  // namespace pheap
