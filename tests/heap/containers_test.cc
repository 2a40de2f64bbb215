// The container aliases (containers.hpp) and the default-constructed
// pheap::allocator: nested containers allocate every level in the heap
// with no allocator spelt out, and come back after a reopen.
#include <pheap/containers.hpp>
#include <pheap/heap.hpp>

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "tests/support/test_util.h"

namespace {

using pheaptest::TempDir;

bool InHeap(const pheap::Heap& heap, const void* p) { return pheap_of(p) == heap.c_handle(); }
std::string Std(std::string_view s) { return std::string(s); }

// A long value, so a string allocates (no small-string buffer).
std::string Long(int i) {
  std::string s = "value number ";
  s += std::to_string(i);
  s += " long enough to leave the small-string buffer";
  return s;
}

TEST(Containers, AMapOfVectorsTakesItsElementsAllocatorWithoutSpellingIt) {
  TempDir dir;
  using Index = pheap::map<pheap::string, pheap::vector<int>>;
  {
    pheap::Heap heap("index", dir.config("", "64M"));
    Index* m = heap.find_or_make<Index>("index");
    for (int i = 0; i < 100; ++i) {
      pheap::string key(Long(i).c_str(), pheap::allocator<char>(heap));
      for (int j = 0; j <= i % 7; ++j) (*m)[key].push_back(i * 10 + j);
    }
    (*m)[pheap::string("short", pheap::allocator<char>(heap))].push_back(42);
    ASSERT_EQ(m->size(), 101u);
    for (const auto& [k, v] : *m) {
      EXPECT_TRUE(InHeap(heap, k.data())) << k;
      EXPECT_TRUE(InHeap(heap, v.data())) << k;
    }
    heap.commit();
  }
  pheap::Heap heap("index", dir.config("", ""));
  Index* m = heap.root<Index>("index");
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(m->size(), 101u);
  auto it = m->find("short");  // std::less<>: no pheap::string built
  ASSERT_NE(it, m->end());
  EXPECT_EQ(it->second.at(0), 42);
  for (int i = 0; i < 100; ++i) {
    auto found = m->find(std::string_view(Long(i)));
    ASSERT_NE(found, m->end()) << i;
    ASSERT_EQ(found->second.size(), static_cast<size_t>(i % 7 + 1));
    EXPECT_EQ(found->second.back(), i * 10 + i % 7);
  }
  // The README's form: a literal key becomes a pheap::string in the only
  // open heap, and a std::string finds it.
  (*m)["literal"].push_back(43);
  EXPECT_EQ(m->find(std::string("literal"))->second.at(0), 43);
  // Still growing after the reopen, still in the heap.
  (*m)[pheap::string("after", pheap::allocator<char>(heap))].assign(1000, 7);
  EXPECT_TRUE(InHeap(heap, m->find("after")->second.data()));
}

struct Library {
  // Every member default-constructed: they live in the heap, so their
  // allocators take it.
  pheap::unordered_map<pheap::string, pheap::deque<pheap::string>> shelves;
  pheap::vector<pheap::vector<pheap::string>> rows;
  pheap::string title;
};

TEST(Containers, DefaultConstructedMembersOfAnObjectInTheHeapAllocateThere) {
  TempDir dir;
  {
    pheap::Heap heap("library", dir.config("", "64M"));
    Library* lib = heap.find_or_make<Library>("lib");
    lib->title = Long(-1).c_str();
    EXPECT_TRUE(InHeap(heap, lib->title.data()));
    // std::basic_string copies a default allocator made on the stack into
    // itself; it still names the heap that holds it.
    EXPECT_TRUE(lib->title.get_allocator() == pheap::allocator<char>(heap));
    EXPECT_TRUE(lib->rows.get_allocator() == pheap::allocator<char>(heap));
    EXPECT_FALSE(pheap::string().get_allocator() == pheap::allocator<char>(heap)) << "on the stack: names none";
    for (int i = 0; i < 50; ++i) {
      auto& shelf = lib->shelves[pheap::string(Long(i % 5).c_str(), pheap::allocator<char>(heap))];
      shelf.emplace_back(Long(i).c_str());  // scoped: the element takes the deque's allocator
      EXPECT_TRUE(InHeap(heap, shelf.back().data()));
    }
    lib->rows.resize(10);
    for (int r = 0; r < 10; ++r)
      for (int c = 0; c < r; ++c) lib->rows[static_cast<size_t>(r)].emplace_back(Long(r * 100 + c).c_str());
    EXPECT_TRUE(InHeap(heap, lib->rows[9][8].data()));
    heap.commit();
  }
  pheap::Heap heap("library", dir.config("", ""));
  Library* lib = heap.root<Library>("lib");
  ASSERT_NE(lib, nullptr);
  EXPECT_EQ(Std(lib->title), Long(-1));
  ASSERT_EQ(lib->shelves.size(), 5u);
  auto shelf = lib->shelves.find(std::string_view(Long(3)));  // transparent hash and equality
  ASSERT_NE(shelf, lib->shelves.end());
  ASSERT_EQ(shelf->second.size(), 10u);
  EXPECT_EQ(Std(shelf->second.front()), Long(3));
  EXPECT_EQ(Std(shelf->second.back()), Long(48));
  ASSERT_EQ(lib->rows.size(), 10u);
  EXPECT_EQ(Std(lib->rows[9][8]), Long(908));
  lib->rows[9].emplace_back(Long(999).c_str());
  EXPECT_TRUE(InHeap(heap, lib->rows[9].back().data()));
}

// Outside every heap a default allocator takes the only open heap; with
// none or two open it refuses rather than guess.
TEST(Containers, ADefaultAllocatorOutsideAnyHeapTakesTheOnlyOpenHeap) {
  TempDir dir;
  {
    pheap::vector<int> v;
    EXPECT_THROW(v.push_back(1), pheap::error) << "no heap is open";
  }
  pheap::Heap heap("one", dir.config("", "32M"));
  pheap::string s(Long(1).c_str());  // on the stack
  EXPECT_TRUE(InHeap(heap, s.data()));
  pheap::vector<pheap::string> v;
  v.emplace_back(Long(2).c_str());
  EXPECT_TRUE(InHeap(heap, v.data()));
  EXPECT_TRUE(InHeap(heap, v[0].data()));
  {
    pheap::Heap other("two", dir.config("", "32M"));
    pheap::vector<int> w;
    EXPECT_THROW(w.push_back(1), pheap::error) << "two heaps are open";
    pheap::vector<int> named{pheap::allocator<int>(other)};
    named.push_back(1);
    EXPECT_TRUE(InHeap(other, named.data()));
  }
  // Moved into the heap, a stack container's elements are copied there
  // unless their allocators already name that heap.
  using Names = pheap::vector<pheap::string>;
  Names* names = heap.find_or_make<Names>("names");
  names->push_back(s);
  EXPECT_TRUE(InHeap(heap, names->back().data()));
  EXPECT_EQ(Std(names->back()), Long(1));
}

}  // namespace
