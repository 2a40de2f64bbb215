// `pheap inspect`: what a heap's store holds, read without taking the
// writer's lock, as text or JSON, and as an HTML page map.
#include "tools/commands.h"

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "heap/preload_stats.h"
#include "heap/roots.h"
#include "heap/stored_image.h"
#include "store/page_store.h"
#include "tools/inspect_replicas.h"
#include "tools/inspect_sections.h"
#include "tools/replicas.h"

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

// A wall-clock time as ISO 8601 in UTC, to the millisecond; "-" for 0, a
// time the store did not record.
std::string WallTime(uint64_t ns) {
  if (ns == 0) return "-";
  const time_t secs = static_cast<time_t>(ns / 1000000000);
  tm t{};
  gmtime_r(&secs, &t);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour,
                     t.tm_min, t.tm_sec, ns / 1000000 % 1000);
}

nlohmann::json TimeJson(uint64_t ns) { return ns == 0 ? nlohmann::json(nullptr) : nlohmann::json(WallTime(ns)); }

// The store section: its log files and what they hold, and the newest
// compaction the log remembers.
struct StoreFacts {
  PageStoreStats stats;
  uint64_t live_bytes = 0;
  double amplification = 0;   // bytes on disk per live byte
  size_t retained = 0;        // epochs whose records the log holds
  Epoch first = 0, last = 0;  //   the oldest and newest of them
};

StoreFacts GetStoreFacts(const PageStore& store, const std::vector<EpochRecord>& epochs) {
  StoreFacts f;
  f.stats = store.stats();
  f.live_bytes = f.stats.live_pages * kPageSize;
  f.amplification = f.live_bytes == 0 ? 0 : static_cast<double>(f.stats.bytes_on_disk) / f.live_bytes;
  f.retained = epochs.size();
  if (!epochs.empty()) {
    f.first = epochs.front().epoch;
    f.last = epochs.back().epoch;
  }
  return f;
}

nlohmann::json StoreJson(const StoreFacts& f) {
  const PageStoreStats& st = f.stats;
  nlohmann::json j = {{"log_files", st.log_files},
                      {"bytes_on_disk", st.bytes_on_disk},
                      {"file_bytes", st.file_bytes},
                      {"live_pages", st.live_pages},
                      {"live_bytes", f.live_bytes},
                      {"space_amplification", f.amplification},
                      {"retained_epochs", {{"count", f.retained}, {"first", f.first}, {"last", f.last}}}};
  const CompactionRecord& c = st.last_compaction;
  j["last_compaction"] = c.file == 0 ? nlohmann::json(nullptr)
                                     : nlohmann::json{{"file", c.file},
                                                      {"epoch", c.epoch},
                                                      {"time", TimeJson(c.time_ns)},
                                                      {"reclaimed_bytes", c.reclaimed_bytes},
                                                      {"replaced_files", c.replaced_files}};
  return j;
}

void PrintStore(const StoreFacts& f) {
  const PageStoreStats& st = f.stats;
  fmt::print("log files     {} ({:.1f} MiB on disk, {:.1f} MiB with padding; {:.2f}x the live pages)\n", st.log_files,
             st.bytes_on_disk / 1048576.0, st.file_bytes / 1048576.0, f.amplification);
  const CompactionRecord& c = st.last_compaction;
  if (c.file == 0) {
    fmt::print("compaction    none in the log\n");
    return;
  }
  fmt::print("compaction    last at epoch {}, {}: {} log file{} replaced, {:.1f} MiB reclaimed\n", c.epoch,
             c.time_ns == 0 ? "time not recorded" : WallTime(c.time_ns), c.replaced_files,
             c.replaced_files == 1 ? "" : "s", c.reclaimed_bytes / 1048576.0);
}

// The epochs section: the records given (the newest --epochs of them).
nlohmann::json EpochsJson(const std::vector<EpochRecord>& epochs) {
  nlohmann::json a = nlohmann::json::array();
  for (const EpochRecord& e : epochs)
    a.push_back({{"epoch", e.epoch},
                 {"term", e.term},
                 {"time", TimeJson(e.time_ns)},
                 {"pause_ns", e.pause_ns == 0 ? nlohmann::json(nullptr) : nlohmann::json(e.pause_ns)},
                 {"pages", e.pages},
                 {"discarded_pages", e.discarded},
                 {"bytes", e.bytes},
                 {"file", e.file}});
  return a;
}

