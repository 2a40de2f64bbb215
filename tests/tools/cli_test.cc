// The `pheap` command's heap management: ls, rm, inspect (text, JSON and the
// HTML page map, drawn by headless Chromium), diff, --help, --version, and
// errors that stay JSON in --json mode. argv[1] is the pheap command.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <typeinfo>
#include <vector>

#include "pheap/pheap.h"
#include "tests/support/local_peers.h"
#include "tests/support/test_util.h"

namespace {

std::string g_pheap;

class PheapCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (g_pheap.empty()) GTEST_SKIP() << "give the pheap command's path as the first argument";
    char tmpl[] = "/tmp/pheap-cli-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  // The config of a heap in dir_ replicated on all three of `peers`.
  std::string Replicated(const pheaptest::LocalPeers& peers, const std::string& extra = "") const {
    return "dir=" + dir_ + ";size=64M;replicas=3;quorum=2;" + extra + "peers=" + peers.endpoints();
  }
  // Opens heap `name` so, roots one block, commits `commits` times, closes it.
  void CommitReplicated(const std::string& name, const pheaptest::LocalPeers& peers, int commits) {
    pheap* h = pheap_open(name.c_str(), Replicated(peers).c_str());
    ASSERT_NE(h, nullptr) << pheap_last_error();
    ASSERT_EQ(pheap_set_root(h, "x", pheap_calloc(h, 1, 64)), 0);
    for (int i = 0; i < commits; ++i) ASSERT_GT(pheap_commit(h), 0) << pheap_last_error();
    ASSERT_EQ(pheap_close(h), 0) << pheap_last_error();
  }

  // A heap NAME with `commits` commits of a counter root; left open if `keep`.
  pheap* MakeHeap(const std::string& name, int commits, bool keep = false) {
    pheap* h = pheap_open(name.c_str(), ("dir=" + dir_ + ";size=64M").c_str());
    EXPECT_NE(h, nullptr) << pheap_last_error();
    if (h == nullptr) return nullptr;
    auto* count = static_cast<uint64_t*>(pheap_calloc(h, 1, sizeof(uint64_t)));
    EXPECT_EQ(pheap_set_root(h, "count", count), 0);
    for (int i = 0; i < commits; ++i) {
      ++*count;
      EXPECT_GT(pheap_commit(h), 0) << pheap_last_error();
    }
    if (keep) return h;
    pheap_close(h);
    return nullptr;
  }

  // Runs `pheap ARGS`; its exit status; stdout in *out, stderr in *err.
  int Pheap(const std::string& args, std::string* out, std::string* err = nullptr) {
    const std::string err_file = dir_ + "/.stderr";
    int rc = pheaptest::RunCommand(g_pheap + " " + args + " 2>" + err_file, out);
    std::string e;
    pheaptest::RunCommand("cat " + err_file, &e);
    std::filesystem::remove(err_file);
    if (err != nullptr) *err = e;
    return rc;
  }

  nlohmann::json Listed(const std::string& name) {
    std::string out;
    EXPECT_EQ(Pheap("ls --json --dir " + dir_, &out), 0);
    const nlohmann::json listing = nlohmann::json::parse(out);
    for (const auto& h : listing["heaps"])
      if (h["name"] == name) return h;
    return nullptr;
  }

  std::string dir_;
};

TEST_F(PheapCli, VersionNamesTheRelease) {
  std::string out;
  ASSERT_EQ(Pheap("--version", &out), 0);
  EXPECT_EQ(out, std::string("pheap ") + PHEAP_VERSION + "\n");
}

TEST_F(PheapCli, LsShowsEachHeapsEpochSizeAndHolder) {
  MakeHeap("first", 3);
  pheap* held = MakeHeap("second", 1, /*keep=*/true);
  ASSERT_NE(held, nullptr);
  std::filesystem::copy(dir_ + "/first", dir_ + "/first.stale-epoch-2-term-0",  // as recovery leaves one
                        std::filesystem::copy_options::recursive);

  nlohmann::json first = Listed("first"), second = Listed("second");
  ASSERT_FALSE(first.is_null());
  ASSERT_FALSE(second.is_null());
  EXPECT_GE(first["epoch"].get<uint64_t>(), 3u);
  EXPECT_EQ(first["size"].get<uint64_t>(), 64u << 20);
  EXPECT_GT(first["live_bytes"].get<uint64_t>(), 0u);
  EXPECT_EQ(first["holder_pid"].get<long>(), 0);
  EXPECT_FALSE(first["set_aside"].get<bool>());
  EXPECT_EQ(second["holder_pid"].get<long>(), ::getpid());
  EXPECT_TRUE(Listed("first.stale-epoch-2-term-0")["set_aside"].get<bool>());

  std::string text;
  ASSERT_EQ(Pheap("ls --dir " + dir_, &text), 0);
  EXPECT_NE(text.find("pid " + std::to_string(::getpid())), std::string::npos) << text;
  EXPECT_NE(text.find("set aside"), std::string::npos) << text;
  pheap_close(held);
}

