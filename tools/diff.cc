// `pheap diff`: what changed between two retained epochs of a heap, read
// from its store without taking the writer's lock, as text or JSON.
#include "tools/commands.h"

#include <fmt/format.h>

#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "heap/stored_image.h"
#include "store/page_store.h"

namespace pheap::tools {
namespace {

// A root whose value differs between the two images; an absent side is
// nullopt (the root was set, or cleared, in between).
struct RootChange {
  std::string name, type;
  std::optional<uint64_t> from, to;
};

std::map<std::string, StoredRoot> ByName(const std::vector<StoredRoot>& roots) {
  std::map<std::string, StoredRoot> m;
  for (const StoredRoot& r : roots) m[r.name] = r;
  return m;
}

// The roots whose address or type differ as of `from` and `to` (the image
// `after`), by name.
Result<std::vector<RootChange>> RootChanges(const PageStore& store, Epoch from, const StoredImage& after_image) {
  auto a = StoredImage::OpenAt(store, from);
  if (!a.ok()) return a.status().Annotate(fmt::format("reading the roots as of epoch {}", from));
  const auto before = ByName((*a)->Roots()), after = ByName(after_image.Roots());
  std::map<std::string, RootChange> changes;
  for (const auto& [name, r] : before) {
    auto it = after.find(name);
    if (it != after.end() && it->second.address == r.address && it->second.type == r.type) continue;
    changes[name] = {name, r.type, r.address, std::nullopt};
  }
  for (const auto& [name, r] : after) {
    auto it = before.find(name);
    if (it != before.end() && it->second.address == r.address && it->second.type == r.type) continue;
    changes[name].name = name;
    changes[name].type = r.type;
    changes[name].to = r.address;
  }
  std::vector<RootChange> out;
  for (auto& [name, c] : changes) out.push_back(std::move(c));
  return out;
}

// "0-2, 17, 40-41": pages as a person reads them.
std::string PageRanges(const std::vector<Pgno>& pages) {
  std::string out;
  for (size_t i = 0; i < pages.size();) {
    size_t j = i;
    while (j + 1 < pages.size() && pages[j + 1] == pages[j] + 1) ++j;
    out +=
        (out.empty() ? "" : ", ") + (i == j ? fmt::format("{}", pages[i]) : fmt::format("{}-{}", pages[i], pages[j]));
    i = j + 1;
  }
  return out.empty() ? "none" : out;
}

std::string Address(const std::optional<uint64_t>& a) { return a ? fmt::format("{:#x}", *a) : "(none)"; }

// An extent of the later image, as its allocator describes it, with how
// many of its pages the epochs wrote.
struct ChangedExtent {
  StoredExtent extent;
  uint64_t pages = 0;
};

// The extents of `image` that hold the pages written, in address order.
Result<std::vector<ChangedExtent>> ChangedExtents(const StoredImage& image, uint64_t region_pages,
                                                  const std::vector<Pgno>& written) {
  auto map = image.PageMap(region_pages);
  if (!map.ok()) return map.status();
  std::vector<ChangedExtent> out;
  const uint64_t base = map->extents.empty() ? 0 : map->extents.front().address;
  size_t at = 0;
  for (Pgno p : written) {
    const uint64_t addr = base + p * kPageSize;
    while (at < map->extents.size() && map->extents[at].address + map->extents[at].bytes <= addr) ++at;
    if (at == map->extents.size()) break;
    if (out.empty() || out.back().extent.address != map->extents[at].address) out.push_back({map->extents[at], 0});
    ++out.back().pages;
  }
  return out;
}

std::string Describe(const StoredExtent& e) {
  if (e.use == PageUse::kSmall) return fmt::format("heap page of {} B blocks", e.block_size);
  if (e.use == PageUse::kLarge || e.use == PageUse::kHuge)
    return fmt::format("{} object of {} B", PageUseName(e.use), e.bytes);
  return PageUseName(e.use);
}

}  // namespace

int RunDiff(const std::string& dir, const std::string& name, Epoch from, Epoch to, bool json) {
  auto store = OpenForReading(dir, name);
  if (!store.ok()) return Fail("diff", store.status(), json);
  auto changes = (*store)->Changes(from, to);
  if (!changes.ok()) return Fail("diff", changes.status(), json);
  // What the allocator of the later image says the written pages hold.
  auto after = StoredImage::OpenAt(**store, to);
  Result<std::vector<RootChange>> roots =
      after.ok() ? RootChanges(**store, from, **after)
                 : Result<std::vector<RootChange>>(after.status().Annotate(fmt::format("reading epoch {}", to)));
  Result<std::vector<ChangedExtent>> extents =
      after.ok() ? ChangedExtents(**after, changes->pages.empty() ? 0 : changes->pages.back() + 1, changes->pages)
                 : Result<std::vector<ChangedExtent>>(after.status());
  if (json) {
    nlohmann::json j = {{"heap", name}, {"from", from}, {"to", to}, {"pages", changes->pages}};
    j["discarded"] = nlohmann::json::array();
    for (const Run& r : changes->discarded) j["discarded"].push_back({{"first", r.first}, {"count", r.count}});
    if (extents.ok()) {
      j["extents"] = nlohmann::json::array();
      for (const ChangedExtent& c : *extents) {
        nlohmann::json e = {{"address", fmt::format("{:#x}", c.extent.address)},
                            {"bytes", c.extent.bytes},
                            {"use", PageUseName(c.extent.use)},
                            {"pages_written", c.pages}};
        if (c.extent.use == PageUse::kSmall) e["block_size"] = c.extent.block_size;
        j["extents"].push_back(e);
      }
    } else {
      j["extents"] = nullptr;
      j["extents_error"] = extents.status().ToString();
    }
    if (roots.ok()) {
      j["roots"] = nlohmann::json::array();
      for (const RootChange& c : *roots)
        j["roots"].push_back({{"name", c.name},
                              {"type", c.type},
                              {"from", c.from ? nlohmann::json(Address(c.from)) : nlohmann::json(nullptr)},
                              {"to", c.to ? nlohmann::json(Address(c.to)) : nlohmann::json(nullptr)}});
    } else {
      j["roots"] = nullptr;
      j["roots_error"] = roots.status().ToString();
    }
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  fmt::print("heap          {}\n", name);
  fmt::print("epochs        {} to {}: {} pages written\n", from, to, changes->pages.size());
  fmt::print("pages         {}\n", PageRanges(changes->pages));
  std::string discarded;
  for (const Run& r : changes->discarded)
    discarded += (discarded.empty() ? "" : ", ") +
                 (r.count == 1 ? fmt::format("{}", r.first) : fmt::format("{}-{}", r.first, r.end() - 1));
  fmt::print("discarded     {}\n", discarded.empty() ? "none" : discarded);
  if (extents.ok()) {
    fmt::print("written in    {} extents of epoch {}'s allocator\n", extents->size(), to);
    for (const ChangedExtent& c : *extents)
      fmt::print("  {:#x}  {:>5} pages  {}\n", c.extent.address, c.pages, Describe(c.extent));
  } else {
    fmt::print("written in    not known: {}\n", extents.status().ToString());
  }
  if (!roots.ok()) {
    fmt::print("roots         not compared: {}\n", roots.status().ToString());
    return 0;
  }
  fmt::print("roots         {} changed\n", roots->size());
  for (const RootChange& c : *roots) fmt::print("  {:<24} {} -> {}\n", c.name, Address(c.from), Address(c.to));
  return 0;
}

}  // namespace pheap::tools
