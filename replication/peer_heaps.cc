#include "replication/peer_heaps.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/log.h"
#include "base/page_hash.h"
#include "store/compactor.h"
#include "store/page_store.h"
#include "replication/peer_heap_internal.h"
#include "replication/term_store.h"

namespace pheap {

using wire::ErrorCode;
using namespace peer_internal;
using Heap = HeapTable::Heap;

namespace peer_internal {

PageBuffer AllocPages(uint64_t pages) {
  return PageBuffer(static_cast<uint8_t*>(std::aligned_alloc(kPageSize, std::max<uint64_t>(pages, 1) * kPageSize)));
}

Status Inbox::Reserve(uint64_t more, const InboxLimits& limits, const std::string& dir) {
  if (buf_ == nullptr) {
    // Address space only: pages are faulted in as they are written.
    const uint64_t pages = std::max<uint64_t>(limits.max_bytes / kPageSize, 1);
    void* p = ::mmap(nullptr, pages * kPageSize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
      return Status::FromErrno(fmt::format("reserving {} MiB of address space for the inbox", pages >> 8), errno);
    const uint64_t mem = std::min<uint64_t>(pages, limits.memory_bytes / kPageSize);
    if (mem > 0 && ::mmap(p, mem * kPageSize, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED) {
      const int err = errno;
      ::munmap(p, pages * kPageSize);
      return Status::FromErrno(fmt::format("mapping {} MiB of inbox memory", mem >> 8), err);
    }
    buf_ = static_cast<uint8_t*>(p);
    reserved_ = pages;
    memory_ = capacity_ = mem;
  }
  const uint64_t need = pgnos_.size() + more;
  if (need > capacity_ && file_fd_ < 0 && capacity_ < reserved_) {
    const uint64_t bytes = (reserved_ - memory_) * kPageSize;
    int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
      return Status::FromErrno(fmt::format("an epoch outgrew the {} MiB of inbox memory, and an unnamed file for the "
                                           "rest cannot be made in {} (O_TMPFILE); raise the inbox memory",
                                           memory_ >> 8, dir),
                               errno);
    if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0 ||
        ::mmap(buf_ + memory_ * kPageSize, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) ==
            MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return Status::FromErrno(fmt::format("mapping the inbox file in {}", dir), err);
    }
    file_fd_ = fd;
    capacity_ = reserved_;
    PHEAP_LOG_INFO("inbox: an epoch outgrew {} MiB of memory; the rest goes to an unnamed file in {}", memory_ >> 8,
                   dir);
  }
  if (need > capacity_)
    return Status::Busy(fmt::format("the inbox holds {} pages, room for {}", pgnos_.size(), capacity_));
  if (need > memory_ && need - memory_ > file_ready_) {
    // Allocate ahead, 64 MiB at a time: a page the kernel found no block for
    // would fault with SIGBUS in the middle of a copy. A disk without room
    // for that much may still have room for this frame: then only that.
    const uint64_t need_file = need - memory_;
    uint64_t upto = std::min(reserved_ - memory_, std::max(need_file, file_ready_ + (uint64_t{64} << 20) / kPageSize));
    auto allocate = [&] {
      return ::fallocate(file_fd_, 0, static_cast<off_t>(file_ready_ * kPageSize),
                         static_cast<off_t>((upto - file_ready_) * kPageSize)) == 0;
    };
    bool ok = allocate();
    if (!ok && errno == ENOSPC && upto > need_file) {
      upto = need_file;
      ok = allocate();
    }
    if (!ok)
      return Status::FromErrno(
          fmt::format("allocating {} KiB of inbox file in {}", (upto - file_ready_) * kPageSize >> 10, dir), errno);
    file_ready_ = upto;
  }
  return Status::Ok();
}

void Inbox::Seal(SealedEpoch* e) {
  const uint64_t n = pgnos_.size();
  if (!std::is_sorted(pgnos_.begin(), pgnos_.end())) {
    // Slot i must take the page now in slot from[i]: follow each cycle of
    // that permutation, holding one page aside.
    std::vector<uint64_t> from(n);
    std::iota(from.begin(), from.end(), 0);
    std::sort(from.begin(), from.end(), [&](uint64_t a, uint64_t b) { return pgnos_[a] < pgnos_[b]; });
    std::vector<bool> placed(n, false);
    PageBuffer scratch = AllocPages(1);
    for (uint64_t start = 0; start < n; ++start) {
      if (placed[start] || from[start] == start) continue;
      std::memcpy(scratch.get(), buf_ + start * kPageSize, kPageSize);
      uint64_t at = start;
      for (;;) {
        placed[at] = true;
        const uint64_t src = from[at];
        if (src == start) {
          std::memcpy(buf_ + at * kPageSize, scratch.get(), kPageSize);
          break;
        }
        std::memcpy(buf_ + at * kPageSize, buf_ + src * kPageSize, kPageSize);
        at = src;
      }
    }
    std::sort(pgnos_.begin(), pgnos_.end());
    for (uint64_t i = 0; i < n; ++i) slot_[pgnos_[i]] = i;
  }
  e->pages = pgnos_;
  e->data = buf_;
}

void Inbox::ReleaseBeyond(uint64_t bytes) {
  if (buf_ == nullptr) return;
  const uint64_t keep = std::min(bytes / kPageSize, memory_);
  const uint64_t mem_end = std::min(touched_, memory_);
  if (mem_end > keep) ::madvise(buf_ + keep * kPageSize, (mem_end - keep) * kPageSize, MADV_FREE);
  if (file_ready_ > 0) {
    // The file's pages hold nothing once the epoch is durable: give back
    // their memory and blocks. The mapping stays; they read as zeros.
    const off_t len = static_cast<off_t>(file_ready_ * kPageSize);
    if (::fallocate(file_fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, len) != 0)
      ::madvise(buf_ + memory_ * kPageSize, static_cast<size_t>(len), MADV_REMOVE);
    file_ready_ = 0;
  }
  touched_ = std::min(touched_, keep);
}

void Inbox::Unmap() {
  if (buf_ != nullptr) ::munmap(buf_, reserved_ * kPageSize);
  if (file_fd_ >= 0) ::close(file_fd_);
  buf_ = nullptr;
  file_fd_ = -1;
  reserved_ = memory_ = capacity_ = touched_ = file_ready_ = 0;
}

wire::ReplyTo To(const wire::Header& h) { return {h.request_id, h.heap_id}; }

Reply Err(const wire::Header& req, Heap* h, ErrorCode code, uint64_t detail, std::string_view text,
          std::span<const Run> runs) {
  Term promised = h ? h->Promised() : 0;
  Epoch durable = h ? h->Image().epoch : 0;
  // A malformed field is a broken or hostile client: worth an operator's eye.
  if (code == ErrorCode::kMalformed)
    PHEAP_LOG_WARN("{} for heap {:016x} refused: {}: {}", wire::TypeName(req.type), req.heap_id,
                   wire::ErrorCodeName(static_cast<uint16_t>(code)), text);
  else if (code != ErrorCode::kUnknownHeap)
    PHEAP_LOG_DEBUG("{} for heap {:016x} refused: {}: {}", wire::TypeName(req.type), req.heap_id,
                    wire::ErrorCodeName(static_cast<uint16_t>(code)), text);
  return Reply{wire::EncodeError(To(req), promised, durable, code, detail, text, runs), nullptr};
}

// A term further above the promise than writers ever go: promised, it
// would leave the heap no term for the next writer to claim.
std::optional<Reply> TermLeap(Heap* h, const wire::Header& req) {
  const Term promised = h->terms->promise().term;
  if (req.term <= promised || req.term - promised <= kMaxTermStep) return std::nullopt;
  return Err(req, h, ErrorCode::kMalformed, promised,
             fmt::format("heap '{}': {} term {} is more than {} above the promised term {}; a writer claims the "
                         "highest promised term + 1 (docs/wire-protocol.md, Limits)",
                         h->name, wire::TypeName(req.type), req.term, kMaxTermStep, promised));
}

void NoteTrouble(const wire::Header& req, Heap* h, const Status& s) {
  const std::string cause = fmt::format("{}/{}", static_cast<int>(s.code()), s.err());
  {
    std::lock_guard l(h->mu);
    h->trouble = s;
  }
  if (cause == h->logged_cause) return;
  PHEAP_LOG_WARN("heap '{}': a write to its store failed ({} refused; logged again only for another cause): {}",
                 h->name, wire::TypeName(req.type), s.message());
  h->logged_cause = cause;
}

Reply StoreFailed(const wire::Header& req, Heap* h, const Status& s) {
  NoteTrouble(req, h, s);
  return Err(req, h, ErrorCode::kStoreError, static_cast<uint64_t>(s.err()), s.message());
}

void StoreRecovered(Heap* h) {
  if (h->logged_cause.empty()) return;
  {
    std::lock_guard l(h->mu);
    h->trouble = Status::Ok();
  }
  h->logged_cause.clear();
  PHEAP_LOG_WARN("heap '{}': its store works again", h->name);
}

// Refuses an older term, and the promised term from another claimant: a
// claim quorum may be smaller than a majority, so two writers can each
// claim the same term on replicas of their own, and only the claimant
// named here may write in it. Adopts (durably) a newer term a writer
// ships with, naming that writer, so no other claimant is granted it.
std::optional<Reply> Fence(Heap* h, const wire::Header& req) {
  const TermPromise& p = h->terms->promise();
  if (req.term < p.term)
    return Err(req, h, ErrorCode::kSuperseded, p.term,
               fmt::format("heap '{}': term {} is older than term {} promised here; a newer writer holds the heap", h->name, req.term, p.term));
  const bool unclaimed = p.claimant[0] == 0 && p.claimant[1] == 0;  // a promise kept from before claimants were named
  const bool same = p.claimant[0] == req.claimant[0] && p.claimant[1] == req.claimant[1];
  if (req.term == p.term && !same && !unclaimed)
    return Err(
        req, h, ErrorCode::kSuperseded, p.term,
        fmt::format("heap '{}': term {} is promised here to another writer; this one must stop", h->name, p.term));
  if (auto r = TermLeap(h, req)) return r;
  if (req.term > p.term || !same) {
    Status s = h->terms->Promise(TermPromise{req.term, {req.claimant[0], req.claimant[1]}});
    if (!s.ok()) return StoreFailed(req, h, s);
    std::lock_guard l(h->mu);
    h->promise = h->terms->promise();
    PHEAP_LOG_INFO("heap '{}': adopted term {} from a {}", h->name, req.term, wire::TypeName(req.type));
  }
  return std::nullopt;
}

}  // namespace peer_internal

namespace {

uint64_t NowMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch()).count());
}

