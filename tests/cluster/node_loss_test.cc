// Node loss: the writer (k=3, W=2, a local directory) is SIGKILLed at a
// random instant, its directory deleted (its machine is gone), and one peer
// killed too. The heap reopened by name on a new empty directory from the
// peers must hold a state some commit produced, not older than the last
// acknowledged commit. Each round starts a new cluster.
//
// PHEAP_CRASH_SEED replays a run.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "tests/cluster/cluster_fixture.h"
#include "tests/support/kill_loop.h"

namespace pheaptest::cluster {
namespace {

constexpr int kRounds = 5;

void Round(int round, uint64_t seed, std::mt19937_64& rng) {
  Cluster c(seed);
  ASSERT_TRUE(c.StartPeers(false));
  const unsigned delay_us = static_cast<unsigned>(rng() % 1500000);
  auto w = pheaptest::RunAndKill({programs().worker, "run", kHeap, c.Config("writer"), std::to_string(seed)},
                                 /*early=*/false, delay_us, "durable");
  ASSERT_TRUE(w.killed()) << "round " << round << ": the writer ended by itself (status " << w.status
                          << "): " << w.stderr_text;
  ASSERT_TRUE(w.said("durable")) << "round " << round << ": no commit was acknowledged: " << w.stderr_text;
  std::filesystem::remove_all(c.tmp_.path() + "/writer");
  const size_t lost = rng() % Cluster::kPeers;
  c.peers_[lost]->Kill();

  Checked got = CheckHeap(kHeap, c.Config("elsewhere"), seed);
  ASSERT_TRUE(got.ok) << "round " << round << " (peer " << lost << " lost): " << got.text;
  EXPECT_GE(got.ops, w.get("durable")) << "round " << round << ": lost an acknowledged commit";
  EXPECT_LE(got.ops, std::max(w.get("committing"), w.get("open")))
      << "round " << round << ": a state no commit produced";
  std::printf("round %d: killed %u us after the first durable commit; %llu operations acknowledged, %llu recovered\n",
              round, delay_us, w.get("durable"), static_cast<unsigned long long>(got.ops));
}

TEST(ClusterNodeLoss, WriterAndOnePeerLost) {
  PHEAP_CLUSTER_SKIP_IF_TSAN();
  const uint64_t seed = TestSeed();
  std::mt19937_64 rng(seed);
  for (int round = 0; round < kRounds && !::testing::Test::HasFailure(); ++round) Round(round, seed, rng);
}

}  // namespace
}  // namespace pheaptest::cluster

int main(int argc, char** argv) { return pheaptest::cluster::RunTests(argc, argv); }
