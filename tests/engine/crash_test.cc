// Kill -9 at random instants, then check the reopened heap against the
// model (crash_model.h), which is computed here without reading the store.
// For every kill: the durable epoch is the last one the worker had
// acknowledged, or the one it was committing; every model page holds exactly
// what the model says for that epoch; and every writer pair shows a single
// instant (B <= A <= B + 1), never a torn cut.
//
// PHEAP_CRASH_SEED replays a run; PHEAP_CRASH_KILLS overrides the count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

#include "heap/engine.h"
#include "pager/kernel_probe.h"
#include "tests/engine/crash_model.h"
#include "tests/support/kill_loop.h"

namespace pheap::crashtest {
namespace {

std::string g_worker;  // path of crash_worker, from argv
int g_total_kills = 240;

class CrashTest : public ::testing::TestWithParam<TrackingMode> {};

TEST_P(CrashTest, SigkillAtRandomInstantsKeepsTheLastDurableEpoch) {
  const TrackingMode mode = GetParam();
  auto available = ChooseMode(Pager::Probe(), mode);
  if (!available.ok()) GTEST_SKIP() << available.status().ToString();

  uint64_t seed = std::random_device{}();
  if (const char* s = getenv("PHEAP_CRASH_SEED")) seed = strtoull(s, nullptr, 0);
  int kills = g_total_kills / 3 + 1;
  if (const char* s = getenv("PHEAP_CRASH_KILLS")) kills = atoi(s);
  std::printf("[ mode %s ] seed %llu, %d kills (replay: PHEAP_CRASH_SEED=%llu)\n",
              TrackingModeName(mode), static_cast<unsigned long long>(seed), kills,
              static_cast<unsigned long long>(seed));

  char tmpl[] = "/tmp/pheap-crash-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  Layout layout;
  Model model(seed, layout);
  std::mt19937_64 rng(seed);
  Epoch prev = 0;
  std::vector<uint64_t> prev_b(static_cast<size_t>(layout.writers), 0);
  int commits_seen = 0;

  for (int i = 0; i < kills; ++i) {
    bool early = rng() % 10 == 0;  // sometimes kill while it is still opening
    unsigned delay_us = early ? static_cast<unsigned>(rng() % 20000)
                              : static_cast<unsigned>(rng() % 40000);
    auto run = pheaptest::RunAndKill(
        {g_worker, dir, "crash", TrackingModeName(mode), std::to_string(seed)}, early, delay_us,
        "durable");
    ASSERT_TRUE(run.killed()) << "kill " << i << ": the worker ended by itself (status "
                              << run.status << "): " << run.stderr_text;

    EngineOptions o;
    o.dir = dir;
    o.pager.mode = mode;
    auto opened = Engine::Open("crash", o);
    ASSERT_TRUE(opened.ok()) << "kill " << i << ": " << opened.status().ToString();
    Engine& eng = **opened;
    const Epoch d = eng.durable_epoch();

    // Durability: never older than the last acknowledged commit, never newer
    // than the one in flight, never older than what a previous reopen showed.
    const Epoch durable = run.get("durable"), open_epoch = run.get("open");
    EXPECT_GE(d, durable) << "kill " << i << ": lost an acknowledged epoch";
    EXPECT_GE(d, prev) << "kill " << i << ": epoch went backwards";
    if (run.said("open")) {
      Epoch limit = std::max({Epoch{run.get("committing")}, durable, open_epoch});
      EXPECT_LE(d, limit) << "kill " << i << ": an epoch nobody committed";
    }
    commits_seen += static_cast<int>(durable > open_epoch ? durable - open_epoch : 0);

    // Content: exactly the model's image of epoch d.
    std::vector<Epoch> last = model.Replay(d);
    const auto* base = static_cast<const uint8_t*>(eng.base());
    for (Pgno p = 1; p <= layout.data_pages; ++p) {
      const auto* w = reinterpret_cast<const uint64_t*>(base + p * kPageSize);
      for (size_t j = 0; j < kPageSize / 8; ++j) {
        uint64_t want = last[p] == 0 ? 0 : model.Word(last[p], p, j);
        if (w[j] != want) {
          ADD_FAILURE() << "kill " << i << ", epoch " << d << ": page " << p << " word " << j
                        << " is " << w[j] << ", model says " << want << " (written by epoch "
                        << last[p] << ")";
          break;
        }
      }
      if (HasFailure()) break;
    }
    // Point in time: each pair was cut at one instant.
    for (int t = 0; t < layout.writers; ++t) {
      uint64_t a = *reinterpret_cast<const uint64_t*>(base + layout.pair_a(t) * kPageSize);
      uint64_t b = *reinterpret_cast<const uint64_t*>(base + layout.pair_b(t) * kPageSize);
      EXPECT_TRUE(b <= a && a <= b + 1) << "kill " << i << ", epoch " << d << ": writer " << t
                                        << " pair A=" << a << " B=" << b << " is a torn cut";
      EXPECT_GE(b, prev_b[static_cast<size_t>(t)]) << "writer " << t << " went backwards";
      prev_b[static_cast<size_t>(t)] = b;
    }
    prev = d;
    if (HasFailure()) {
      std::printf("failed at kill %d; replay with PHEAP_CRASH_SEED=%llu\n", i,
                  static_cast<unsigned long long>(seed));
      break;
    }
  }
  std::printf("[ mode %s ] %d kills, final epoch %llu, %d commits acknowledged\n",
              TrackingModeName(mode), kills, static_cast<unsigned long long>(prev), commits_seen);
  EXPECT_GT(commits_seen, kills / 4) << "the worker was killed before it could commit: the test "
                                        "does not exercise recovery";
  if (!HasFailure()) std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Modes, CrashTest,
                         ::testing::Values(TrackingMode::kAsyncWp, TrackingMode::kSyncWp, TrackingMode::kMprotect,
                                           TrackingMode::kHybridWp),
                         [](const ::testing::TestParamInfo<TrackingMode>& p) {
                           std::string n = TrackingModeName(p.param);
                           n.erase(std::remove(n.begin(), n.end(), '-'), n.end());
                           return n;
                         });

}  // namespace
}  // namespace pheap::crashtest

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc < 2) {
    fprintf(stderr, "usage: engine_crash_test PATH-OF-crash_worker [TOTAL-KILLS]\n");
    return 2;
  }
  pheap::crashtest::g_worker = argv[1];
  if (argc > 2) pheap::crashtest::g_total_kills = atoi(argv[2]);
  return RUN_ALL_TESTS();
}
