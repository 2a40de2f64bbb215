// `pheap inspect --html FILE`: the page map. One self-contained file (inline
// CSS and script, no network), so it can be mailed or attached to a bug.
// The pages travel run-length encoded: a heap's pages come in long runs of
// one use and one epoch, so even a large heap makes a small file.
#include <cerrno>
#include <cstdio>
#include <map>

#include <fmt/format.h>

#include "base/residency.h"
#include "tools/inspect_sections.h"

namespace pheap::tools {
namespace {

// [value, count, value, count, ...] of `v`, by runs.
template <typename V, typename F>
nlohmann::json RunLengths(const V& v, F value) {
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i < v.size();) {
    size_t j = i + 1;
    while (j < v.size() && value(j) == value(i)) ++j;
    out.push_back(value(i));
    out.push_back(j - i);
    i = j;
  }
  return out;
}

// The page (everything but the data, which replaces DATA in the script).
constexpr char kPage[] = R"html(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>pheap page map</title>
<style>
body{font:13px system-ui,sans-serif;margin:12px;color:#222;background:#fafafa}
h1{font-size:16px;margin:0 0 4px}
#summary{margin:0 0 6px;color:#444;white-space:pre-wrap}
#controls{margin:6px 0;display:flex;gap:8px;flex-wrap:wrap;align-items:center}
#controls input[type=number]{width:7em}
#wrap{position:relative;display:inline-block}
canvas{border:1px solid #999;background:#f0f0f0;cursor:crosshair;display:block}
#tip{position:absolute;pointer-events:none;background:rgba(255,255,255,.96);border:1px solid #888;
  padding:4px 6px;font:12px monospace;white-space:pre;display:none;z-index:2}
#legend{margin-top:8px;display:flex;flex-wrap:wrap;gap:4px 14px;align-items:center}
.sw{display:inline-block;width:12px;height:12px;border:1px solid #777;vertical-align:middle;margin-right:4px}
.grad{display:inline-block;width:160px;height:12px;border:1px solid #777;vertical-align:middle;margin:0 4px}
#note{color:#555;margin-top:6px}
</style></head><body>
<h1 id="title"></h1>
<div id="summary"></div>
<div id="controls">
 <span>colour by</span>
 <label><input type="radio" name="mode" value="use" checked> contents</label>
 <label><input type="radio" name="mode" value="epoch"> epoch last written</label>
 <label><input type="radio" name="mode" value="res"> resident in the writer</label>
 <span>| pages</span> <input type="number" id="from" min="0"> <span>to</span> <input type="number" id="to" min="1">
 <button id="zoom">zoom</button> <button id="out">zoom out</button> <button id="all">all pages</button>
 <span>drawn: <span id="pages-drawn">0</span> of <span id="pages-total">0</span> pages</span>
</div>
<div id="wrap"><canvas id="map" width="1000" height="400"></canvas><div id="tip"></div></div>
<div id="legend"></div>
<div id="note">Drag across the map to zoom into a page range; hover a cell for its page. One cell is one 4 KiB
page, or when the range holds more pages than the map has pixels, several (the cell shows the one that holds data,
the newest epoch, or a resident page).</div>
<script>
"use strict";
const D = DATA;
function runs(a, T) {
  let n = 0;
  for (let i = 1; i < a.length; i += 2) n += a[i];
  const o = new T(n);
  for (let i = 0, k = 0; i < a.length; k += a[i + 1], i += 2) o.fill(a[i], k, k + a[i + 1]);
  return o;
}
const N = D.pages, use = runs(D.use, Uint16Array), ep = runs(D.epochs, Float64Array);
const res = D.resident ? runs(D.resident, Uint8Array) : null;
const USE = ["slack (never written)", "superblock", "allocator metadata", "small blocks", "large object",
             "huge object", "free"];
const USE_COL = [[200, 200, 200], [106, 61, 154], [50, 50, 50], null, [255, 127, 0], [227, 26, 28], [255, 255, 255]];
const USE_RANK = [0, 2, 3, 5, 6, 7, 1];
function hsl(h, s, l) {
  const a = s * Math.min(l, 1 - l);
  const f = n => { const k = (n + h / 30) % 12; return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1)))); };
  return [f(0), f(8), f(4)];
}
// Size classes from yellow-green to blue, neighbours told apart by lightness.
const BIN_INDEX = new Map(D.bins.map(([b], i) => [b, i]));
const binCol = b => { const i = BIN_INDEX.get(b) || 0; return hsl(70 + 150 * i / Math.max(1, D.bins.length - 1), 0.65, i % 2 ? 0.52 : 0.36); };
let emin = Infinity, emax = 0;
for (let i = 0; i < N; ++i) if (ep[i] > 0) { emin = Math.min(emin, ep[i]); emax = Math.max(emax, ep[i]); }
const STOPS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function epochCol(e) {
  if (e === 0) return [255, 255, 255];
  const t = emax === emin ? 1 : (e - emin) / (emax - emin), x = t * (STOPS.length - 1), i = Math.min(Math.floor(x), STOPS.length - 2), f = x - i;
  return STOPS[i].map((v, j) => Math.round(v + f * (STOPS[i + 1][j] - v)));
}
const RES = ["not resident", "resident", "unknown"], RES_COL = [[225, 225, 225], [27, 158, 119], [150, 150, 150]];
let mode = "use", lo = 0, hi = N, L = null, drag = null;
const cv = document.getElementById("map"), ctx = cv.getContext("2d"), tip = document.getElementById("tip");
const code = p => use[p] & 7, resOf = p => res ? res[p] : 2;
function colour(p) {
  if (mode === "use") return code(p) === 3 ? binCol(use[p] >> 3) : USE_COL[code(p)];
  if (mode === "epoch") return epochCol(ep[p]);
  return RES_COL[resOf(p)];
}
function rank(p) {
  if (mode === "use") return USE_RANK[code(p)];
  if (mode === "epoch") return ep[p];
  return resOf(p) === 1 ? 2 : resOf(p) === 2 ? 1 : 0;
}
// Cells of c x c pixels, k pages each, row by row: the largest cells that
// fit the canvas's width and MAX_H, and the canvas cut to the rows drawn.
const MAX_H = 720;
function layout(n) {
  const W = cv.width;
  let k = 1, c = Math.max(1, Math.min(48, Math.floor(Math.sqrt(W * MAX_H / Math.max(n, 1)))));
  let cols = Math.floor(W / c);
  while (c > 1 && Math.ceil(n / cols) * c > MAX_H) cols = Math.floor(W / --c);
  if (Math.ceil(n / cols) * c > MAX_H) k = Math.ceil(n / (cols * Math.floor(MAX_H / c)));
  const cells = Math.ceil(n / k);
  return {c, k, cols, cells, h: Math.max(c, Math.ceil(cells / cols) * c)};
}
function draw() {
  L = layout(hi - lo);
  if (cv.height !== L.h) cv.height = L.h;
  const W = cv.width, H = cv.height, img = ctx.createImageData(W, H), px = img.data;
  for (let i = 0; i < px.length; i += 4) { px[i] = px[i + 1] = px[i + 2] = 240; px[i + 3] = 255; }
  const gap = L.c >= 4 ? 1 : 0;
  let drawn = 0;
  for (let j = 0; j < L.cells; ++j) {
    const p0 = lo + j * L.k, p1 = Math.min(hi, p0 + L.k);
    let best = p0;
    for (let p = p0 + 1; p < p1; ++p) if (rank(p) > rank(best)) best = p;
    drawn += p1 - p0;
    const col = colour(best), x0 = (j % L.cols) * L.c, y0 = Math.floor(j / L.cols) * L.c;
    for (let y = y0; y < y0 + L.c - gap; ++y)
      for (let x = x0, o = (y * W + x0) * 4; x < x0 + L.c - gap; ++x, o += 4) { px[o] = col[0]; px[o + 1] = col[1]; px[o + 2] = col[2]; }
  }
  ctx.putImageData(img, 0, 0);
  document.getElementById("from").value = lo;
  document.getElementById("to").value = hi;
  document.getElementById("pages-drawn").textContent = drawn;
  legend();
}
function sw(col, text) {
  return `<span><span class="sw" style="background:rgb(${col})"></span>${text}</span>`;
}
function size(n) {
  return n < 1024 ? n + " B" : n < 1048576 ? (n / 1024).toFixed(n % 1024 ? 1 : 0) + " KiB" : (n / 1048576).toFixed(1) + " MiB";
}
function legend() {
  const el = document.getElementById("legend");
  if (mode === "use") {
    let h = USE.map((u, i) => i === 3 ? "" : sw(USE_COL[i], u)).join("");
    h += "<span>small blocks by size class:</span>" + D.bins.map(([b, s]) => sw(binCol(b), size(s))).join("");
    el.innerHTML = h;
  } else if (mode === "epoch") {
    const g = STOPS.map(s => `rgb(${s})`).join(",");
    el.innerHTML = sw([255, 255, 255], "never stored (reads as zeros)") + (emax > 0 ?
      `<span>epoch ${emin}<span class="grad" style="background:linear-gradient(to right,${g})"></span>${emax}</span>` : "");
  } else {
    el.innerHTML = RES.map((r, i) => sw(RES_COL[i], r)).join("") + `<span>${D.residency_note}</span>`;
  }
}
function extentOf(p) {
  const lo_ = p * 4096, hi_ = lo_ + 4096, E = D.extents;
  let a = 0, b = E.length - 1, r = -1;
  while (a <= b) { const m = (a + b) >> 1; if (E[m][0] < hi_) { r = m; a = m + 1; } else b = m - 1; }
  for (let i = r; i >= 0 && E[i][0] + E[i][1] > lo_; --i) if (E[i][2] === code(p)) return E[i];
  return r >= 0 ? E[r] : null;
}
const hex = n => "0x" + n.toString(16);
function describe(p) {
  const e = extentOf(p), c = code(p);
  let s = `page ${p}  ${hex(D.base + p * 4096)}\n${USE[c]}`;
  if (e && c === 3) {
    s += `, ${size(e[4])} blocks\nheap page ${hex(D.base + e[0])} (${size(e[1])}): ${e[5]} of ${e[7]} blocks live` +
         ` (${e[6]} carved so far)\n` + (e[8] < 0 ? "abandoned (no owner)" : `owned by thread heap ${e[8]}`);
  } else if (e && (c === 4 || c === 5)) {
    s += ` at ${hex(D.base + e[0])}, ${size(e[1])}`;
  }
  s += "\n" + (ep[p] > 0 ? `last written in epoch ${ep[p]}` : "never stored (reads as zeros)");
  s += `\nin the writer: ${RES[resOf(p)]}`;
  return s;
}
function cellAt(ev) {
  const r = cv.getBoundingClientRect(), x = Math.floor(ev.clientX - r.left), y = Math.floor(ev.clientY - r.top);
  if (!L || x < 0 || y < 0 || x >= L.cols * L.c) return -1;
  const j = Math.floor(y / L.c) * L.cols + Math.floor(x / L.c);
  return j < L.cells ? j : -1;
}
cv.addEventListener("mousemove", ev => {
  const j = cellAt(ev);
  if (j < 0) { tip.style.display = "none"; return; }
  const p = lo + j * L.k, last = Math.min(hi, p + L.k) - 1;
  tip.textContent = (last > p ? `pages ${p}..${last} (first shown)\n` : "") + describe(p);
  tip.style.left = (ev.offsetX + 14) + "px";
  tip.style.top = (ev.offsetY + 14) + "px";
  tip.style.display = "block";
});
cv.addEventListener("mouseleave", () => { tip.style.display = "none"; });
cv.addEventListener("mousedown", ev => { drag = cellAt(ev); });
cv.addEventListener("mouseup", ev => {
  const j = cellAt(ev);
  if (drag !== null && drag >= 0 && j >= 0 && j !== drag) {
    const a = lo + Math.min(drag, j) * L.k, b = Math.min(hi, lo + (Math.max(drag, j) + 1) * L.k);
    lo = a; hi = b; draw();
  }
  drag = null;
});
document.getElementById("zoom").onclick = () => {
  const a = Math.max(0, Math.min(N - 1, +document.getElementById("from").value | 0));
  const b = Math.max(a + 1, Math.min(N, +document.getElementById("to").value | 0));
  lo = a; hi = b; draw();
};
document.getElementById("out").onclick = () => {
  const w = (hi - lo) * 4, mid = (lo + hi) / 2;
  lo = Math.max(0, Math.floor(mid - w / 2)); hi = Math.min(N, lo + w); draw();
};
document.getElementById("all").onclick = () => { lo = 0; hi = N; draw(); };
for (const r of document.querySelectorAll("input[name=mode]")) r.onchange = () => { mode = r.value; draw(); };
document.getElementById("title").textContent = D.title;
document.getElementById("summary").textContent = D.summary;
document.getElementById("pages-total").textContent = N;
cv.width = Math.max(400, Math.min(1600, window.innerWidth - 40));
draw();
</script></body></html>
)html";

