// `pheap inspect`: what a heap's store holds, read without taking the
// writer's lock, as text or JSON.
#include "tools/commands.h"

#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "heap/preload_stats.h"
#include "store/page_store.h"

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

}  // namespace

int RunInspect(const std::string& dir, const std::string& name, bool json, bool verify) {
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
  if (json) {
    nlohmann::json j = {
        {"heap", name}, {"path", (*store)->path()}, {"heap_id", fmt::format("{:#018x}", im.heap_id)},
        {"epoch", im.epoch}, {"term", im.term}, {"base", fmt::format("{:#x}", im.base)},
        {"size", im.size}, {"hwm_pages", im.hwm}, {"log_files", st.log_files},
        {"bytes_on_disk", st.bytes_on_disk}, {"live_pages", st.live_pages},
        {"compactions", st.compactions}};
    if (verify) j["verified"] = verified.ok();
    if (preload.ok())
      j["preload"] = {{"program", preload->program}, {"pid", preload->pid}, {"commits", preload->commits},
                      {"commit_ms", preload->commit_ms}, {"pause_p50_ns", preload->pause_p50_ns},
                      {"pause_p99_ns", preload->pause_p99_ns}, {"pause_max_ns", preload->pause_max_ns}};
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("heap          {}\n", name);
    fmt::print("store         {}\n", (*store)->path());
    fmt::print("heap id       {:#018x}\n", im.heap_id);
    fmt::print("durable epoch {} (term {})\n", im.epoch, im.term);
    fmt::print("region        [{:#x}, {:#x})  {} MiB\n", im.base, im.base + im.size, im.size >> 20);
    fmt::print("stored pages  {} live, high-water mark {} pages\n", st.live_pages, im.hwm);
    fmt::print("log files     {} ({:.1f} MiB on disk)\n", st.log_files, st.bytes_on_disk / 1048576.0);
    if (verify) fmt::print("verify        {}\n", verified.ok() ? "every live page checks" : verified.ToString());
    if (preload.ok())
      fmt::print("preload       {} (pid {}): {} commits every {} ms, pause p50 {:.3f} ms, p99 {:.3f} ms, max {:.3f} ms\n",
                 preload->program, preload->pid, preload->commits, preload->commit_ms, preload->pause_p50_ns / 1e6,
                 preload->pause_p99_ns / 1e6, preload->pause_max_ns / 1e6);
  }
  return verified.ok() ? 0 : 2;
}

}  // namespace pheap::tools
