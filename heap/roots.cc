#include "heap/roots.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

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

std::string StoredRootType(const std::string& type) {
  if (type.size() <= kRootTypeMax) return type;
  return fmt::format("{}#{:016x}", type.substr(0, kRootTypeMax - 17), XXH3_64bits(type.data(), type.size()));
}

std::string ReadableRootType(const std::string& stored) {
  const size_t slash = stored.find('/');
  const std::string mangled = stored.substr(0, slash);
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status),
                                             std::free);
  if (status != 0 || out == nullptr) return stored;
  std::string r = out.get();
  const size_t second = slash == std::string::npos ? slash : stored.find('/', slash + 1);
  if (second != std::string::npos && stored.find('#') == std::string::npos)
    r += fmt::format(" ({} bytes, align {})", stored.substr(slash + 1, second - slash - 1), stored.substr(second + 1));
  return r;
}

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
  if (!type.empty() && s.type[0] != '\0' && StoredRootType(type) != s.type)
    return Status::InvalidArgument("root '" + name + "' holds a " + ReadableRootType(s.type) + ", not a " +
                                   ReadableRootType(type) + ": open it as the type it was stored with");
  return reinterpret_cast<void*>(s.ptr.load(std::memory_order_relaxed));
}

Status Roots::Set(const std::string& name, void* p, const std::string& given_type) {
  PHEAP_RETURN_IF_ERROR(CheckName("root name", name, kRootNameMax, false));
  const std::string type = StoredRootType(given_type);
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
