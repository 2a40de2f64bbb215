// The C++ interface: RAII heaps, typed roots, make/destroy, commits, and std
// containers with pheap::allocator coming back intact after a reopen.
#include <pheap/allocator.hpp>
#include <pheap/heap.hpp>

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "tests/support/test_util.h"

namespace {

using pheaptest::TempDir;
template <typename T>
using Alloc = pheap::allocator<T>;
using String = std::basic_string<char, std::char_traits<char>, Alloc<char>>;

struct Everything {
  explicit Everything(const Alloc<char>& a)
      : numbers(a), words(a), table(a), index(16, std::hash<uint64_t>(), std::equal_to<uint64_t>(), a), queue(a), title(a) {}
  std::vector<uint64_t, Alloc<uint64_t>> numbers;
  std::vector<String, Alloc<String>> words;
  std::map<String, uint64_t, std::less<>, Alloc<std::pair<const String, uint64_t>>> table;
  std::unordered_map<uint64_t, String, std::hash<uint64_t>, std::equal_to<uint64_t>,
                     Alloc<std::pair<const uint64_t, String>>> index;
  std::deque<uint64_t, Alloc<uint64_t>> queue;
  String title;
};

String S(const std::string& s, const Alloc<char>& a) { return String(s.c_str(), a); }

// "r<i>", built by appending: GCC 12 at -O3 takes "r" + std::to_string(i)
// (an insert at the front) for an overlapping memcpy of 2^63 bytes and
// fails the build with a false -Wrestrict.
std::string RootName(uint64_t i) {
  std::string name = "r";
  name += std::to_string(i);
  return name;
}

TEST(CxxApi, StdContainersComeBackAfterReopen) {
  TempDir dir;
  {
    pheap::Heap heap("containers", dir.config());
    Alloc<char> a(heap);
    auto* e = heap.find_or_make<Everything>("everything", a);
    for (uint64_t i = 0; i < 100000; ++i) e->numbers.push_back(i * i);
    for (int i = 0; i < 2000; ++i) {
      String w = S("word-" + std::to_string(i) + std::string(static_cast<size_t>(i % 50), 'x'), a);
      e->words.push_back(w);
      e->table.emplace(w, static_cast<uint64_t>(i));
      e->index.emplace(static_cast<uint64_t>(i), w);
    }
    for (uint64_t i = 0; i < 50000; ++i) e->queue.push_back(i);
    for (int i = 0; i < 20000; ++i) e->queue.pop_front();
    e->title = S("a title long enough to live outside the small-string buffer", a);
    EXPECT_GE(heap.commit(), 1);
  }
  pheap::Heap heap("containers", dir.config());
  auto* e = heap.root<Everything>("everything");
  ASSERT_NE(e, nullptr);
  ASSERT_EQ(e->numbers.size(), 100000u);
  for (uint64_t i = 0; i < 100000; ++i) ASSERT_EQ(e->numbers[i], i * i);
  ASSERT_EQ(e->words.size(), 2000u);
  ASSERT_EQ(e->table.size(), 2000u);
  ASSERT_EQ(e->index.size(), 2000u);
  for (int i = 0; i < 2000; ++i) {
    std::string w = "word-" + std::to_string(i) + std::string(static_cast<size_t>(i % 50), 'x');
    ASSERT_EQ(std::string(e->words[static_cast<size_t>(i)].c_str()), w);
    auto it = e->table.find(std::string_view(w));
    ASSERT_NE(it, e->table.end());
    EXPECT_EQ(it->second, static_cast<uint64_t>(i));
    ASSERT_EQ(std::string(e->index.at(static_cast<uint64_t>(i)).c_str()), w);
  }
  ASSERT_EQ(e->queue.size(), 30000u);
  EXPECT_EQ(e->queue.front(), 20000u);
  EXPECT_EQ(e->queue.back(), 49999u);
  EXPECT_EQ(std::string(e->title.c_str()), "a title long enough to live outside the small-string buffer");
  // The containers keep working: growth after the reopen allocates in the heap.
  for (uint64_t i = 0; i < 1000; ++i) e->numbers.push_back(i);
  e->table.emplace(S("after-reopen", Alloc<char>(heap)), 7u);
  EXPECT_EQ(pheap_of(e->numbers.data()), heap.c_handle());
  heap.commit();
}

TEST(CxxApi, RootTypesAreRecordedAndChecked) {
  TempDir dir;
  pheap::Heap heap("types", dir.config());
  auto* n = heap.make<uint64_t>(42u);
  heap.set_root("answer", n);
  EXPECT_EQ(heap.root<uint64_t>("answer"), n);
  try {
    heap.root<double>("answer");
    FAIL() << "a root of another type was handed out";
  } catch (const pheap::error& e) {
    EXPECT_NE(std::string(e.what()).find("answer"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("holds a unsigned long (8 bytes, align 8), not a double (8 bytes"),
              std::string::npos)
        << "the types demangled: " << e.what();
    EXPECT_EQ(e.code(), EINVAL);
  }
  EXPECT_EQ(heap.root<uint64_t>("missing"), nullptr);
  // Re-typing a root is allowed through set_root.
  auto* d = heap.make<double>(2.5);
  heap.set_root("answer", d);
  EXPECT_EQ(*heap.root<double>("answer"), 2.5);
  heap.destroy(n);
}

// A fresh heap's lookups read only the slots it has used; they must still
// find every root as the table fills, gets holes and retyped slots, and the
// reopened heap (which reads them all) must agree.
TEST(CxxApi, RootsWithHolesAndRetypesAgreeBeforeAndAfterReopen) {
  TempDir dir;
  std::map<std::string, uint64_t> want;  // name -> value; the type is uint64_t unless retyped
  auto check = [&](pheap::Heap& heap) {
    for (int i = 0; i < 60; ++i) {
      const std::string name = RootName(i);
      auto it = want.find(name);
      if (name == "r1") {
        ASSERT_NE(heap.root<double>(name), nullptr);
        EXPECT_EQ(*heap.root<double>(name), 1.5);
      } else if (it == want.end()) {
        EXPECT_EQ(heap.root<uint64_t>(name), nullptr) << name;
      } else {
        ASSERT_NE(heap.root<uint64_t>(name), nullptr) << name;
        EXPECT_EQ(*heap.root<uint64_t>(name), it->second) << name;
      }
    }
  };
  {
    pheap::Heap heap("roots", dir.config());
    for (uint64_t i = 0; i < 40; ++i) {
      heap.set_root(RootName(i), heap.make<uint64_t>(i));
      want[RootName(i)] = i;
    }
    for (int i = 0; i < 40; i += 3) {  // holes
      heap.set_root<uint64_t>(RootName(i), nullptr);
      want.erase(RootName(i));
    }
    heap.set_root("r1", heap.make<double>(1.5));  // a new slot, the old one retired
    want.erase("r1");
    for (uint64_t i = 40; i < 60; ++i) {  // fill the holes, then past them
      heap.set_root(RootName(i), heap.make<uint64_t>(i * 10));
      want[RootName(i)] = i * 10;
    }
    check(heap);
    heap.commit();
  }
  pheap::Heap again("roots", dir.config());
  check(again);
}

struct Counted {
  static inline int live = 0;
  explicit Counted(int v) : value(v) { ++live; }
  ~Counted() { --live; }
  int value;
};

struct Throws {
  Throws() { throw std::runtime_error("no"); }
};

TEST(CxxApi, MakeDestroyAndFindOrMake) {
  TempDir dir;
  pheap::Heap heap("make", dir.config());
  Counted* c = heap.make<Counted>(5);
  EXPECT_EQ(Counted::live, 1);
  EXPECT_EQ(c->value, 5);
  heap.destroy(c);
  EXPECT_EQ(Counted::live, 0);
  EXPECT_THROW(heap.make<Throws>(), std::runtime_error);
  auto* a = heap.find_or_make<Counted>("c", 9);
  auto* b = heap.find_or_make<Counted>("c", 10);
  EXPECT_EQ(a, b);
  EXPECT_EQ(b->value, 9);
}

// A root whose type name is long (a nested container of scoped
// allocators) is recorded and checked like any other, and comes back after
// a reopen; roots() lists every root, and destroy(name) clears one.
TEST(CxxApi, LongTypeNamesRootEnumerationAndDestroyByName) {
  using Inner = std::vector<String, Alloc<String>>;
  using Long = std::map<String, Inner, std::less<>, Alloc<std::pair<const String, Inner>>>;
  ASSERT_GT(pheap::detail::type_tag<Long>().size(), 127u) << "the test needs a type name past the old limit";
  TempDir dir;
  {
    pheap::Heap heap("long", dir.config());
    Alloc<char> a(heap);
    Long* m = heap.find_or_make<Long>("index", a);
    m->emplace(S("k", a), Inner(1, S("v", a), a));
    heap.make<Counted>(1);
    heap.set_root("counted", heap.make<Counted>(2));
    heap.commit();
  }
  pheap::Heap heap("long", dir.config());
  Long* m = heap.root<Long>("index");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->at(S("k", Alloc<char>(heap)))[0], "v");
  using Other = std::map<int, int>;
  EXPECT_THROW(heap.root<Other>("index"), pheap::error);
  std::map<std::string, std::string> listed;
  for (const auto& r : heap.roots()) listed[r.name] = r.type;
  EXPECT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed["index"].substr(0, 100), pheap::detail::type_tag<Long>().substr(0, 100));
  EXPECT_EQ(listed["counted"], pheap::detail::type_tag<Counted>());
  const int live = Counted::live;
  EXPECT_TRUE(heap.destroy<Counted>("counted"));
  EXPECT_EQ(Counted::live, live - 1);
  EXPECT_EQ(heap.root<Counted>("counted"), nullptr);
  EXPECT_FALSE(heap.destroy<Counted>("counted"));
}