TEST_F(PheapCli, RmRefusesAHeldHeapAndRemovesAClosedOne) {
  pheap* held = MakeHeap("victim", 2, /*keep=*/true);
  ASSERT_NE(held, nullptr);
  std::string out, err;
  EXPECT_EQ(Pheap("rm victim --dir " + dir_, &out, &err), 1);
  EXPECT_NE(err.find("held by pid " + std::to_string(::getpid())), std::string::npos) << err;
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/victim"));
  pheap_close(held);

  out.clear();
  ASSERT_EQ(Pheap("rm victim --dir " + dir_, &out, &err), 0) << err;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/victim"));
  EXPECT_TRUE(Listed("victim").is_null());
  // Nothing of it is left beside the other heaps either.
  for (const auto& e : std::filesystem::directory_iterator(dir_))
    EXPECT_EQ(e.path().filename().string().find("victim"), std::string::npos) << e.path();
  // A new heap of that name starts empty.
  pheap* again = pheap_open("victim", ("dir=" + dir_ + ";size=64M").c_str());
  ASSERT_NE(again, nullptr) << pheap_last_error();
  EXPECT_EQ(pheap_root(again, "count"), nullptr);
  pheap_close(again);
}

TEST_F(PheapCli, ErrorsStayJsonInJsonModeAndNameNoInternalOption) {
  pheap* held = MakeHeap("held", 1, /*keep=*/true);
  struct Case {
    std::string args, code;
  } cases[] = {
      {"inspect missing --json --dir " + dir_, "not_found"},
      {"rm missing --json --dir " + dir_, "not_found"},
      {"rm held --json --dir " + dir_, "busy"},
      {"ls --json --dir " + dir_ + "/nowhere", "not_found"},
  };
  for (const Case& c : cases) {
    std::string out, err;
    EXPECT_EQ(Pheap(c.args, &out, &err), 1) << c.args;
    nlohmann::json j = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(j.is_discarded()) << c.args << ": not JSON: " << out;
    EXPECT_EQ(j["error"]["code"], c.code) << c.args;
    const std::string message = j["error"]["message"].get<std::string>();
    EXPECT_FALSE(message.empty());
    EXPECT_EQ(message.find("create_if_missing"), std::string::npos) << message;
    EXPECT_EQ(err, "") << c.args;
  }
  std::string out, err;
  EXPECT_EQ(Pheap("inspect missing --dir " + dir_, &out, &err), 1);
  EXPECT_NE(err.find("check the dir and the heap name"), std::string::npos) << err;
  pheap_close(held);
}

