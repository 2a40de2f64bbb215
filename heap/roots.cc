#include "heap/roots.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>

namespace pheap {
namespace {

// `what` is "root name" or "root type"; a name has at least one byte.
Status CheckName(const char* what, const std::string& s, size_t max, bool may_be_empty) {
  if (s.empty() && !may_be_empty) return Status::InvalidArgument(fmt::format("{} is empty: give 1..{} bytes", what, max));
  if (s.size() > max)
    return Status::InvalidArgument(
        fmt::format("{} '{:.32}...' is {} bytes, longer than {}: use a shorter one", what, s, s.size(), max),
        ENAMETOOLONG);
  if (s.find('\0') != std::string::npos) return Status::InvalidArgument(fmt::format("{} holds a NUL byte", what));
  return Status::Ok();
}

}  // namespace

int Roots::Find(const std::string& name, uint64_t hash) const {
  int best = -1;
  uint64_t best_seq = 0;
  for (size_t i = 0; i < used_; ++i) {
    const RootSlot& s = sb_->roots[i];
    uint64_t seq = s.seq.load(std::memory_order_acquire);
    if (seq > best_seq && s.name_hash == hash && name == s.name) {
      best = static_cast<int>(i);
      best_seq = seq;
    }
  }
  return best;
}

Result<void*> Roots::Get(const std::string& name, const std::string& type) const {
  PHEAP_RETURN_IF_ERROR(CheckName("root name", name, kRootNameMax, false));
  HoldingCommitLocks held;  // every commit takes mu_ too
  std::lock_guard<std::mutex> l(mu_);
  int i = Find(name, XXH3_64bits(name.data(), name.size()));
  if (i < 0) return Status::NotFound("no root named '" + name + "'");
  const RootSlot& s = sb_->roots[i];
  if (!type.empty() && s.type[0] != '\0' && type != s.type)
    return Status::InvalidArgument("root '" + name + "' holds a " + s.type + ", not a " + type +
                                   ": open it as the type it was stored with");
  return reinterpret_cast<void*>(s.ptr.load(std::memory_order_relaxed));
}

Status Roots::Set(const std::string& name, void* p, const std::string& type) {
  PHEAP_RETURN_IF_ERROR(CheckName("root name", name, kRootNameMax, false));
  PHEAP_RETURN_IF_ERROR(CheckName("root type", type, kRootTypeMax, true));
  HoldingCommitLocks held;  // every commit takes mu_ too
  std::lock_guard<std::mutex> l(mu_);
  uint64_t hash = XXH3_64bits(name.data(), name.size());
  int old = Find(name, hash);
  if (p == nullptr) {
    if (old >= 0) sb_->roots[old].seq.store(0, std::memory_order_release);
    return Status::Ok();
  }
  if (old >= 0 && type == sb_->roots[old].type) {
    sb_->roots[old].ptr.store(reinterpret_cast<uint64_t>(p), std::memory_order_release);
    return Status::Ok();
  }
  // A new slot: written whole, then published, then the old one retired.
  for (size_t i = 0; i < kRootCapacity; ++i) {
    RootSlot& s = sb_->roots[i];
    if (s.seq.load(std::memory_order_acquire) != 0) continue;
    used_ = std::max(used_, i + 1);
    s.ptr.store(reinterpret_cast<uint64_t>(p), std::memory_order_relaxed);
    s.name_hash = hash;
    std::memset(s.name, 0, sizeof(s.name));
    std::memcpy(s.name, name.data(), name.size());
    std::memset(s.type, 0, sizeof(s.type));
    std::memcpy(s.type, type.data(), type.size());
    s.seq.store(sb_->h.next_root_seq.fetch_add(1, std::memory_order_relaxed) + 1,
                std::memory_order_release);
    if (old >= 0) sb_->roots[old].seq.store(0, std::memory_order_release);
    return Status::Ok();
  }
  return Status::Busy("the heap's root table is full (" + std::to_string(kRootCapacity) +
                      " roots): keep fewer roots, e.g. one root holding a map");
}

}  // namespace pheap
