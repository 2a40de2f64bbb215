// Placement: rendezvous replica sets are stable, balanced and move little
// when the peer list changes; the replication config's defaults and errors.
#include "replication/placement.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <map>
#include <random>
#include <set>

namespace pheap {
namespace {

std::vector<std::string> Peers(int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back("tcp://10.0.0." + std::to_string(i + 1) + ":7400");
  return v;
}

HeapId Id(uint64_t i) { return i * 0x9e3779b97f4a7c15ull + 12345; }

TEST(PlacementTest, StableAndIndependentOfListOrder) {
  auto peers = Peers(7);
  std::mt19937_64 rng(42);
  for (uint64_t h = 0; h < 200; ++h) {
    auto set = ReplicaSet(Id(h), peers, 3);
    ASSERT_EQ(set.size(), 3u);
    EXPECT_EQ(std::set<std::string>(set.begin(), set.end()).size(), 3u) << "a peer twice in one set";
    auto shuffled = peers;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    EXPECT_EQ(ReplicaSet(Id(h), shuffled, 3), set);
    // Highest score first.
    EXPECT_GE(RendezvousScore(Id(h), set[0]), RendezvousScore(Id(h), set[1]));
    EXPECT_GE(RendezvousScore(Id(h), set[1]), RendezvousScore(Id(h), set[2]));
  }
}

TEST(PlacementTest, Balanced) {
  auto peers = Peers(10);
  constexpr int kHeaps = 10000;
  std::map<std::string, int> member, primary;
  for (uint64_t h = 0; h < kHeaps; ++h) {
    auto set = ReplicaSet(Id(h), peers, 3);
    ++primary[set[0]];
    for (const auto& p : set) ++member[p];
  }
  ASSERT_EQ(member.size(), peers.size());
  // Expected 3000 memberships and 1000 primaries per peer; the bounds are
  // more than six standard deviations wide.
  for (const auto& [p, n] : member) {
    EXPECT_GT(n, 2700) << p;
    EXPECT_LT(n, 3300) << p;
  }
  for (const auto& [p, n] : primary) {
    EXPECT_GT(n, 800) << p;
    EXPECT_LT(n, 1200) << p;
  }
}

TEST(PlacementTest, RemovingAPeerMovesOnlyItsHeaps) {
  auto peers = Peers(8);
  const std::string gone = peers[3];
  auto fewer = peers;
  fewer.erase(fewer.begin() + 3);
  int moved = 0;
  for (uint64_t h = 0; h < 2000; ++h) {
    auto before = ReplicaSet(Id(h), peers, 3);
    auto after = ReplicaSet(Id(h), fewer, 3);
    if (std::find(before.begin(), before.end(), gone) == before.end()) {
      EXPECT_EQ(after, before) << "heap " << h << " moved though its peers stayed";
      continue;
    }
    ++moved;
    // The survivors stay, in their order; exactly one peer joins.
    std::vector<std::string> survivors;
    for (const auto& p : before)
      if (p != gone) survivors.push_back(p);
    std::vector<std::string> kept;
    for (const auto& p : after)
      if (std::find(survivors.begin(), survivors.end(), p) != survivors.end()) kept.push_back(p);
    EXPECT_EQ(kept, survivors) << "heap " << h;
  }
  EXPECT_GT(moved, 0);
}

TEST(PlacementTest, AddingAPeerMovesHeapsOnlyToIt) {
  auto peers = Peers(6);
  auto more = peers;
  more.push_back("tcp://10.0.0.99:7400");
  for (uint64_t h = 0; h < 2000; ++h) {
    auto before = ReplicaSet(Id(h), peers, 3);
    auto after = ReplicaSet(Id(h), more, 3);
    for (const auto& p : after) {
      if (p != more.back()) {
        EXPECT_NE(std::find(before.begin(), before.end(), p), before.end()) << "heap " << h << " moved to " << p;
      }
    }
  }
}

TEST(PlacementTest, ConfigDefaults) {
  auto one = ResolveReplication(Peers(1), 0, 0);
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ(one->replicas, 1u);
  EXPECT_EQ(one->quorum, 1u);
  auto two = ResolveReplication(Peers(2), 0, 0);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->replicas, 2u);
  EXPECT_EQ(two->quorum, 2u);
  auto five = ResolveReplication(Peers(5), 0, 0);
  ASSERT_TRUE(five.ok());
  EXPECT_EQ(five->replicas, 3u);
  EXPECT_EQ(five->quorum, 2u);
  auto k5 = ResolveReplication(Peers(5), 5, 0);
  ASSERT_TRUE(k5.ok());
  EXPECT_EQ(k5->quorum, 3u);
}

// The open's quorum k - W + 1 meets every write quorum of W, and is the
// smallest that does: checked against every pair of replica subsets.
TEST(PlacementTest, ClaimQuorumMeetsEveryWriteQuorum) {
  for (uint32_t k = 1; k <= 7; ++k) {
    for (uint32_t w = 1; w <= k; ++w) {
      const uint32_t q = ClaimQuorum(k, w);
      ASSERT_GE(q, 1u) << "k=" << k << " W=" << w;
      ASSERT_LE(q, k) << "k=" << k << " W=" << w;
      bool one_less_misses = false;  // some q - 1 replicas and some W ones are disjoint
      for (uint32_t a = 0; a < (1u << k); ++a) {
        for (uint32_t b = 0; b < (1u << k); ++b) {
          if (static_cast<uint32_t>(std::popcount(b)) != w) continue;
          if (static_cast<uint32_t>(std::popcount(a)) == q) {
            ASSERT_NE(a & b, 0u) << "k=" << k << " W=" << w << ": claim set " << a << " misses write set " << b;
          }
          if (static_cast<uint32_t>(std::popcount(a)) + 1 == q && (a & b) == 0) one_less_misses = true;
        }
      }
      EXPECT_TRUE(one_less_misses) << "k=" << k << " W=" << w << ": " << q - 1 << " replicas would do";
    }
  }
}

TEST(PlacementTest, ClaimQuorumCorners) {
  EXPECT_EQ(ClaimQuorum(3, 3), 1u);  // W = k: any one replica opens the heap
  EXPECT_EQ(ClaimQuorum(3, 1), 3u);  // W = 1: every replica must answer
  EXPECT_EQ(ClaimQuorum(1, 1), 1u);  // k = 1: the one replica
  EXPECT_EQ(ClaimQuorum(2, 2), 1u);  // replicas=2 by default: either one opens it
  EXPECT_EQ(ClaimQuorum(5, 3), 3u);  // W a majority of an odd k: a majority
  EXPECT_EQ(ClaimQuorum(4, 3), 2u);  // above it: fewer than a majority
  // The defaults: W = k / 2 + 1, so k - W + 1 is a majority for odd k.
  for (int n = 1; n <= 5; ++n) {
    auto c = ResolveReplication(Peers(n), static_cast<uint64_t>(n), 0);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_EQ(ClaimQuorum(c->replicas, c->quorum), n % 2 == 1 ? Majority(c->replicas) : c->replicas / 2)
        << "replicas=" << n;
  }
  // Any W from 1 to k is accepted: a W below the majority is as safe.
  for (uint64_t w = 1; w <= 3; ++w) EXPECT_TRUE(ResolveReplication(Peers(3), 3, w).ok()) << "quorum=" << w;
}

TEST(PlacementTest, ConfigErrorsNameTheKey) {
  auto empty = ResolveReplication({}, 0, 0);
  EXPECT_EQ(empty.status().code(), Status::Code::kInvalidArgument);
  auto dup = ResolveReplication({"tcp://a:1", "tcp://b:1", "tcp://a:1"}, 0, 0);
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.status().message().find("tcp://a:1"), std::string::npos);
  auto big_k = ResolveReplication(Peers(2), 3, 0);
  ASSERT_FALSE(big_k.ok());
  EXPECT_NE(big_k.status().message().find("replicas=3"), std::string::npos);
  auto big_w = ResolveReplication(Peers(3), 3, 4);
  ASSERT_FALSE(big_w.ok());
  EXPECT_NE(big_w.status().message().find("quorum=4"), std::string::npos);
}