// inspect names the roots with their demangled types and addresses, the
// holder, and whether the heap declared code pointers.
TEST_F(PheapCli, InspectShowsRootsHolderAndCodePointerState) {
  pheap* h = pheap_open("rooted", ("dir=" + dir_ + ";size=64M").c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  void* a = pheap_calloc(h, 1, 64);
  void* b = pheap_calloc(h, 1, 64);
  ASSERT_EQ(pheap_set_root_typed(h, "books", a, typeid(std::map<int, std::string>).name()), 0);
  ASSERT_EQ(pheap_set_root(h, "plain", b), 0);
  ASSERT_EQ(pheap_set_root(h, "gone", b), 0);
  ASSERT_EQ(pheap_set_root(h, "gone", nullptr), 0);
  // As the C++ interface records a type: with its size and alignment.
  const std::string tag = std::string(typeid(std::vector<int>).name()) + "/24/8";
  ASSERT_EQ(pheap_set_root_typed(h, "counts", b, tag.c_str()), 0);
  ASSERT_EQ(pheap_holds_code(h), 0);
  ASSERT_GT(pheap_commit(h), 0) << pheap_last_error();

  std::string out;
  ASSERT_EQ(Pheap("inspect rooted --json --dir " + dir_, &out), 0);
  nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_EQ(j["holder_pid"].get<long>(), ::getpid());
  EXPECT_TRUE(j["writer"]["holds_code"].get<bool>());
  EXPECT_NE(j["writer"]["tracking"].get<std::string>(), "") << "the writer's tracking mode is recorded";
  ASSERT_EQ(j["roots"].size(), 3u) << j["roots"].dump();
  EXPECT_EQ(j["roots"][1]["name"], "counts");
  EXPECT_EQ(j["roots"][1]["type"], "std::vector<int, std::allocator<int> > (24 bytes, align 8)")
      << j["roots"][1].dump();
  EXPECT_EQ(j["roots"][0]["name"], "books");
  EXPECT_EQ(j["roots"][0]["type"].get<std::string>().rfind("std::map<int, std::", 0), 0u) << j["roots"][0].dump();
  EXPECT_EQ(j["roots"][0]["address"], fmt::format("{:#x}", reinterpret_cast<uintptr_t>(a)));
  EXPECT_EQ(j["roots"][2]["name"], "plain");
  EXPECT_EQ(j["roots"][2]["type"], "");
  EXPECT_GE(j["store"]["space_amplification"].get<double>(), 1.0);
  pheap_close(h);

  out.clear();
  ASSERT_EQ(Pheap("inspect rooted --dir " + dir_, &out), 0);
  EXPECT_NE(out.find("none (closed)"), std::string::npos) << out;
  EXPECT_NE(out.find("std::map<int, std::"), std::string::npos) << out;
  EXPECT_NE(out.find("checked at open"), std::string::npos) << out;
}

// Flips one byte of every stored page under `dir` whose first word is
// `word`; returns how many.
int DamagePagesStarting(const std::string& dir, uint64_t word) {
  return pheaptest::DamageStoredCopies(dir, [word](const char* page) {
    uint64_t w;
    std::memcpy(&w, page, 8);
    return w == word;
  });
}

// A page damaged in the local store and another on one replica: check
// names both (page, file and offset, replica), --repair rewrites each from
// a good copy elsewhere, and the heap reads back every byte.
TEST_F(PheapCli, CheckFindsDamageLocallyAndOnReplicasAndRepairsIt) {
  PHEAP_SKIP_UNDER_TSAN("libzmq, in this test and in the pheap peers it starts, is not built with TSan");
  pheaptest::LocalPeers peers(g_pheap, dir_, 3);
  const std::string cfg = Replicated(peers);
  constexpr uint64_t kTag = 0xc0ffee0000000000ull, kPages = 16;
  pheap* h = pheap_open("checked", cfg.c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  auto* block = static_cast<uint64_t*>(pheap_aligned_alloc(h, 4096, kPages * 4096));
  ASSERT_NE(block, nullptr);
  for (uint64_t p = 0; p < kPages; ++p)
    for (uint64_t w = 0; w < 512; ++w) block[p * 512 + w] = kTag + p * 1000 + w;
  ASSERT_EQ(pheap_set_root(h, "block", block), 0);
  ASSERT_GT(pheap_commit(h), 0) << pheap_last_error();
  const uint64_t first = (reinterpret_cast<uintptr_t>(block) - reinterpret_cast<uintptr_t>(pheap_base(h))) / 4096;
  ASSERT_EQ(pheap_close(h), 0) << pheap_last_error();

  std::string out, err;
  ASSERT_EQ(Pheap("check checked --dir " + dir_, &out, &err), 0) << out << err;
  ASSERT_GE(DamagePagesStarting(dir_ + "/checked", kTag + 3 * 1000), 1);
  ASSERT_GE(DamagePagesStarting(peers.dir(1), kTag + 7 * 1000), 1);

  out.clear();
  ASSERT_EQ(Pheap("check checked --json --dir " + dir_, &out, &err), 2) << out << err;
  nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_EQ(j["damaged"], 2) << j.dump(2);
  ASSERT_EQ(j["copies"].size(), 4u) << j.dump(2);  // the local store and three replicas
  const auto& local = j["copies"][0];
  EXPECT_TRUE(local["local"].get<bool>());
  ASSERT_EQ(local["damaged"].size(), 1u) << local.dump(2);
  EXPECT_EQ(local["damaged"][0]["page"], first + 3);
  EXPECT_NE(local["damaged"][0]["file"].get<std::string>().find(".pheap"), std::string::npos);
  EXPECT_GT(local["damaged"][0]["offset"].get<uint64_t>(), 0u);
  int on_replicas = 0;
  for (size_t i = 1; i < 4; ++i) {
    const auto& c = j["copies"][i];
    EXPECT_TRUE(c["reachable"].get<bool>()) << c.dump(2);
    EXPECT_GE(c["pages_checked"].get<uint64_t>(), kPages) << c.dump(2);
    for (const auto& d : c["damaged"]) {
      EXPECT_EQ(d["page"], first + 7) << c.dump(2);
      EXPECT_NE(c["where"].get<std::string>().find("peer1"), std::string::npos) << c.dump(2);
      ++on_replicas;
    }
  }
  EXPECT_EQ(on_replicas, 1) << j.dump(2);

  out.clear();
  ASSERT_EQ(Pheap("check checked --repair --json --dir " + dir_, &out, &err), 0) << out << err;
  j = nlohmann::json::parse(out);
  EXPECT_EQ(j["repaired"], 2) << j.dump(2);
  out.clear();
  ASSERT_EQ(Pheap("check checked --dir " + dir_, &out, &err), 0) << out << err;
  EXPECT_NE(out.find("0 damaged copies"), std::string::npos) << out;

  h = pheap_open("checked", cfg.c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  block = static_cast<uint64_t*>(pheap_root(h, "block"));
  ASSERT_NE(block, nullptr);
  for (uint64_t p = 0; p < kPages; ++p)
    for (uint64_t w = 0; w < 512; ++w) ASSERT_EQ(block[p * 512 + w], kTag + p * 1000 + w) << "page " << p;
  pheap_close(h);
}

// Log files of heap `name` under a peer's directory.
int StoredLogFiles(const std::string& peer_dir, const std::string& name) {
  int n = 0;
  std::error_code ec;
  for (const auto& f : std::filesystem::recursive_directory_iterator(peer_dir, ec))
    n += f.path().extension() == ".pheap" && f.path().parent_path().filename() == name;
  return n;
}

// rm --on-replicas removes the heap here and on every replica, fences a
// writer still running elsewhere, and leaves the name free for a new heap.
TEST_F(PheapCli, RmOnReplicasRemovesEverywhereAndFencesAWriter) {
  PHEAP_SKIP_UNDER_TSAN("libzmq, in this test and in the pheap peers it starts, is not built with TSan");
  pheaptest::LocalPeers peers(g_pheap, dir_, 3);
  const std::string repl = ";size=64M;replicas=3;quorum=2;peers=" + peers.endpoints();
  pheap* h = pheap_open("gone", ("dir=" + dir_ + repl).c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  ASSERT_EQ(pheap_set_root(h, "x", pheap_calloc(h, 1, 64)), 0);
  ASSERT_GT(pheap_commit(h), 0) << pheap_last_error();
  ASSERT_EQ(pheap_close(h), 0) << pheap_last_error();
  for (int i = 0; i < 3; ++i) ASSERT_GT(StoredLogFiles(peers.dir(i), "gone"), 0) << "peer " << i;

  // Another machine's writer, restored from the replicas into its own directory.
  const std::string other = dir_ + "/other";
  pheap* w = pheap_open("gone", ("dir=" + other + repl).c_str());
  ASSERT_NE(w, nullptr) << pheap_last_error();
  ASSERT_NE(pheap_root(w, "x"), nullptr);

  std::string out, err;
  ASSERT_EQ(Pheap("rm gone --on-replicas --json --dir " + dir_, &out, &err), 0) << out << err;
  nlohmann::json j = nlohmann::json::parse(out);
  ASSERT_EQ(j["replicas"].size(), 3u) << j.dump(2);
  for (const auto& r : j["replicas"]) EXPECT_TRUE(r["removed"].get<bool>()) << r.dump(2);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/gone"));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(StoredLogFiles(peers.dir(i), "gone"), 0) << "peer " << i;

  // The writer elsewhere is fenced: its commit is refused, not acknowledged.
  ASSERT_EQ(pheap_set_root(w, "y", pheap_calloc(w, 1, 64)), 0);
  EXPECT_LT(pheap_commit(w), 0);
  EXPECT_NE(std::string(pheap_last_error()).find("term"), std::string::npos) << pheap_last_error();
  pheap_close(w);

  // The name is free: a new heap starts empty on the same peers.
  h = pheap_open("gone", ("dir=" + dir_ + repl).c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  EXPECT_EQ(pheap_root(h, "x"), nullptr);
  ASSERT_EQ(pheap_set_root(h, "z", pheap_calloc(h, 1, 64)), 0);
  EXPECT_GT(pheap_commit(h), 0) << pheap_last_error();
  pheap_close(h);
}

// inspect names each replica of the heap's set: its (term, epoch), lag and
// bytes stored, and a peer that is gone as not reachable.
TEST_F(PheapCli, InspectShowsEachReplicaAndOneThatIsGone) {
  PHEAP_SKIP_UNDER_TSAN("libzmq, in this test and in the pheap peers it starts, is not built with TSan");
  pheaptest::LocalPeers peers(g_pheap, dir_, 3);
  CommitReplicated("seen", peers, 3);

  std::string out, err;
  ASSERT_EQ(Pheap("inspect seen --json --dir " + dir_, &out, &err), 0) << err;
  nlohmann::json j = nlohmann::json::parse(out);
  ASSERT_EQ(j["replicas"].size(), 3u) << j.dump(2);
  for (const auto& r : j["replicas"]) {
    EXPECT_TRUE(r["reachable"].get<bool>()) << r.dump(2);
    EXPECT_EQ(r["epoch"], j["epoch"]) << r.dump(2);
    EXPECT_EQ(r["term"], j["term"]) << r.dump(2);
    EXPECT_EQ(r["lag_epochs"], 0) << r.dump(2);
    EXPECT_EQ(r["lag_bytes"], 0) << r.dump(2);
    EXPECT_GT(r["bytes_on_disk"].get<uint64_t>(), 0u) << r.dump(2);
    EXPECT_EQ(r["error"], "") << r.dump(2);
  }

  // Peer 1 is down through three commits of 5 pages each: back, it lags by them.
  peers.Kill(1);
  pheap* h = pheap_open("seen", Replicated(peers, "replica_timeout_ms=2000;").c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  auto* five = static_cast<char*>(pheap_aligned_alloc(h, 4096, 5 * 4096));
  ASSERT_NE(five, nullptr);
  ASSERT_GT(pheap_commit(h), 0) << pheap_last_error();
  for (int i = 0; i < 3; ++i) {
    for (int p = 0; p < 5; ++p) five[p * 4096] = static_cast<char>(i + 1);
    ASSERT_GT(pheap_commit(h), 0) << pheap_last_error();
  }
  ASSERT_EQ(pheap_close(h), 0) << pheap_last_error();
  peers.Start(1);
  out.clear();
  ASSERT_EQ(Pheap("inspect seen --json --dir " + dir_, &out, &err), 0) << err;
  j = nlohmann::json::parse(out);
  nlohmann::json lagging;
  for (const auto& r : j["replicas"])
    if (r["endpoint"].get<std::string>().find("peer1.sock") != std::string::npos) lagging = r;
  ASSERT_TRUE(lagging["reachable"].get<bool>()) << lagging.dump(2);
  const uint64_t behind = j["epoch"].get<uint64_t>() - lagging["epoch"].get<uint64_t>();
  EXPECT_GE(behind, 3u) << lagging.dump(2);
  EXPECT_EQ(lagging["lag_epochs"], behind);
  ASSERT_FALSE(lagging["lag_bytes"].is_null()) << lagging.dump(2);
  EXPECT_GE(lagging["lag_bytes"].get<uint64_t>(), 3u * 5 * 4096) << lagging.dump(2);

  peers.Kill(2);
  out.clear();
  ASSERT_EQ(Pheap("inspect seen --dir " + dir_, &out, &err), 0) << err;
  EXPECT_NE(out.find("peer2.sock"), std::string::npos) << out;
  EXPECT_NE(out.find("not reachable"), std::string::npos) << out;
  EXPECT_NE(out.find("0 behind"), std::string::npos) << out;
}

// With no local store, inspect reads the heap from the peers named: its
// epoch, roots and allocator as the local store would show them.
TEST_F(PheapCli, InspectReadsAHeapFromItsPeersAlone) {
  PHEAP_SKIP_UNDER_TSAN("libzmq, in this test and in the pheap peers it starts, is not built with TSan");
  pheaptest::LocalPeers peers(g_pheap, dir_, 3);
  CommitReplicated("far", peers, 1);
  std::string local, err;
  ASSERT_EQ(Pheap("inspect far --json --dir " + dir_, &local, &err), 0) << err;
  const nlohmann::json here = nlohmann::json::parse(local);

  const std::string empty = dir_ + "/elsewhere";
  std::filesystem::create_directories(empty);
  std::string out;
  ASSERT_EQ(Pheap("inspect far --json --dir " + empty + " --peers " + peers.endpoints(), &out, &err), 0) << err;
  const nlohmann::json there = nlohmann::json::parse(out);
  EXPECT_EQ(there["read_from"], "peers");
  EXPECT_EQ(there["epoch"], here["epoch"]);
  EXPECT_EQ(there["roots"], here["roots"]);
  EXPECT_EQ(there["allocator"], here["allocator"]);
  EXPECT_EQ(there["replicas"].size(), 3u);
  EXPECT_FALSE(std::filesystem::exists(empty + "/far")) << "reading from the peers made a local store";

  EXPECT_NE(Pheap("inspect far --dir " + empty, &out, &err), 0) << "no store and no peers: an error";
}

// A heap of small blocks of two size classes, large objects and a huge one,
// some freed, with a root at each kind.
pheap* MakeMixedHeap(const std::string& dir, const std::string& name) {
  pheap* h = pheap_open(name.c_str(), ("dir=" + dir + ";size=64M").c_str());
  EXPECT_NE(h, nullptr) << pheap_last_error();
  if (h == nullptr) return nullptr;
  void* small[200];
  for (int i = 0; i < 200; ++i) small[i] = pheap_calloc(h, 1, i % 2 == 0 ? 24 : 1000);
  for (int i = 0; i < 200; i += 3) pheap_free(h, small[i]);
  void* large = pheap_calloc(h, 1, 300 << 10);
  void* huge = pheap_calloc(h, 1, 5 << 20);
  EXPECT_EQ(pheap_set_root(h, "small", small[1]), 0);
  EXPECT_EQ(pheap_set_root(h, "large", large), 0);
  EXPECT_EQ(pheap_set_root(h, "huge", huge), 0);
  EXPECT_GT(pheap_commit(h), 0) << pheap_last_error();
  return h;
}

// The allocator's section: one object with stable keys, the same facts as
// the text, and every root's usable size.
TEST_F(PheapCli, InspectShowsTheAllocator) {
  pheap_close(MakeMixedHeap(dir_, "mixed"));
  std::string out;
  ASSERT_EQ(Pheap("inspect mixed --json --dir " + dir_, &out), 0);
  nlohmann::json j = nlohmann::json::parse(out);
  const nlohmann::json& a = j["allocator"];
  ASSERT_TRUE(a.is_object()) << j.dump(2);
  for (const char* key :
       {"arena_base", "arena_bytes", "segments", "segments_used", "live_bytes", "live_blocks", "free_bytes",
        "untouched_bytes", "used_bytes", "reserved_bytes", "fragmentation", "largest_free_run", "size_classes", "large",
        "huge", "thread_heaps", "damaged_descs", "corruptions"})
    EXPECT_TRUE(a.contains(key)) << key;
  EXPECT_GE(a["live_blocks"].get<uint64_t>(), 133u + 2);
  EXPECT_GE(a["fragmentation"].get<double>(), 1.0);
  EXPECT_EQ(a["large"]["objects"], 1);
  EXPECT_EQ(a["huge"]["objects"], 1);
  EXPECT_GE(a["huge"]["bytes"].get<uint64_t>(), 5u << 20);
  EXPECT_GT(a["largest_free_run"]["bytes"].get<uint64_t>(), 0u);
  for (const char* key : {"incarnation", "live", "earlier", "owned_pages", "abandoned_pages", "reclaimed_pages"})
    EXPECT_TRUE(a["thread_heaps"].contains(key)) << key;
  std::map<uint64_t, uint64_t> live_by_size;
  uint64_t live_small = 0;
  for (const auto& c : a["size_classes"]) {
    live_by_size[c["block_size"]] = c["live_blocks"];
    live_small += c["live_blocks"].get<uint64_t>();
  }
  EXPECT_EQ(live_by_size[1024], 67u);  // 100 blocks of 1000 bytes, 33 of them freed
  EXPECT_GE(live_small, 133u);
  std::map<std::string, uint64_t> sizes;
  for (const auto& r : j["roots"]) sizes[r["name"]] = r["size"];
  EXPECT_EQ(sizes["small"], 1024u);  // the size class 1000 bytes fall in
  EXPECT_GE(sizes["large"], 300u << 10);
  EXPECT_GE(sizes["huge"], 5u << 20);

  std::string text;
  ASSERT_EQ(Pheap("inspect mixed --dir " + dir_, &text), 0);
  EXPECT_NE(text.find("allocator"), std::string::npos) << text;
  EXPECT_NE(text.find("largest free run"), std::string::npos) << text;
  EXPECT_NE(text.find("thread heaps"), std::string::npos) << text;
  std::string help;
  ASSERT_EQ(Pheap("inspect --help", &help), 0);
  EXPECT_NE(help.find("--html"), std::string::npos) << help;
}

// --html writes one self-contained page whose script draws every page of
// the image: headless Chromium loads it, and the page says how many it drew.
TEST_F(PheapCli, InspectHtmlDrawsEveryPageInABrowser) {
  std::string chromium;
  if (pheaptest::RunCommand("command -v chromium", &chromium) != 0 || chromium.empty())
    GTEST_SKIP() << "needs Debian's chromium package (apt-get install chromium)";
  pheap* h = MakeMixedHeap(dir_, "drawn");
  ASSERT_NE(h, nullptr);
  const std::string live = dir_ + "/live.html";
  std::string out;
  ASSERT_EQ(Pheap("inspect drawn --json --html " + live + " --dir " + dir_, &out), 0);
  std::ifstream live_in(live);
  const std::string live_page((std::istreambuf_iterator<char>(live_in)), std::istreambuf_iterator<char>());
  EXPECT_NE(live_page.find("\"resident\":["), std::string::npos) << "the writer's residency is read while it runs";
  pheap_close(h);

  const std::string file = dir_ + "/map.html", png = dir_ + "/map.png";
  out.clear();
  ASSERT_EQ(Pheap("inspect drawn --json --html " + file + " --dir " + dir_, &out), 0);
  nlohmann::json j = nlohmann::json::parse(out);
  const uint64_t pages = j["hwm_pages"];
  ASSERT_GT(pages, 0u);
  EXPECT_EQ(j["html"]["pages"], pages);
  std::ifstream in(file);
  const std::string page((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(page.find("\"resident\":null"), std::string::npos) << "a closed heap's residency is unknown";
  for (const char* outside : {"http://", "https://", "<script src", "<link", "@import", "url("})
    EXPECT_EQ(page.find(outside), std::string::npos) << "the page reaches outside itself: " << outside;

  // Its own profile directory: the test may run beside a browser.
  const std::string browser = "timeout 120 chromium --headless --no-sandbox --disable-gpu --user-data-dir=" + dir_ +
                              "/chromium --virtual-time-budget=5000 ";
  std::string dom;
  ASSERT_EQ(pheaptest::RunCommand(browser + "--dump-dom file://" + file + " 2>/dev/null", &dom), 0);
  const std::string drawn = "id=\"pages-drawn\">";
  const size_t from = dom.find(drawn);
  ASSERT_NE(from, std::string::npos) << dom.substr(0, 2000);
  const size_t first = from + drawn.size(), end = dom.find_first_not_of("0123456789", first);
  ASSERT_GT(end, first) << dom.substr(from, 200);
  EXPECT_EQ(std::stoull(dom.substr(first, end - first)), pages);

  std::string ignored;
  ASSERT_EQ(
      pheaptest::RunCommand(
          browser + "--screenshot=" + png + " --window-size=1200,900 file://" + file + " >/dev/null 2>&1", &ignored),
      0);
  ASSERT_TRUE(std::filesystem::exists(png));
  std::ifstream png_in(png, std::ios::binary);
  const std::string shot((std::istreambuf_iterator<char>(png_in)), std::istreambuf_iterator<char>());
  // A PNG of the window's size (its IHDR), holding more than a few flat colours.
  ASSERT_GT(shot.size(), 24u);
  EXPECT_EQ(shot.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  auto be32 = [&](size_t at) {
    return uint32_t{static_cast<uint8_t>(shot[at])} << 24 | uint32_t{static_cast<uint8_t>(shot[at + 1])} << 16 |
           uint32_t{static_cast<uint8_t>(shot[at + 2])} << 8 | uint32_t{static_cast<uint8_t>(shot[at + 3])};
  };
  EXPECT_EQ(be32(16), 1200u);
  EXPECT_EQ(be32(20), 900u);
  EXPECT_GT(shot.size(), 10000u);
}

// inspect shows every retained epoch (no compaction ran: all of them), with
// its term, time, pages and pause, and the store's section.
TEST_F(PheapCli, InspectShowsTheRetainedEpochsAndTheStore) {
  pheap* h = MakeHeap("history", 0, /*keep=*/true);
  ASSERT_NE(h, nullptr);
  const int64_t before = pheap_epoch(h);
  constexpr int kCommits = 4;
  auto* count = static_cast<uint64_t*>(pheap_root(h, "count"));
  ASSERT_NE(count, nullptr);
  for (int i = 0; i < kCommits; ++i) {
    ++*count;
    ASSERT_GT(pheap_commit(h), 0) << pheap_last_error();
  }
  const int64_t durable = pheap_epoch(h);
  ASSERT_EQ(durable, before + kCommits);
  pheap_close(h);

  std::string out, err;
  ASSERT_EQ(Pheap("inspect history --json --epochs 0 --dir " + dir_, &out, &err), 0) << err;
  const nlohmann::json j = nlohmann::json::parse(out);
  const nlohmann::json& epochs = j["epochs"];
  ASSERT_TRUE(epochs.is_array());
  // Closing may commit once more.
  const int64_t last = j["epoch"].get<int64_t>();
  ASSERT_GE(last, durable);
  ASSERT_EQ(epochs.size(), static_cast<size_t>(last)) << epochs.dump();
  for (size_t i = 0; i < epochs.size(); ++i) {
    EXPECT_EQ(epochs[i]["epoch"].get<uint64_t>(), i + 1);
    EXPECT_EQ(epochs[i]["term"], j["term"]);
    EXPECT_TRUE(epochs[i]["time"].is_string()) << epochs[i].dump();
    EXPECT_GT(epochs[i]["bytes"].get<uint64_t>(), 0u);
  }
  // The counter's commits each wrote its page, and their pauses are known.
  for (int64_t e = before + 1; e <= durable; ++e) {
    EXPECT_GE(epochs[e - 1]["pages"].get<uint64_t>(), 1u) << epochs[e - 1].dump();
    EXPECT_TRUE(epochs[e - 1]["pause_ns"].is_number()) << epochs[e - 1].dump();
  }
  const nlohmann::json& store = j["store"];
  for (const char* key : {"log_files", "bytes_on_disk", "file_bytes", "live_pages", "live_bytes", "space_amplification",
                          "last_compaction", "retained_epochs"})
    EXPECT_TRUE(store.contains(key)) << key << " in " << store.dump();
  EXPECT_EQ(store["retained_epochs"]["count"].get<int64_t>(), last);
  EXPECT_EQ(store["retained_epochs"]["last"].get<int64_t>(), last);
  EXPECT_TRUE(store["last_compaction"].is_null());

  // --epochs limits the list to the newest, in text and JSON alike.
  out.clear();
  ASSERT_EQ(Pheap("inspect history --json --epochs 2 --dir " + dir_, &out), 0);
  const nlohmann::json two = nlohmann::json::parse(out)["epochs"];
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[1]["epoch"].get<int64_t>(), last);
  out.clear();
  ASSERT_EQ(Pheap("inspect history --epochs 2 --dir " + dir_, &out), 0);
  EXPECT_NE(out.find(fmt::format("{} retained, 1 to {} (the newest 2 shown)", last, last)), std::string::npos) << out;
}

// diff lists exactly the pages the epochs in between wrote, and the roots
// whose value changed.
TEST_F(PheapCli, DiffListsThePagesWrittenAndTheRootsChanged) {
  pheap* h = pheap_open("changes", ("dir=" + dir_ + ";size=64M").c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  constexpr size_t kPages = 32;
  auto* block = static_cast<uint8_t*>(pheap_aligned_alloc(h, 4096, kPages * 4096));
  auto* other = pheap_calloc(h, 1, 64);
  ASSERT_NE(block, nullptr);
  ASSERT_EQ(pheap_set_root(h, "block", block), 0);
  ASSERT_EQ(pheap_set_root(h, "moved", block), 0);
  std::memset(block, 1, kPages * 4096);
  ASSERT_GT(pheap_commit(h), 0) << pheap_last_error();
  const int64_t from = pheap_epoch(h);
  // Commits that write known pages of the block and nothing else.
  const auto base = reinterpret_cast<uintptr_t>(pheap_base(h));
  const uint64_t first = (reinterpret_cast<uintptr_t>(block) - base) / 4096;
  block[3 * 4096] = 2;
  block[10 * 4096 + 17] = 2;
  ASSERT_GT(pheap_commit(h), 0) << pheap_last_error();
  block[20 * 4096 + 4095] = 3;
  ASSERT_GT(pheap_commit(h), 0) << pheap_last_error();
  const int64_t to = pheap_epoch(h);
  pheap_close(h);

  std::string out, err;
  ASSERT_EQ(Pheap(fmt::format("diff changes {} {} --json --dir {}", from, to, dir_), &out, &err), 0) << err;
  nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_EQ(j["pages"].get<std::vector<uint64_t>>(), (std::vector<uint64_t>{first + 3, first + 10, first + 20})) << out;
  ASSERT_TRUE(j["roots"].is_array()) << out;
  EXPECT_TRUE(j["roots"].empty()) << out;
  // All three lie in one extent of the allocator: the heap page of the
  // block's size class.
  ASSERT_EQ(j["extents"].size(), 1u) << out;
  const auto& e = j["extents"][0];
  EXPECT_EQ(e["pages_written"], 3) << out;
  const uint64_t at = std::stoull(e["address"].get<std::string>(), nullptr, 16);
  EXPECT_LE(at, reinterpret_cast<uintptr_t>(block) + 3 * 4096) << out;
  EXPECT_GT(at + e["bytes"].get<uint64_t>(), reinterpret_cast<uintptr_t>(block) + 20 * 4096) << out;
  EXPECT_EQ(e["use"], "small") << out;
  EXPECT_EQ(e["block_size"], 128 * 1024) << out;

  // A root moved in a later session shows with both values.
  h = pheap_open("changes", ("dir=" + dir_ + ";size=64M").c_str());
  ASSERT_NE(h, nullptr) << pheap_last_error();
  ASSERT_EQ(pheap_set_root(h, "moved", other), 0);
  ASSERT_GT(pheap_commit(h), 0) << pheap_last_error();
  const int64_t moved = pheap_epoch(h);
  pheap_close(h);
  out.clear();
  ASSERT_EQ(Pheap(fmt::format("diff changes {} {} --json --dir {}", to, moved, dir_), &out, &err), 0) << err;
  j = nlohmann::json::parse(out);
  ASSERT_EQ(j["roots"].size(), 1u) << out;
  EXPECT_EQ(j["roots"][0]["name"], "moved");
  EXPECT_EQ(j["roots"][0]["from"], fmt::format("{:#x}", reinterpret_cast<uintptr_t>(block)));
  EXPECT_EQ(j["roots"][0]["to"], fmt::format("{:#x}", reinterpret_cast<uintptr_t>(other)));

  out.clear();
  ASSERT_EQ(Pheap(fmt::format("diff changes {} {} --dir {}", from, to, dir_), &out), 0);
  EXPECT_NE(out.find(fmt::format("pages         {}, {}, {}", first + 3, first + 10, first + 20)), std::string::npos)
      << out;
}

// An epoch the log holds no record of is refused, naming the ones it holds.
TEST_F(PheapCli, DiffOfAnEpochNotRetainedFailsNamingTheRetainedOnes) {
  MakeHeap("short", 3);
  std::string out, err;
  ASSERT_EQ(Pheap("inspect short --json --dir " + dir_, &out), 0);
  const uint64_t last = nlohmann::json::parse(out)["epoch"].get<uint64_t>();
  out.clear();
  EXPECT_EQ(Pheap(fmt::format("diff short 1 {} --dir {}", last + 5, dir_), &out, &err), 1);
  EXPECT_NE(err.find(fmt::format("the log holds the records of epochs 1-{}", last)), std::string::npos) << err;
  EXPECT_EQ(Pheap(fmt::format("diff short 0 {} --json --dir {}", last, dir_), &out, &err), 1);
  const nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_EQ(j["error"]["code"], "invalid_argument") << out;
  EXPECT_NE(j["error"]["message"].get<std::string>().find("not all retained"), std::string::npos) << out;
}

// Every subcommand's --help says what it prints.
TEST_F(PheapCli, EverySubcommandsHelpExplainsItsOutput) {
  for (const char* command :
       {"demo", "inspect", "diff", "top", "ls", "rm", "compact", "check", "run", "peer", "peer status", "keygen"}) {
    std::string out;
    EXPECT_EQ(Pheap(std::string(command) + " --help", &out), 0) << command;
    EXPECT_NE(out.find("Output:"), std::string::npos) << command << ":\n" << out;
  }
  std::string out;
  ASSERT_EQ(Pheap("--help", &out), 0);
  EXPECT_NE(out.find("diff"), std::string::npos) << out;
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc > 1) g_pheap = argv[1];
  return RUN_ALL_TESTS();
}