void PrintEpochs(const std::vector<EpochRecord>& epochs, const StoreFacts& f) {
  if (f.retained == 0) {
    fmt::print("epochs        none retained\n");
    return;
  }
  fmt::print("epochs        {} retained, {} to {}{}\n", f.retained, f.first, f.last,
             epochs.size() < f.retained ? fmt::format(" (the newest {} shown)", epochs.size()) : "");
  fmt::print("  {:>8} {:>6}  {:<24} {:>8} {:>10} {:>11}\n", "EPOCH", "TERM", "TIME (UTC)", "PAGES", "BYTES", "PAUSE");
  for (const EpochRecord& e : epochs)
    fmt::print("  {:>8} {:>6}  {:<24} {:>8} {:>10} {:>11}\n", e.epoch, e.term, WallTime(e.time_ns), e.pages, e.bytes,
               e.pause_ns == 0 ? "-" : fmt::format("{:.3f} ms", e.pause_ns / 1e6));
}

// The sections an image gives, whatever holds it: the last writer, the
// roots and the allocator. `image` null: none yet (no durable epoch).
void AddImageJson(const StoredImage* image, nlohmann::json* j) {
  StoredHeapFacts facts;
  std::vector<StoredRoot> roots;
  Result<StoredAllocatorFacts> allocator = Status::NotFound("the heap has no durable epoch");
  if (image != nullptr) {
    facts = image->Facts();
    roots = image->Roots();
    allocator = image->AllocatorFacts();
  }
  (*j)["writer"] = {{"opens", facts.opens},           {"exe", facts.exe},
                    {"build_id", facts.build_id},     {"aslr_disabled", facts.aslr_disabled},
                    {"holds_code", facts.holds_code}, {"tracking", facts.tracking}};
  (*j)["roots"] = nlohmann::json::array();
  for (const StoredRoot& r : roots)
    (*j)["roots"].push_back({{"name", r.name},
                             {"type", ReadableRootType(r.type)},
                             {"address", fmt::format("{:#x}", r.address)},
                             {"size", r.size}});
  (*j)["allocator"] = allocator.ok() ? AllocatorJson(*allocator) : nullptr;
}

void PrintImage(const StoredImage& image) {
  const StoredHeapFacts facts = image.Facts();
  const std::vector<StoredRoot> roots = image.Roots();
  fmt::print("last writer   {} (build id {}{}), {} opens; code pointers {}; tracking {}\n",
             facts.exe.empty() ? "?" : facts.exe, facts.build_id.empty() ? "none" : facts.build_id,
             facts.aslr_disabled ? ", ASLR off" : "", facts.opens,
             facts.holds_code ? "checked at open" : "none declared",
             facts.tracking.empty() ? "not recorded" : facts.tracking);
  fmt::print("roots         {}\n", roots.size());
  for (const StoredRoot& r : roots)
    fmt::print("  {:<24} {:#x}  {:>8} B  {}\n", r.name, r.address, r.size,
               r.type.empty() ? "(no type)" : ReadableRootType(r.type));
  if (auto allocator = image.AllocatorFacts(); allocator.ok()) PrintAllocator(*allocator);
  else fmt::print("allocator     {}\n", allocator.status().message());
}

// inspect with no local store: the durable image its replicas hold, read
// as a reader (no term claimed, no writer disturbed).
int InspectFromPeers(const std::string& name, bool json, const ReplicaArgs& replicas, const Status& no_store) {
  auto set = ReplicaSetOf(replicas, "");
  if (!set.ok()) return Fail("inspect", set.status(), json);
  if (set->replication.peers.empty()) return Fail("inspect", no_store, json);
  auto client = DialReplicas(name, *set, /*claim=*/false);
  if (!client.ok()) return Fail("inspect", client.status().Annotate("reading it from its peers"), json);
  const ImageInfo im = (*client)->image();
  auto image = StoredImage::OpenSource(**client, im);
  if (!image.ok() && image.status().code() != Status::Code::kNotFound)
    return Fail("inspect", image.status().Annotate("reading it from its peers"), json);
  auto rows = InspectReplicas(name, replicas, "", im, nullptr, json, client->get());
  if (json) {
    nlohmann::json j = {{"heap", name},      {"path", nullptr},    {"heap_id", fmt::format("{:#018x}", im.heap_id)},
                        {"epoch", im.epoch}, {"term", im.term},    {"base", fmt::format("{:#x}", im.base)},
                        {"size", im.size},   {"hwm_pages", im.hwm}};
    j["read_from"] = "peers";
    AddImageJson(image.ok() ? image->get() : nullptr, &j);
    j["replicas"] = rows.ok() ? *rows : nlohmann::json::array();
    if (!rows.ok()) j["replicas_error"] = rows.status().message();
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  fmt::print("heap          {}\n", name);
  fmt::print("store         none here: read from its peers\n");
  fmt::print("heap id       {:#018x}\n", im.heap_id);
  fmt::print("durable epoch {} (term {})\n", im.epoch, im.term);
  fmt::print("region        [{:#x}, {:#x})  {} MiB\n", im.base, im.base + im.size, im.size >> 20);
  if (image.ok()) PrintImage(**image);
  if (!rows.ok()) fmt::print("replicas      cannot be read: {}\n", rows.status().ToString());
  return 0;
}

}  // namespace

