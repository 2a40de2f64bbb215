// Evictor: the stamps that say which resident pages may go, and the order
// Choose gives them back in.
#include "pager/evictor.h"

#include <gtest/gtest.h>

#include <vector>

namespace pheap {
namespace {

std::vector<Pgno> Flatten(const std::vector<pheap::Run>& runs) {
  std::vector<Pgno> v;
  for (const pheap::Run& r : runs)
    for (Pgno p = r.first; p < r.end(); ++p) v.push_back(p);
  return v;
}

TEST(Evictor, CountsResidentPagesOnce) {
  Evictor e(1000);
  e.Touch(pheap::Run{10, 5}, 3);
  e.Touch(pheap::Run{12, 5}, 4);  // 12..14 again
  EXPECT_EQ(e.resident(), 7u);
  EXPECT_EQ(e.stamp(11), 3u);
  EXPECT_EQ(e.stamp(13), 4u);
  e.Touch(pheap::Run{13, 1}, 2);  // stamps only grow while resident
  EXPECT_EQ(e.stamp(13), 4u);
  e.Forget(pheap::Run{9, 4});
  EXPECT_EQ(e.resident(), 4u);
  EXPECT_EQ(e.stamp(10), 0u);
}

TEST(Evictor, TakesOnlyDurablePagesBelowTheLimit) {
  Evictor e(100);
  e.Touch(pheap::Run{0, 10}, 5);  // written in cut 5: not durable at 4
  e.Touch(pheap::Run{10, 10}, 4);
  e.Touch(pheap::Run{90, 10}, 1);  // past the limit
  std::vector<pheap::Run> out;
  EXPECT_EQ(e.Choose(50, 4, 100, &out), 10u);
  EXPECT_EQ(Flatten(out), (std::vector<Pgno>{10, 11, 12, 13, 14, 15, 16, 17, 18, 19}));
  out.clear();
  EXPECT_EQ(e.Choose(50, 0, 100, &out), 0u);  // nothing durable yet
  EXPECT_TRUE(out.empty());
}

TEST(Evictor, ColdestFirst) {
  Evictor e(1000);
  for (Pgno p = 0; p < 600; ++p) e.Touch(pheap::Run{p, 1}, static_cast<uint32_t>(1 + (p * 7919) % 600));
  std::vector<pheap::Run> out;
  EXPECT_EQ(e.Choose(1000, 600, 60, &out), 60u);
  // Bands of ten stamps: every page taken is in the coldest 70 stamps, and
  // every page of the coldest 50 is taken.
  std::vector<bool> taken(600);
  for (Pgno p : Flatten(out)) {
    taken[p] = true;
    EXPECT_LE(1 + (p * 7919) % 600, 70u) << "page " << p;
  }
  for (Pgno p = 0; p < 600; ++p) EXPECT_TRUE(1 + (p * 7919) % 600 > 50 || taken[p]) << "page " << p;
  for (size_t i = 1; i < out.size(); ++i) EXPECT_LT(out[i - 1].end(), out[i].first);  // ascending, joined
}

TEST(Evictor, TiesGoRoundTheRegion) {
  Evictor e(100);
  e.Touch(pheap::Run{0, 100}, 1);
  std::vector<pheap::Run> a, b;
  EXPECT_EQ(e.Choose(100, 1, 30, &a), 30u);
  EXPECT_EQ(e.Choose(100, 1, 30, &b), 30u);
  EXPECT_EQ(Flatten(a).front(), 0u);
  EXPECT_EQ(Flatten(b).front(), 30u);  // the hand moved on
  std::vector<pheap::Run> c;
  e.Choose(100, 1, 50, &c);  // wraps: 60..99 then 0..9
  EXPECT_EQ(Flatten(c).size(), 50u);
  EXPECT_EQ(Flatten(c).front(), 0u);
  EXPECT_EQ(Flatten(c).back(), 99u);
}

}  // namespace
}  // namespace pheap