TEST(PlacementTest, FromConfig) {
  auto cfg = Config::Parse("peers=tcp://a:1,tcp://b:1,tcp://c:1,tcp://d:1;replicas=4", ReplicationConfigKeys());
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  auto rc = ReplicationFromConfig(*cfg);
  ASSERT_TRUE(rc.ok()) << rc.status().ToString();
  EXPECT_EQ(rc->peers.size(), 4u);
  EXPECT_EQ(rc->replicas, 4u);
  EXPECT_EQ(rc->quorum, 3u);

  auto none = Config::Parse("", ReplicationConfigKeys());
  ASSERT_TRUE(none.ok());
  auto unreplicated = ReplicationFromConfig(*none);
  ASSERT_TRUE(unreplicated.ok());
  EXPECT_TRUE(unreplicated->peers.empty());

  auto orphan = Config::Parse("quorum=2", ReplicationConfigKeys());
  ASSERT_TRUE(orphan.ok());
  EXPECT_FALSE(ReplicationFromConfig(*orphan).ok());
  auto zero = Config::Parse("peers=tcp://a:1;quorum=0", ReplicationConfigKeys());
  ASSERT_TRUE(zero.ok());
  EXPECT_FALSE(ReplicationFromConfig(*zero).ok());
}

}  // namespace
}  // namespace pheap
