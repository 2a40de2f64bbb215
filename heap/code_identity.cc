#include "heap/code_identity.h"

#include <elf.h>
#include <link.h>
#include <sys/personality.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "base/log.h"

namespace pheap {
namespace {

int FindMain(struct dl_phdr_info* info, size_t, void* data) {
  auto* id = static_cast<CodeIdentity*>(data);
  // The first object dl_iterate_phdr reports is the main executable.
  id->load_bias = info->dlpi_addr;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    const char* p = reinterpret_cast<const char*>(info->dlpi_addr + ph.p_vaddr);
    const char* end = p + ph.p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const auto* nh = reinterpret_cast<const ElfW(Nhdr)*>(p);
      const char* name = p + sizeof(ElfW(Nhdr));
      const char* desc = name + ((nh->n_namesz + 3) & ~3u);
      if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0) {
        id->build_id_len = nh->n_descsz < sizeof(id->build_id) ? nh->n_descsz : sizeof(id->build_id);
        std::memcpy(id->build_id, desc, id->build_id_len);
        return 1;
      }
      p = desc + ((nh->n_descsz + 3) & ~3u);
    }
  }
  return 1;
}

std::string Hex(const uint8_t* b, uint32_t n) {
  std::string s;
  for (uint32_t i = 0; i < n; ++i) s += fmt::format("{:02x}", b[i]);
  return s.empty() ? "none" : s;
}

}  // namespace

const CodeIdentity& CurrentCodeIdentity() {
  static const CodeIdentity id = [] {
    CodeIdentity c{};
    dl_iterate_phdr(FindMain, &c);
    int pers = personality(0xffffffff);
    c.aslr_disabled = pers >= 0 && (pers & ADDR_NO_RANDOMIZE) ? 1 : 0;
    ssize_t n = readlink("/proc/self/exe", c.exe, sizeof(c.exe) - 1);
    c.exe[n > 0 ? n : 0] = '\0';
    return c;
  }();
  return id;
}

Status CheckCodeIdentity(const std::string& heap, const CodeIdentity& recorded, CodeCheck mode) {
  if (mode == CodeCheck::kOff || (recorded.build_id_len == 0 && recorded.load_bias == 0)) return Status::Ok();
  const CodeIdentity& now = CurrentCodeIdentity();
  std::string what;
  if (recorded.build_id_len != now.build_id_len ||
      std::memcmp(recorded.build_id, now.build_id, now.build_id_len) != 0) {
    what = fmt::format("it was written by another build ({} build id {}, this is {} build id {})",
                       recorded.exe, Hex(recorded.build_id, recorded.build_id_len), now.exe,
                       Hex(now.build_id, now.build_id_len));
  } else if (recorded.load_bias != now.load_bias) {
    what = fmt::format("the executable loads at {:#x}, the heap's writer at {:#x}", now.load_bias,
                       recorded.load_bias);
  } else {
    return Status::Ok();
  }
  std::string msg = fmt::format(
      "heap '{}': {}; code pointers stored in it (virtual functions, function pointers) are not "
      "valid here. Run the same build with stable addresses (pheap::exec_with_stable_addresses), "
      "or set code_check=off if the heap holds no code pointers",
      heap, what);
  if (mode == CodeCheck::kError) return Status::InvalidArgument(msg);
  PHEAP_LOG_WARN("{}", msg);
  return Status::Ok();
}

int ExecWithStableAddresses(char** argv) {
  int pers = personality(0xffffffff);
  if (pers < 0) return -1;
  if (pers & ADDR_NO_RANDOMIZE) return 0;
  if (personality(static_cast<unsigned long>(pers) | ADDR_NO_RANDOMIZE) < 0) return -1;
  execv("/proc/self/exe", argv);
  return -1;
}

}  // namespace pheap