// Opens the existing store of `h` (never creates one). Logs what it finds.
void OpenStore(const std::string& dir, PageStoreOptions o, Heap* h) {
  o.create_if_missing = false;
  auto s = PageStore::Open(dir, h->name, o);
  std::lock_guard l(h->mu);
  if (s.ok()) {
    h->store = std::move(s.value());
    ImageInfo im = h->store->image();
    PHEAP_LOG_INFO("heap '{}': store open at epoch {} (term {}, hwm {})", h->name, im.epoch, im.term, im.hwm);
  } else if (s.status().code() != Status::Code::kNotFound) {
    h->failed = s.status();
    PHEAP_LOG_ERROR("heap '{}': cannot open its store, its requests will be refused: {}", h->name, s.status().ToString());
  }
}

}  // namespace

HeapTable::HeapTable(std::string dir, const InboxLimits& inbox, const PageStoreOptions& store)
    : dir_(std::move(dir)), inbox_limits_(inbox), store_options_(store), started_ms_(NowMs()) {}

HeapTable::~HeapTable() { Close(); }

Result<std::unique_ptr<HeapTable>> HeapTable::Open(const std::string& dir, const InboxLimits& inbox,
                                                   const PageStoreOptions& store, bool compact) {
  PageStoreOptions so = store;
  auto wakeup = std::make_shared<Compactor::Wakeup>();
  if (compact) so.on_log_file_sealed = Compactor::Wakeup::Hook(wakeup);
  std::unique_ptr<HeapTable> t(new HeapTable(dir, inbox, so));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::FromErrno("creating peer directory " + dir, ec.value());
  for (const auto& de : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = de.path().filename().string();
    if (!de.is_directory() || !PageStore::ValidateHeapName(name).ok() || name.find(kStaleMark) != std::string::npos)
      continue;
    t->Register(name);
  }
  if (ec) return Status::FromErrno("listing peer directory " + dir, ec.value());
  if (compact) {
    HeapTable* table = t.get();  // the compactor stops in Close, before the table goes
    t->compactor_ = std::make_unique<Compactor>([table] {
      std::vector<std::shared_ptr<Heap>> heaps;
      {
        std::lock_guard l(table->mu_);
        for (const auto& [id, h] : table->heaps_) heaps.push_back(h);
      }
      std::vector<std::shared_ptr<PageStore>> stores;
      for (const auto& h : heaps) stores.push_back(h->Store());
      return stores;
    }, wakeup);
  }
  return t;
}

