// `pheap inspect`: what a heap's store holds, read without taking the
// writer's lock, as text or JSON, and as an HTML page map.
#include "tools/commands.h"

#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "heap/preload_stats.h"
#include "heap/stored_image.h"
#include "store/page_store.h"
#include "tools/inspect_replicas.h"
#include "tools/inspect_sections.h"

namespace pheap::tools {
namespace {

class PrintingReporter : public CorruptionReporter {
 public:
  void Corruption(const std::string& file, uint64_t offset, const std::string& what) override {
    fmt::print(stderr, "corruption: {} at offset {}: {}\n", file, offset, what);
    ++count;
  }
  int count = 0;
};

// A C++ type name as written, from its mangled form (typeid().name()).
std::string Demangled(const std::string& type) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(type.c_str(), nullptr, nullptr, &status), std::free);
  return status == 0 && out != nullptr ? std::string(out.get()) : type;
}

}  // namespace

int RunInspect(const std::string& dir, const std::string& name, bool json, bool verify, const ReplicaArgs& replicas,
               const std::string& html) {
  PageStoreOptions o;
  o.read_only = true;
  o.create_if_missing = false;
  PrintingReporter reporter;
  auto store = PageStore::Open(dir, name, o, &reporter);
  if (!store.ok()) return Fail("inspect", store.status(), json);
  ImageInfo im = (*store)->image();
  PageStoreStats st = (*store)->stats();
  Status verified = verify ? (*store)->Verify(&reporter) : Status::Ok();
  auto preload = ReadPreloadStats(**store);  // present if it ran under libpheap_preload.so
  const long holder = PageStore::Holder(dir, name);
  const uint64_t live_bytes = st.live_pages * kPageSize;
  const double amplification = live_bytes == 0 ? 0 : static_cast<double>(st.bytes_on_disk) / live_bytes;
  auto image = StoredImage::Open(**store);  // NotFound before the first commit
  std::vector<StoredRoot> roots;
  StoredHeapFacts facts;
  Result<StoredAllocatorFacts> allocator = Status::NotFound("the heap has no durable epoch");
  if (image.ok()) {
    roots = (*image)->Roots();
    facts = (*image)->Facts();
    allocator = (*image)->AllocatorFacts();
  }
  Result<uint64_t> drawn = uint64_t{0};
  if (!html.empty()) {
    drawn = image.ok() ? WritePageMapHtml(html, name, **store, **image, holder) : image.status();
    if (!drawn.ok()) return Fail("inspect", drawn.status().Annotate("the page map"), json);
  }
  if (json) {
    nlohmann::json j = {
        {"heap", name}, {"path", (*store)->path()}, {"heap_id", fmt::format("{:#018x}", im.heap_id)},
        {"epoch", im.epoch}, {"term", im.term}, {"base", fmt::format("{:#x}", im.base)},
        {"size", im.size}, {"hwm_pages", im.hwm}, {"log_files", st.log_files},
        {"bytes_on_disk", st.bytes_on_disk}, {"live_pages", st.live_pages},
        {"compactions", st.compactions}};
    j["holder_pid"] = holder;
    j["space_amplification"] = amplification;
    j["writer"] = {{"opens", facts.opens},
                   {"exe", facts.exe},
                   {"build_id", facts.build_id},
                   {"aslr_disabled", facts.aslr_disabled},
                   {"holds_code", facts.holds_code}};
    j["roots"] = nlohmann::json::array();
    for (const StoredRoot& r : roots)
      j["roots"].push_back({{"name", r.name},
                            {"type", Demangled(r.type)},
                            {"address", fmt::format("{:#x}", r.address)},
                            {"size", r.size}});
    j["allocator"] = allocator.ok() ? AllocatorJson(*allocator) : nullptr;
    if (!html.empty()) j["html"] = {{"file", html}, {"pages", *drawn}};
    if (verify) j["verified"] = verified.ok();
    if (preload.ok())
      j["preload"] = {{"program", preload->program}, {"pid", preload->pid}, {"commits", preload->commits},
                      {"commit_ms", preload->commit_ms}, {"pause_p50_ns", preload->pause_p50_ns},
                      {"pause_p99_ns", preload->pause_p99_ns}, {"pause_max_ns", preload->pause_max_ns}};
    auto rows = InspectReplicas(name, replicas, (*store)->path(), im, json);
    j["replicas"] = rows.ok() ? *rows : nlohmann::json::array();
    if (!rows.ok()) j["replicas_error"] = rows.status().message();
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("heap          {}\n", name);
    fmt::print("store         {}\n", (*store)->path());
    fmt::print("heap id       {:#018x}\n", im.heap_id);
    fmt::print("durable epoch {} (term {})\n", im.epoch, im.term);
    fmt::print("region        [{:#x}, {:#x})  {} MiB\n", im.base, im.base + im.size, im.size >> 20);
    fmt::print("stored pages  {} live, high-water mark {} pages\n", st.live_pages, im.hwm);
    fmt::print("log files     {} ({:.1f} MiB on disk, {:.2f}x the live pages)\n", st.log_files,
               st.bytes_on_disk / 1048576.0, amplification);
    fmt::print("holder        {}\n", holder > 0 ? fmt::format("pid {}", holder) : "none (closed)");
    if (image.ok()) {
      fmt::print("last writer   {} (build id {}{}), {} opens; code pointers {}\n", facts.exe.empty() ? "?" : facts.exe,
                 facts.build_id.empty() ? "none" : facts.build_id, facts.aslr_disabled ? ", ASLR off" : "", facts.opens,
                 facts.holds_code ? "checked at open" : "none declared");
      fmt::print("roots         {}\n", roots.size());
      for (const StoredRoot& r : roots)
        fmt::print("  {:<24} {:#x}  {:>8} B  {}\n", r.name, r.address, r.size,
                   r.type.empty() ? "(no type)" : Demangled(r.type));
      if (allocator.ok()) PrintAllocator(*allocator);
      else fmt::print("allocator     {}\n", allocator.status().message());
    }
    if (!html.empty()) fmt::print("page map      {} ({} pages)\n", html, *drawn);
    if (verify) fmt::print("verify        {}\n", verified.ok() ? "every live page checks" : verified.ToString());
    if (preload.ok())
      fmt::print("preload       {} (pid {}): {} commits every {} ms, pause p50 {:.3f} ms, p99 {:.3f} ms, max {:.3f} ms\n",
                 preload->program, preload->pid, preload->commits, preload->commit_ms, preload->pause_p50_ns / 1e6,
                 preload->pause_p99_ns / 1e6, preload->pause_max_ns / 1e6);
    if (auto rows = InspectReplicas(name, replicas, (*store)->path(), im, json); !rows.ok())
      fmt::print("replicas      cannot be read: {}\n", rows.status().ToString());
  }
  return verified.ok() ? 0 : 2;
}

}  // namespace pheap::tools