std::string Size(uint64_t n) {
  if (n < (uint64_t{1} << 20)) return fmt::format("{:.1f} KiB", n / 1024.0);
  if (n < (uint64_t{1} << 30)) return fmt::format("{:.1f} MiB", n / 1048576.0);
  return fmt::format("{:.2f} GiB", n / 1073741824.0);
}

}  // namespace

Result<uint64_t> WritePageMapHtml(const std::string& file, const std::string& heap, PageStore& store,
                                  const StoredImage& image, long holder) {
  const ImageInfo im = store.image();
  auto map = image.PageMap(im.hwm);
  if (!map.ok()) return map.status();
  const std::vector<Epoch> epochs = store.PageEpochs(0, im.hwm);
  nlohmann::json d;
  d["title"] = fmt::format("pheap page map: {}", heap);
  std::string summary = fmt::format("epoch {} (term {}), region [{:#x}, {:#x}), {} pages up to the high-water mark",
                                    im.epoch, im.term, im.base, im.base + im.size, im.hwm);
  if (auto f = image.AllocatorFacts(); f.ok())
    summary += fmt::format(
        "\nallocator: {} live in {} blocks, {} free, {} in use ({:.2f}x live), "
        "{} large and {} huge objects, largest free run {}",
        Size(f->live_bytes), f->live_blocks, Size(f->free_bytes), Size(f->used_bytes), f->fragmentation,
        f->large_objects, f->huge_objects, Size(f->largest_free_run));
  d["summary"] = summary;
  d["base"] = im.base;
  d["pages"] = im.hwm;
  // A page's use in the low 3 bits, a small page's size class above them.
  static_assert(static_cast<int>(PageUse::kFree) < 8);
  d["use"] = RunLengths(map->use, [&](size_t i) { return static_cast<unsigned>(map->use[i]) | map->bin[i] << 3; });
  d["epochs"] = RunLengths(epochs, [&](size_t i) { return epochs[i]; });
  d["resident"] = nullptr;
  d["residency_note"] = "unknown: the heap is closed, so no writer holds its pages";
  if (holder > 0) {
    auto resident = ResidentPages(holder, im.base, im.hwm);
    if (resident.ok()) {
      d["resident"] = RunLengths(*resident, [&](size_t i) { return (*resident)[i] ? 1 : 0; });
      d["residency_note"] = fmt::format("as the page table of the writer, pid {}, showed it at inspection", holder);
    } else {
      d["residency_note"] = fmt::format("unknown: the page table of the writer, pid {}, could not be read ({})", holder,
                                        resident.status().message());
    }
  }
  // Extents that say more than their pages' colour: heap pages and objects.
  nlohmann::json extents = nlohmann::json::array();
  std::map<unsigned, uint64_t> bins;
  for (const StoredExtent& e : map->extents) {
    if (e.use != PageUse::kSmall && e.use != PageUse::kLarge && e.use != PageUse::kHuge) continue;
    extents.push_back({e.address - im.base, e.bytes, static_cast<int>(e.use), e.bin, e.block_size, e.live_blocks,
                       e.capacity, e.reserved, e.thread_heap});
    if (e.use == PageUse::kSmall) bins[e.bin] = e.block_size;
  }
  d["extents"] = std::move(extents);
  d["bins"] = nlohmann::json::array();
  for (const auto& [bin, block_size] : bins) d["bins"].push_back({bin, block_size});

  // "</" must not end the script early, whatever a string holds.
  const std::string data = d.dump();
  const std::string page_text = kPage;
  const size_t slot = page_text.find("DATA;");
  std::string page = page_text.substr(0, slot);
  page.reserve(page_text.size() + data.size() + data.size() / 64);
  for (size_t i = 0; i < data.size(); ++i) {
    page += data[i];
    if (data[i] == '<' && i + 1 < data.size() && data[i + 1] == '/') page += '\\';
  }
  page += page_text.substr(slot + 4);

  FILE* out = std::fopen(file.c_str(), "w");
  if (out == nullptr) return Status::FromErrno("writing the page map to " + file, errno);
  const bool written = std::fwrite(page.data(), 1, page.size(), out) == page.size();
  const int err = errno;
  if (std::fclose(out) != 0 || !written)
    return Status::FromErrno("writing the page map to " + file, written ? errno : err);
  return im.hwm;
}

}  // namespace pheap::tools