void HeapTable::Close() {
  compactor_.reset();
  std::map<HeapId, std::shared_ptr<Heap>> heaps;
  {
    std::lock_guard l(mu_);
    heaps.swap(heaps_);
  }
  for (auto& [id, h] : heaps) {
    std::lock_guard l(h->mu);
    if (h->store) PHEAP_LOG_INFO("heap '{}': closing its store at epoch {}", h->name, h->store->image().epoch);
    h->store.reset();
  }
}

std::shared_ptr<Heap> HeapTable::Find(HeapId id) {
  std::lock_guard l(mu_);
  auto it = heaps_.find(id);
  return it == heaps_.end() ? nullptr : it->second;
}

std::shared_ptr<Heap> HeapTable::Register(const std::string& name) {
  const HeapId id = XXH3_64bits(name.data(), name.size());
  std::lock_guard l(mu_);  // held while opening: a heap opens once
  if (auto it = heaps_.find(id); it != heaps_.end()) return it->second;
  auto h = std::make_shared<Heap>();
  h->name = name;
  h->id = id;
  h->dir = dir_ + "/" + name;
  auto ts = TermStore::Open(h->dir);
  if (ts.ok()) {
    // A crash while a store was set aside may leave the promise only in
    // the directory set aside: never promise less than it did.
    std::error_code ec;
    for (const auto& de : std::filesystem::directory_iterator(dir_, ec)) {
      const std::string other = de.path().filename().string();
      if (other.rfind(name + std::string(kStaleMark), 0) != 0) continue;
      auto old = TermStore::Open(de.path().string());
      if (old.ok() && old->promise().term > ts->promise().term) {
        if (Status s = ts->Promise(old->promise()); !s.ok()) PHEAP_LOG_ERROR("heap '{}': {}", name, s.ToString());
      }
    }
    h->promise = ts->promise();
    h->terms.emplace(std::move(ts.value()));
    OpenStore(dir_, store_options_, h.get());
  } else {
    h->failed = ts.status();
    PHEAP_LOG_ERROR("heap '{}': {}", name, ts.status().ToString());
  }
  heaps_.emplace(id, h);
  return h;
}