// find_or_make gives back the object it made when the root cannot be
// recorded (here: a name that is too long).
TEST(CxxApi, FindOrMakeDoesNotLeakWhenTheRootFails) {
  TempDir dir;
  pheap::Heap heap("leak", dir.config());
  const int live = Counted::live;
  EXPECT_THROW(heap.find_or_make<Counted>(std::string(200, 'n'), 1), pheap::error);
  EXPECT_EQ(Counted::live, live) << "the object made for the root was not destroyed";
}

// A Heap unwound by an exception closes without committing: a transfer
// that threw half-way is not made durable; the last commit stands.
TEST(CxxApi, AnExceptionUnwindingTheHeapDoesNotCommitAHalfDoneUpdate) {
  struct Accounts {
    uint64_t a, b;
  };
  TempDir dir;
  {
    pheap::Heap heap("bank", dir.config());
    heap.find_or_make<Accounts>("acc", Accounts{100, 0});
    heap.commit();
  }
  try {
    pheap::Heap heap("bank", dir.config());
    auto* acc = heap.root<Accounts>("acc");
    acc->a -= 10;
    throw std::runtime_error("failed before crediting b");
  } catch (const std::runtime_error&) {
  }
  {
    pheap::Heap heap("bank", dir.config());
    auto* acc = heap.root<Accounts>("acc");
    EXPECT_EQ(acc->a + acc->b, 100u) << "a half-done transfer was committed: a=" << acc->a << " b=" << acc->b;
    acc->b += 5;  // closed without an exception: committed
  }
  pheap::Heap heap("bank", dir.config());
  EXPECT_EQ(heap.root<Accounts>("acc")->b, 5u) << "a normal close committed";
}

TEST(CxxApi, CommitAsyncCanBeWaitedOn) {
  TempDir dir;
  pheap::Heap heap("async", dir.config());
  auto* v = heap.find_or_make<uint64_t>("v", 0u);
  pheap::pending_commit last(nullptr, 0);
  for (int i = 0; i < 10; ++i) {
    ++*v;
    last = heap.commit_async();
  }
  EXPECT_EQ(last.wait(), last.epoch());
  EXPECT_TRUE(last.ready());
  EXPECT_GE(heap.durable_epoch(), last.epoch());
}

TEST(CxxApi, OpeningAHeapTwiceInOneProcessFailsClearly) {
  TempDir dir;
  pheap::Heap heap("twice", dir.config());
  try {
    pheap::Heap again("twice", dir.config());
    FAIL() << "a second open of the same heap succeeded";
  } catch (const pheap::error& e) {
    EXPECT_NE(std::string(e.what()).find("twice"), std::string::npos) << e.what();
  }
}

}  // namespace
