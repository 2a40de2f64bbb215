// `pheap check`: reads every live page of a heap in its local store and on
// each of its replicas, reports each copy that fails its checksum, and with
// --repair rewrites it from a good copy held elsewhere.
//
// The replicas are those the heap records (REPLICATION) or those named with
// --peers; they are read as an inspecting reader, which claims no term and
// so never disturbs a running writer. A local repair takes the store's lock
// as a writer does: it is refused while a process holds the heap open (that
// process repairs what it reads from its replicas itself).
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/page_io.h"
#include "replication/replica_client.h"
#include "store/page_store.h"
#include "tools/commands.h"
#include "tools/replicas.h"

namespace pheap::tools {
namespace {

// One stored copy that fails its checksum.
struct Damage {
  Pgno page = 0;
  std::string file;  // local: the log file; a replica's: in `what`
  uint64_t offset = 0;
  std::string what;
  bool repaired = false;
  std::string repair_error;  // why it was not, when --repair was asked
};

struct Copy {
  std::string where;  // the store's path, or a replica's endpoint
  bool reachable = true;
  Epoch epoch = 0;
  Term term = 0;
  uint64_t pages_checked = 0;
  std::vector<Damage> damaged;
  std::string error;  // why it could not be checked (whole or in part)
};

// A one-line progress bar on stderr when it is a terminal; nothing else.
class ProgressBar {
 public:
  explicit ProgressBar(bool on) : on_(on && ::isatty(STDERR_FILENO) == 1) {}
  ~ProgressBar() { Clear(); }
  void Show(const std::string& what, uint64_t done, uint64_t total) {
    if (!on_ || total == 0) return;
    const uint64_t width = 30, filled = std::min<uint64_t>(width, done * width / total);
    fmt::print(stderr, "\r{:<40.40} [{}{}] {:3}%", what, std::string(filled, '#'), std::string(width - filled, ' '),
               std::min<uint64_t>(100, done * 100 / total));
    shown_ = true;
  }
  void Clear() {
    if (shown_) fmt::print(stderr, "\r{:80}\r", "");
    shown_ = false;
  }

 private:
  bool on_;
  bool shown_ = false;
};

class Collector : public CorruptionReporter {
 public:
  Collector(Copy* copy, ProgressBar* bar) : copy_(copy), bar_(bar) {}
  void Corruption(const std::string& file, uint64_t offset, const std::string& what) override {
    copy_->damaged.push_back(Damage{0, file, offset, what});
  }
  void DamagedPage(Pgno pgno, const std::string& file, uint64_t offset, const std::string& what) override {
    copy_->damaged.push_back(Damage{pgno, file, offset, what});
  }
  void Progress(Pgno done, Pgno total) override { bar_->Show("local store", done, total); }