Result<std::unique_ptr<PageStore>> OpenForReading(const std::string& dir, const std::string& name,
                                                  CorruptionReporter* reporter) {
  PageStoreOptions o;
  o.read_only = true;  // no lock: never in a writer's way
  o.create_if_missing = false;
  return PageStore::Open(dir, name, o, reporter);
}

int RunInspect(const std::string& dir, const std::string& name, bool json, bool verify, size_t max_epochs,
               const ReplicaArgs& replicas, const std::string& html) {
  PrintingReporter reporter;
  auto store = OpenForReading(dir, name, &reporter);
  if (store.status().code() == Status::Code::kNotFound) return InspectFromPeers(name, json, replicas, store.status());
  if (!store.ok()) return Fail("inspect", store.status(), json);
  ImageInfo im = (*store)->image();
  auto epochs = (*store)->Epochs();
  if (!epochs.ok()) return Fail("inspect", epochs.status(), json);
  const StoreFacts store_facts = GetStoreFacts(**store, *epochs);
  const std::vector<EpochRecord> retained = *epochs;  // all of them: a replica's lag in bytes
  if (max_epochs != 0 && epochs->size() > max_epochs) epochs->erase(epochs->begin(), epochs->end() - max_epochs);
  Status verified = verify ? (*store)->Verify(&reporter) : Status::Ok();
  auto preload = ReadPreloadStats(**store);  // present if it ran under libpheap_preload.so
  const long holder = PageStore::Holder(dir, name);
  auto image = StoredImage::Open(**store);  // NotFound before the first commit
  Result<uint64_t> drawn = uint64_t{0};
  if (!html.empty()) {
    drawn = image.ok() ? WritePageMapHtml(html, name, **store, **image, holder) : image.status();
    if (!drawn.ok()) return Fail("inspect", drawn.status().Annotate("the page map"), json);
  }
  if (json) {
    nlohmann::json j = {
        {"heap", name},      {"path", (*store)->path()}, {"heap_id", fmt::format("{:#018x}", im.heap_id)},
        {"epoch", im.epoch}, {"term", im.term},          {"base", fmt::format("{:#x}", im.base)},
        {"size", im.size},   {"hwm_pages", im.hwm}};
    j["holder_pid"] = holder;
    j["store"] = StoreJson(store_facts);
    j["epochs"] = EpochsJson(*epochs);
    AddImageJson(image.ok() ? image->get() : nullptr, &j);
    if (!html.empty()) j["html"] = {{"file", html}, {"pages", *drawn}};
    if (verify) j["verified"] = verified.ok();
    if (preload.ok())
      j["preload"] = {{"program", preload->program}, {"pid", preload->pid}, {"commits", preload->commits},
                      {"commit_ms", preload->commit_ms}, {"pause_p50_ns", preload->pause_p50_ns},
                      {"pause_p99_ns", preload->pause_p99_ns}, {"pause_max_ns", preload->pause_max_ns}};
    auto rows = InspectReplicas(name, replicas, (*store)->path(), im, &retained, json);
    j["replicas"] = rows.ok() ? *rows : nlohmann::json::array();
    if (!rows.ok()) j["replicas_error"] = rows.status().message();
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("heap          {}\n", name);
    fmt::print("store         {}\n", (*store)->path());
    fmt::print("heap id       {:#018x}\n", im.heap_id);
    fmt::print("durable epoch {} (term {})\n", im.epoch, im.term);
    fmt::print("region        [{:#x}, {:#x})  {} MiB\n", im.base, im.base + im.size, im.size >> 20);
    fmt::print("stored pages  {} live, high-water mark {} pages\n", store_facts.stats.live_pages, im.hwm);
    PrintStore(store_facts);
    fmt::print("holder        {}\n", holder > 0 ? fmt::format("pid {}", holder) : "none (closed)");
    if (image.ok()) PrintImage(**image);
    PrintEpochs(*epochs, store_facts);
    if (!html.empty()) fmt::print("page map      {} ({} pages)\n", html, *drawn);
    if (verify) fmt::print("verify        {}\n", verified.ok() ? "every live page checks" : verified.ToString());
    if (preload.ok())
      fmt::print("preload       {} (pid {}): {} commits every {} ms, pause p50 {:.3f} ms, p99 {:.3f} ms, max {:.3f} ms\n",
                 preload->program, preload->pid, preload->commits, preload->commit_ms, preload->pause_p50_ns / 1e6,
                 preload->pause_p99_ns / 1e6, preload->pause_max_ns / 1e6);
    if (auto rows = InspectReplicas(name, replicas, (*store)->path(), im, &retained, json); !rows.ok())
      fmt::print("replicas      cannot be read: {}\n", rows.status().ToString());
  }
  return verified.ok() ? 0 : 2;
}

}  // namespace pheap::tools
