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

// The roots whose address or type differ as of `from` and `to`, by name.
Result<std::vector<RootChange>> RootChanges(const PageStore& store, Epoch from, Epoch to) {
  auto a = StoredImage::OpenAt(store, from);
  if (!a.ok()) return a.status().Annotate(fmt::format("reading the roots as of epoch {}", from));
  auto b = StoredImage::OpenAt(store, to);
  if (!b.ok()) return b.status().Annotate(fmt::format("reading the roots as of epoch {}", to));
  const auto before = ByName((*a)->Roots()), after = ByName((*b)->Roots());
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

}  // namespace

int RunDiff(const std::string& dir, const std::string& name, Epoch from, Epoch to, bool json) {
  auto store = OpenForReading(dir, name);
  if (!store.ok()) return Fail("diff", store.status(), json);
  auto changes = (*store)->Changes(from, to);
  if (!changes.ok()) return Fail("diff", changes.status(), json);
  auto roots = RootChanges(**store, from, to);
  if (json) {
    nlohmann::json j = {{"heap", name}, {"from", from}, {"to", to}, {"pages", changes->pages}};
    j["discarded"] = nlohmann::json::array();
    for (const Run& r : changes->discarded) j["discarded"].push_back({{"first", r.first}, {"count", r.count}});
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
  if (!roots.ok()) {
    fmt::print("roots         not compared: {}\n", roots.status().ToString());
    return 0;
  }
  fmt::print("roots         {} changed\n", roots->size());
  for (const RootChange& c : *roots) fmt::print("  {:<24} {} -> {}\n", c.name, Address(c.from), Address(c.to));
  return 0;
}

}  // namespace pheap::tools