 private:
  Copy* copy_;
  ProgressBar* bar_;
};

// Reads pages [from, to) from replica i, a run at a time, past each damaged
// page it finds (a damaged answer serves none of its run: the pages before
// the damaged one are read again). False if the replica stopped answering.
bool CheckReplica(ReplicaClient& client, size_t i, Pgno from, Pgno to, Copy* copy, ProgressBar* bar) {
  std::vector<uint8_t> buf(size_t{PageSource::kMaxReadRun} * kPageSize);
  uint64_t present[PageSource::kMaxReadRun / 64];
  for (Pgno first = from; first < to;) {
    bar->Show("replica " + copy->where, first, to);
    const auto count = static_cast<uint32_t>(std::min<Pgno>(to - first, PageSource::kMaxReadRun));
    Pgno bad = ~Pgno{0};
    Status s = client.ReadRunFrom(i, first, count, buf.data(), present, &bad);
    if (s.ok()) {
      for (uint32_t k = 0; k < count; ++k) copy->pages_checked += (present[k / 64] >> (k % 64)) & 1;
      first += count;
      continue;
    }
    if (bad < first || bad >= first + count) {
      copy->error = s.message();
      return false;
    }
    copy->damaged.push_back(Damage{bad, copy->where, 0, s.message()});
    ++copy->pages_checked;
    if (bad > first && !CheckReplica(client, i, first, bad, copy, bar)) return false;
    first = bad + 1;
  }
  return true;
}

// A good copy of page p of the durable image: from the local store (unless
// it is damaged there or holds another image), else from any replica but
// `skip`.
Status GoodCopy(PageStore* local, bool local_current, ReplicaClient* client, size_t skip, Pgno p, uint8_t* out) {
  uint64_t present[1];
  if (local != nullptr && local_current && local->ReadRun(p, 1, out, present).ok() && (present[0] & 1))
    return Status::Ok();
  Status last = Status::NotFound(fmt::format("no good copy of page {} anywhere", p));
  if (client == nullptr) return last;
  for (size_t j = 0; j < client->replicas().size(); ++j) {
    if (j == skip) continue;
    Pgno bad = ~Pgno{0};
    Status s = client->ReadRunFrom(j, p, 1, out, present, &bad);
    if (s.ok() && (present[0] & 1)) return Status::Ok();
    if (!s.ok()) last = s;
  }
  return last;
}

void Print(const std::string& name, Epoch epoch, Term term, const std::vector<Copy>& copies, bool repair) {
  fmt::print("heap '{}': durable epoch {} (term {})\n", name, epoch, term);
  for (const Copy& c : copies) {
    if (!c.reachable) {
      fmt::print("{}: not reachable: {}\n", c.where, c.error);
      continue;
    }
    fmt::print("{}: epoch {} (term {}), {} live pages checked, {}\n", c.where, c.epoch, c.term, c.pages_checked,
               c.damaged.empty() ? "all good" : fmt::format("{} damaged", c.damaged.size()));
    for (const Damage& d : c.damaged) {
      fmt::print("  page {}: {}\n", d.page, d.what);  // names the file and offset
      if (repair) fmt::print("    {}\n", d.repaired ? "repaired" : "NOT repaired: " + d.repair_error);
    }
    if (!c.error.empty()) fmt::print("  not checked to the end: {}\n", c.error);
  }
}

}  // namespace

int RunCheck(const CheckOptions& o) {
  ProgressBar bar(!o.json);
  std::vector<Copy> copies;
  std::unique_ptr<PageStore> local;
  std::error_code ec;
  const bool have_local = std::filesystem::is_directory(std::filesystem::path(o.dir) / o.name, ec);
  if (have_local) {
    PageStoreOptions so;
    so.create_if_missing = false;
    so.read_only = !o.repair;
    auto store = PageStore::Open(o.dir, o.name, so);
    if (!store.ok()) {
      Status s = store.status();
      if (s.code() == Status::Code::kBusy)
        s = s.Annotate(
            "a heap held open cannot be repaired from outside: close it, or let it repair what it "
            "reads from its replicas; `pheap check` without --repair reports only");
      return Fail("check", s, o.json);
    }
    local = std::move(*store);
    Copy c;
    c.where = local->path();
    c.epoch = local->image().epoch;
    c.term = local->image().term;
    c.pages_checked = local->stats().live_pages;
    Collector collect(&c, &bar);
    Status v = local->Verify(&collect);
    bar.Clear();
    if (!v.ok() && c.damaged.empty()) c.error = v.message();
    copies.push_back(std::move(c));
  }
  auto set = ReplicaSetOf(o.replicas, have_local ? local->path() : "");
  if (!set.ok()) return Fail("check", set.status(), o.json);
  if (!have_local && set->replication.peers.empty())
    return Fail("check",
                Status::NotFound(fmt::format("heap '{}': no store under {} and no peers: give the store directory "
                                             "with --dir, or the heap's peers with --peers",
                                             o.name, o.dir)),
                o.json);

  std::unique_ptr<ReplicaClient> client;
  Epoch epoch = have_local ? local->image().epoch : 0;
  Term term = have_local ? local->image().term : 0;
  if (!set->replication.peers.empty()) {
    auto opened = DialReplicas(o.name, *set, /*claim=*/false);
    if (!opened.ok()) {
      Copy c;
      c.where = DescribeReplication(set->replication);
      c.reachable = false;
      c.error = opened.status().message();
      copies.push_back(std::move(c));
    } else {
      client = std::move(*opened);
      const ImageInfo im = client->image();
      if (!have_local || NewerImage(im, local->image())) {
        epoch = im.epoch;
        term = im.term;
      }
      const std::vector<ReplicaState> states = client->state();
      for (size_t i = 0; i < states.size(); ++i) {
        Copy c;
        c.where = states[i].endpoint;
        c.reachable = states[i].answered;
        c.epoch = states[i].durable;
        c.term = states[i].durable == im.epoch ? im.term : 0;
        if (!c.reachable) c.error = "did not answer";
        else if (states[i].durable != im.epoch)
          c.error = fmt::format("holds epoch {}, not the durable image's {}: it is caught up by the writer",
                                states[i].durable, im.epoch);
        else CheckReplica(*client, i, 0, im.hwm, &c, &bar);
        bar.Clear();
        copies.push_back(std::move(c));
      }
    }
  }

  if (o.repair) {
    const bool local_current = have_local && local->image().epoch == epoch && local->image().term == term;
    std::vector<uint8_t> page(kPageSize);
    for (size_t ci = 0; ci < copies.size(); ++ci) {
      Copy& c = copies[ci];
      const bool is_local = have_local && ci == 0;
      for (Damage& d : c.damaged) {
        // A replica's own index in the client: the copies after the local one.
        const size_t skip = is_local ? ~size_t{0} : ci - (have_local ? 1 : 0);
        Status got = GoodCopy(is_local ? nullptr : local.get(), local_current, client.get(), skip, d.page, page.data());
        Status s =
            got.ok() ? (is_local ? local->RepairPage(d.page, page.data()) : client->RepairOn(skip, d.page, page.data()))
                     : got;
        d.repaired = s.ok();
        if (s.ok() && is_local) {  // read back through the checksum
          uint64_t present[1];
          Status back = local->ReadRun(d.page, 1, page.data(), present);
          d.repaired = back.ok();
          if (!back.ok()) s = back;
        }
        if (!d.repaired) d.repair_error = s.message();
      }
    }
  }

  uint64_t damaged = 0, repaired = 0;
  bool incomplete = false;
  for (const Copy& c : copies) {
    damaged += c.damaged.size();
    incomplete |= !c.error.empty();
    for (const Damage& d : c.damaged) repaired += d.repaired;
  }
  if (o.json) {
    nlohmann::json j = {{"heap", o.name},     {"epoch", epoch},       {"term", term},
                        {"damaged", damaged}, {"repaired", repaired}, {"complete", !incomplete}};
    j["copies"] = nlohmann::json::array();
    for (const Copy& c : copies) {
      nlohmann::json jc = {{"where", c.where},         {"local", have_local && &c == &copies[0]},
                           {"reachable", c.reachable}, {"epoch", c.epoch},
                           {"term", c.term},           {"pages_checked", c.pages_checked}};
      jc["damaged"] = nlohmann::json::array();
      for (const Damage& d : c.damaged) {
        nlohmann::json jd = {{"page", d.page}, {"what", d.what}, {"repaired", d.repaired}};
        if (!d.file.empty() && d.file != c.where) {
          jd["file"] = d.file;
          jd["offset"] = d.offset;
        }
        if (!d.repair_error.empty()) jd["repair_error"] = d.repair_error;
        jc["damaged"].push_back(jd);
      }
      if (!c.error.empty()) jc["error"] = c.error;
      j["copies"].push_back(jc);
    }
    fmt::print("{}\n", j.dump(2));
  } else {
    Print(o.name, epoch, term, copies, o.repair);
    fmt::print("{} damaged {}{}{}\n", damaged, damaged == 1 ? "copy" : "copies",
               o.repair ? fmt::format(", {} repaired", repaired) : "",
               incomplete ? "; some copies could not be checked to the end" : "");
  }
  if (damaged > repaired) return 2;
  return incomplete ? 1 : 0;
}

}  // namespace pheap::tools