// The heap's directory goes, but not its promise: the claimed term stays
// promised (TERM is written again in a fresh directory), so a writer of an
// older term that comes back is refused rather than recreating the heap
// here. The directory is first renamed to a stale name, whose promise the
// peer honours at start, so a crash at any step keeps it.
Reply HeapTable::Drop(const wire::Message& m) {
  auto h = Find(m.header.heap_id);
  if (!h) return Reply{wire::EncodeDropAck(To(m.header), 0), nullptr};  // never held here
  if (m.header.term == 0) return Err(m.header, h.get(), ErrorCode::kMalformed, 0, "DROP of term 0: claim a term first");
  if (Status f = h->Failed(); !f.ok() || !h->terms)
    return Err(m.header, h.get(), ErrorCode::kStoreError, 0, f.ok() ? "no TERM" : f.message());
  if (auto refused = Fence(h.get(), m.header)) return std::move(*refused);
  std::weak_ptr<PageStore> closing;
  {
    std::lock_guard l(h->mu);
    closing = h->store;
    h->store.reset();
  }
  // A fetch or a compaction may hold the store a moment longer: its files
  // must be closed before the directory is renamed (a compaction writes new
  // ones into it).
  for (int waited_ms = 0; !closing.expired(); waited_ms += 10) {
    if (waited_ms >= 5000) {
      OpenStore(dir_, store_options_, h.get());
      return Err(
          m.header, h.get(), ErrorCode::kStoreError, EBUSY,
          fmt::format("heap '{}': its store is still in use here (a compaction or a fetch): try again", h->name));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const std::string aside = PageStore::SetAsideName(h->dir, kStaleMark, "0-removed");
  std::error_code ec;
  if (std::filesystem::exists(h->dir, ec)) {
    std::filesystem::rename(h->dir, aside, ec);
    if (ec) {
      OpenStore(dir_, store_options_, h.get());
      return StoreFailed(m.header, h.get(),
                         Status::FromErrno(fmt::format("renaming {} to {}", h->dir, aside), ec.value()));
    }
  }
  if (Status s = h->terms->Promise(h->terms->promise()); !s.ok()) return StoreFailed(m.header, h.get(), s);
  std::filesystem::remove_all(aside, ec);
  if (ec) PHEAP_LOG_WARN("heap '{}': removing {}: {}", h->name, aside, ec.message());
  h->inbox.Clear();
  h->inbox_pages.store(0);
  h->install_term = 0;
  h->install_pages = 0;
  StoreRecovered(h.get());
  PHEAP_LOG_INFO("heap '{}': removed at the request of term {} (the promise of term {} stays)", h->name, m.header.term,
                 h->Promised());
  return Reply{wire::EncodeDropAck(To(m.header), h->Promised()), nullptr};
}

Reply HeapTable::Handle(const wire::Message& m, uint32_t clients) {
  switch (m.type) {
    case wire::Type::kHello: return Hello(m);
    case wire::Type::kClaimTerm: return ClaimTerm(m);
    case wire::Type::kPages: return Pages(m);
    case wire::Type::kCommit: return Commit(m);
    case wire::Type::kFetch: return Fetch(m);
    case wire::Type::kInstallBegin: return InstallBegin(m);
    case wire::Type::kInstallPages: return InstallPages(m);
    case wire::Type::kInstallCommit: return InstallCommit(m);
    case wire::Type::kRepair: return Repair(m);
    case wire::Type::kDrop: return Drop(m);
    case wire::Type::kStatus: return StatusReply(m, clients);
    default: return Err(m.header, nullptr, ErrorCode::kUnknownType, 0, fmt::format("{} is not a request", wire::TypeName(m.header.type)));
  }
}

Reply HeapTable::Hello(const wire::Message& m) {
  const auto& hello = std::get<wire::Hello>(m.body);
  const std::string name(hello.name);
  if (Status s = PageStore::ValidateHeapName(name); !s.ok()) return Err(m.header, nullptr, ErrorCode::kMalformed, 0, s.message());
  auto h = Register(name);
  if (Status f = h->Failed(); !f.ok()) return Err(m.header, h.get(), ErrorCode::kStoreError, 0, f.message());
  wire::ManifestBody b{};
  auto store = h->Store();
  if (store) {
    ImageInfo im = store->image();
    b = {wire::kManifestHeld, 0, im.epoch, im.term, 0, im.base, im.size, im.hwm, 0};
  }
  b.promised_term = h->Promised();
  b.max_message_bytes = wire::kMaxMessageBytes;
  return Reply{wire::EncodeManifest(To(m.header), b), nullptr};
}

// The heap a write request is for, or null with *err set to the reply.
std::shared_ptr<Heap> HeapTable::FindWritable(const wire::Message& m, Reply* err) {
  auto h = Find(m.header.heap_id);
  if (!h) {
    *err = Err(m.header, nullptr, ErrorCode::kUnknownHeap, 0, "heap id not known here: send HELLO first");
    return nullptr;
  }
  std::lock_guard l(h->mu);
  if (!h->failed.ok()) {
    *err = Reply{wire::EncodeError(To(m.header), h->promise.term, 0, ErrorCode::kStoreError, 0, h->failed.message()), nullptr};
    return nullptr;
  }
  return h;
}

Reply HeapTable::ClaimTerm(const wire::Message& m) {
  Reply err;
  auto h = FindWritable(m, &err);
  if (!h) return err;
  const auto& c = std::get<wire::ClaimTerm>(m.body);
  const TermPromise cur = h->terms->promise();
  const bool same_writer = cur.claimant[0] == c.claimant[0] && cur.claimant[1] == c.claimant[1];
  const bool unclaimed = cur.claimant[0] == 0 && cur.claimant[1] == 0;  // kept from before claimants were named
  const Term t = m.header.term;
  if (auto r = TermLeap(h.get(), m.header)) return std::move(*r);
  const bool grant = t > cur.term || (t == cur.term && (same_writer || unclaimed));
  if (grant && !(t == cur.term && same_writer)) {
    Status s = h->terms->Promise(TermPromise{t, {c.claimant[0], c.claimant[1]}});
    if (!s.ok()) return StoreFailed(m.header, h.get(), s);
    std::lock_guard l(h->mu);
    h->promise = h->terms->promise();
  }
  ImageInfo im = h->Image();
  PHEAP_LOG_INFO("heap '{}': term {} {} (promised term {}, durable epoch {})", h->name, t, grant ? "granted" : "refused",
                 h->terms->promise().term, im.epoch);
  wire::TermReplyBody b{grant ? 1u : 0u, 0, h->terms->promise().term, im.epoch, im.term};
  return Reply{wire::EncodeTermReply(To(m.header), b), nullptr};
}

Reply HeapTable::Pages(const wire::Message& m) {
  Reply err;
  auto h = FindWritable(m, &err);
  if (!h) return err;
  const auto& p = std::get<wire::Pages>(m.body);
  if (auto r = Fence(h.get(), m.header)) return std::move(*r);
  if (auto r = InstallHolds(h.get(), m.header)) return std::move(*r);
  const Epoch e = m.header.epoch;
  const ImageInfo im = h->Image();
  auto ack = [&](uint64_t inbox_pages) {
    return Reply{wire::EncodePagesAck(To(m.header), e, h->Promised(), p.count, inbox_pages), nullptr};
  };
  if (e <= im.epoch) return ack(0);  // a resend of an epoch already durable
  if (e > im.epoch + 1)
    return Err(m.header, h.get(), ErrorCode::kEpochGap, im.epoch + 1,
               fmt::format("heap '{}': pages of epoch {} but the durable epoch here is {}; ship epoch {} first", h->name, e, im.epoch, im.epoch + 1));
  Pgno bad = 0;
  if (Status s = wire::VerifyPages(p, &bad); !s.ok()) return Err(m.header, h.get(), ErrorCode::kPageChecksum, bad, s.message());
  // The region may grow with this epoch (its COMMIT names the size, and
  // bounds the pages in the inbox by its hwm): here pages are bounded only by the
  // largest region.
  if (p.ref(p.count - 1).pgno >= kMaxRegionSize / kPageSize)
    return Err(m.header, h.get(), ErrorCode::kMalformed, p.ref(p.count - 1).pgno,
               fmt::format("heap '{}': page {} lies outside the largest region of {} pages", h->name,
                           p.ref(p.count - 1).pgno, kMaxRegionSize / kPageSize));
  Inbox& inbox = h->inbox;
  inbox.Begin(e, m.header.term);
  if ((inbox.size() + p.count) * kPageSize > inbox_limits_.max_bytes)
    return Err(
        m.header, h.get(), ErrorCode::kInboxFull, inbox_limits_.max_bytes,
        fmt::format("heap '{}': epoch {} would put more than {} bytes in the inbox; raise the peer's inbox limit",
                    h->name, e, inbox_limits_.max_bytes));
  if (Status room = inbox.Reserve(p.count, inbox_limits_, dir_); !room.ok()) {
    if (room.code() == Status::Code::kIoError) NoteTrouble(m.header, h.get(), room);  // the disk, not the limit
    return Err(m.header, h.get(), ErrorCode::kInboxFull, inbox_limits_.max_bytes,
               fmt::format("heap '{}': no room in the inbox for epoch {}: {}", h->name, e, room.message()));
  }
  for (uint32_t i = 0; i < p.count; ++i) inbox.Put(p.ref(i).pgno, p.page(i));
  h->inbox_pages.store(inbox.size(), std::memory_order_relaxed);
  PHEAP_LOG_DEBUG("heap '{}': {} pages of epoch {} into the inbox ({} in all)", h->name, p.count, e, inbox.size());
  return ack(inbox.size());
}

Reply HeapTable::Commit(const wire::Message& m) {
  Reply err;
  auto h = FindWritable(m, &err);
  if (!h) return err;
  const auto& c = std::get<wire::Commit>(m.body);
  if (auto r = Fence(h.get(), m.header)) return std::move(*r);
  if (auto r = InstallHolds(h.get(), m.header)) return std::move(*r);
  const Epoch e = m.header.epoch;
  const ImageInfo im = h->Image();
  auto ack = [&](const ImageInfo& now) {
    return Reply{wire::EncodeCommitAck(To(m.header), h->Promised(), now.epoch, now.term), nullptr};
  };
  if (e <= im.epoch) return ack(im);  // a resend: the epoch is durable already
  if (e > im.epoch + 1)
    return Err(m.header, h.get(), ErrorCode::kEpochGap, im.epoch + 1,
               fmt::format("heap '{}': commit of epoch {} but the durable epoch here is {}; ship epoch {} first", h->name, e, im.epoch, im.epoch + 1));
  // The epoch must extend the image it was cut from: one another writer
  // left here (never durable, or the writer would have started from it) is
  // not that image, whatever its number.
  if (im.epoch > 0 && c.body.prev_term != im.term)
    return Err(m.header, h.get(), ErrorCode::kDiverged, im.term,
               fmt::format("heap '{}': epoch {} extends epoch {} of term {}, but epoch {} here was written in term {}; "
                           "this replica must be installed anew",
                           h->name, e, im.epoch, c.body.prev_term, im.epoch, im.term));
  Inbox& inbox = h->inbox;
  const uint64_t held = inbox.epoch() == e && inbox.term() == m.header.term ? inbox.size() : 0;
  if (held != c.body.total_pages) {
    std::vector<Run> runs = held != 0 ? inbox.Runs() : std::vector<Run>{};
    return Err(
        m.header, h.get(), ErrorCode::kMissingPages, held,
        fmt::format(
            "heap '{}': epoch {} has {} of its {} pages in the inbox here; resend the pages not in the listed runs",
            h->name, e, held, c.body.total_pages),
        runs);
  }
  // Nothing of a commit that does not fit the heap is stored, not even a
  // store for its region.
  if (im.size != 0 && (c.body.base != im.base || c.body.size < im.size))
    return Err(m.header, h.get(), ErrorCode::kMalformed, 0,
               fmt::format("heap '{}': COMMIT region base {:#x} size {:#x} disagrees with the region recorded here, "
                           "base {:#x} size {:#x}; a heap keeps its base and grows, never shrinks",
                           h->name, c.body.base, c.body.size, im.base, im.size));
  if (held != 0 && inbox.Last() >= c.body.hwm)
    return Err(
        m.header, h.get(), ErrorCode::kMalformed, inbox.Last(),
        fmt::format("heap '{}': COMMIT hwm {} of epoch {}, but page {} is in the inbox for it; pages lie below hwm",
                    h->name, c.body.hwm, e, inbox.Last()));
  auto store = h->Store();
  if (!store) {
    auto s = CreateStore(h.get(), c.body.base, c.body.size);
    if (!s.ok()) return StoreFailed(m.header, h.get(), s.status());
    store = std::move(s.value());
  }
  SealedEpoch se;
  se.image = ImageInfo{h->id, e, m.header.term, c.body.base, c.body.size, c.body.hwm};
  se.discarded = c.discarded;
  if (held != 0) inbox.Seal(&se);
  Status s = store->Persist(se);
  if (s.code() == Status::Code::kSuperseded) return Err(m.header, h.get(), ErrorCode::kSuperseded, 0, s.message());
  if (!s.ok()) return StoreFailed(m.header, h.get(), s);
  StoreRecovered(h.get());
  inbox.Clear();
  h->inbox_pages.store(0, std::memory_order_relaxed);
  PHEAP_LOG_INFO("heap '{}': epoch {} durable ({} pages, term {}, hwm {})", h->name, e, se.pages.size(), m.header.term, c.body.hwm);
  return ack(store->image());
}

namespace {

// The image of past epoch `epoch` of h (Heap::past), made on the first
// fetch of it. Errors: PageStore::ImageAt's (a compaction here kept only
// later versions).
Result<std::shared_ptr<EpochImage>> PastImage(HeapTable::Heap* h, const PageStore& store, Epoch epoch) {
  using Heap = HeapTable::Heap;
  const auto now = static_cast<int64_t>(NowMs());
  std::lock_guard l(h->past_mu);
  std::erase_if(h->past, [now](const Heap::Past& p) { return now - p.used_ms > Heap::kPastIdleMs; });
  for (Heap::Past& p : h->past)
    if (p.epoch == epoch) {
      p.used_ms = now;
      return p.image;
    }
  // Made under the lock: readers of one epoch come together, and it is
  // made once for all of them.
  auto made = store.ImageAt(epoch);
  if (!made.ok()) return made.status();
  if (h->past.size() >= Heap::kPastMax)
    h->past.erase(std::min_element(h->past.begin(), h->past.end(),
                                   [](const Heap::Past& a, const Heap::Past& b) { return a.used_ms < b.used_ms; }));
  h->past.push_back(Heap::Past{epoch, std::shared_ptr<EpochImage>(std::move(*made)), now});
  return h->past.back().image;
}

}  // namespace

Reply HeapTable::Fetch(const wire::Message& m) {
  auto h = Find(m.header.heap_id);
  if (!h) return Err(m.header, nullptr, ErrorCode::kUnknownHeap, 0, "heap id not known here: send HELLO first");
  if (Status bad = h->Failed(); !bad.ok()) return Err(m.header, h.get(), ErrorCode::kStoreError, 0, bad.message());
  const auto& f = std::get<wire::Fetch>(m.body);
  const uint32_t words = (f.count + 63) / 64;
  std::vector<uint64_t> present(words, 0);
  auto store = h->Store();
  if (!store) {
    if (m.header.epoch != 0)
      return Err(m.header, h.get(), ErrorCode::kEpochMismatch, 0,
                 fmt::format("heap '{}': no epoch is durable here, epoch {} was asked for", h->name, m.header.epoch));
    return Reply{wire::EncodeFetchReply(To(m.header), h->Promised(), 0, 0, f.first, f.count, present, {}, nullptr), nullptr};
  }
  PageBuffer buf = AllocPages(f.count);
  Epoch served = 0;
  Term served_term = 0;
  Status s;
  // A commit may land during the read: read again until the epoch held still.
  for (int attempt = 0;; ++attempt) {
    const ImageInfo im = store->image();
    served = im.epoch;
    served_term = im.term;
    if (m.header.epoch != 0 && m.header.epoch < served) {
      // A reader's epoch, superseded here since it opened.
      auto past = PastImage(h.get(), *store, m.header.epoch);
      if (!past.ok())
        return Err(m.header, h.get(), ErrorCode::kEpochMismatch, served,
                   fmt::format("heap '{}': epoch {} was asked for, epoch {} is durable here: {}", h->name,
                               m.header.epoch, served, past.status().message()));
      served = (*past)->image().epoch;
      served_term = (*past)->image().term;
      s = (*past)->ReadRun(f.first, f.count, buf.get(), present.data());
      break;
    }
    if (m.header.epoch != 0 && m.header.epoch != served)
      return Err(m.header, h.get(), ErrorCode::kEpochMismatch, served,
                 fmt::format("heap '{}': epoch {} was asked for, epoch {} is durable here", h->name, m.header.epoch, served));
    s = store->ReadRun(f.first, f.count, buf.get(), present.data());
    if (store->image().epoch == served || attempt == 8) break;
  }
  if (s.code() == Status::Code::kCorruption) {
    // Name the first damaged page so the client fetches it elsewhere.
    for (uint32_t i = 0; i < f.count; ++i) {
      uint64_t bit = 0;
      if (Status one = store->ReadRun(f.first + i, 1, buf.get(), &bit); one.code() == Status::Code::kCorruption) {
        PHEAP_LOG_WARN("heap '{}': {}", h->name, one.message());
        return Err(m.header, h.get(), ErrorCode::kCorruptPage, f.first + i, one.message());
      }
    }
    return Err(m.header, h.get(), ErrorCode::kCorruptPage, f.first, s.message());
  }
  if (!s.ok()) return Err(m.header, h.get(), ErrorCode::kStoreError, 0, s.message());
  std::vector<uint64_t> sums;
  uint8_t* out = buf.get();
  for (uint32_t i = 0; i < f.count; ++i) {
    if (((present[i / 64] >> (i % 64)) & 1) == 0) continue;
    const uint8_t* page = buf.get() + uint64_t{i} * kPageSize;
    if (page != out) std::memmove(out, page, kPageSize);  // pack present pages
    sums.push_back(PageHash(out));
    out += kPageSize;
  }
  Reply r{wire::EncodeFetchReply(To(m.header), h->Promised(), served, served_term, f.first, f.count, present, sums, buf.get()),
          nullptr};
  r.owned = std::move(buf);
  return r;
}

Reply HeapTable::StatusReply(const wire::Message& m, uint32_t clients) {
  std::vector<std::shared_ptr<Heap>> heaps;
  {
    std::lock_guard l(mu_);
    for (auto& [id, h] : heaps_) heaps.push_back(h);
  }
  std::vector<wire::HeapStatusEntry> entries;
  for (auto& h : heaps) {
    wire::HeapStatusEntry e;
    e.name = h->name;
    e.status.heap_id = h->id;
    e.status.promised_term = h->Promised();
    e.status.inbox_pages = h->inbox_pages.load(std::memory_order_relaxed);
    if (auto store = h->Store()) {
      PageStoreStats st = store->stats();
      e.status.epoch = st.epoch;
      e.status.bytes_on_disk = st.bytes_on_disk;
      e.status.live_pages = st.live_pages;
      e.status.flags |= wire::kHeapOpen;
    }
    Status why = h->Failed();
    if (!why.ok()) {
      e.status.flags |= wire::kHeapFailed;
    } else if (why = h->Trouble(); !why.ok()) {
      e.status.flags |= wire::kHeapTrouble;
    }
    e.status.error_errno = static_cast<uint32_t>(why.err());
    e.error = why.message();
    entries.push_back(std::move(e));
  }
  return Reply{wire::EncodeStatusReply(To(m.header), clients, NowMs() - started_ms_, entries), nullptr};
}

}  // namespace pheap
