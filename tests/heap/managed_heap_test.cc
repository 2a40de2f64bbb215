// pheap::managed_heap: Boost.Interprocess's managed_mapped_file interface
// over a heap. Open modes, every construct/find/destroy form, counts and
// the named index, the memory functions, Boost.Interprocess containers on
// the segment manager, scoped containers, and a reopen in another process
// after the writer is killed.
#include <pheap/containers.hpp>
#include <pheap/managed_heap.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/containers/list.hpp>
#include <boost/interprocess/containers/map.hpp>
#include <boost/interprocess/containers/string.hpp>
#include <boost/interprocess/containers/vector.hpp>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/test_util.h"

namespace {

namespace bip = boost::interprocess;
using pheaptest::TempDir;
using Segment = pheap::managed_heap;
std::string g_worker;

std::string Path(const TempDir& dir, const char* name) { return dir.path() + "/" + name; }

template <typename F>
int ErrnoOf(F f) {
  try {
    f();
  } catch (const pheap::error& e) {
    return e.code();
  }
  return 0;
}

TEST(ManagedHeap, OpenModesFollowBoostsTags) {
  TempDir dir;
  const std::string path = Path(dir, "modes");
  EXPECT_EQ(ErrnoOf([&] { Segment s(bip::open_only, path.c_str()); }), ENOENT);
  EXPECT_FALSE(std::filesystem::exists(path)) << "a failed open_only left the heap's directory";
  {
    Segment s(bip::create_only, path.c_str(), 65536);  // below the least region: raised
    EXPECT_EQ(s.get_size(), Segment::min_size);
    s.construct<int>("x")(1);
  }
  EXPECT_TRUE(std::filesystem::is_directory(path)) << "the path's last part is the heap, in its directory";
  EXPECT_EQ(ErrnoOf([&] { Segment s(bip::create_only, path.c_str(), 32 << 20); }), EEXIST);
  {
    Segment s(bip::open_only, path.c_str());
    EXPECT_EQ(*s.find<int>("x").first, 1) << "closing committed";
  }
  {
    Segment s(bip::open_or_create, path.c_str(), 32 << 20);  // exists: opened, and grown
    EXPECT_EQ(*s.find<int>("x").first, 1);
    EXPECT_EQ(s.get_size(), size_t{32} << 20);
  }
  {
    Segment s(bip::open_or_create, Path(dir, "fresh").c_str(), 32 << 20, "commit_ms=0");
    EXPECT_EQ(s.find<int>("x").first, nullptr);
  }
  {
    Segment s(bip::open_read_only, path.c_str());
    EXPECT_EQ(*s.find<int>("x").first, 1);
    try {
      s.construct<int>("y")(2);
      ADD_FAILURE() << "a read-only heap constructed an object";
    } catch (const pheap::error& e) {
      EXPECT_EQ(e.code(), EROFS);
      EXPECT_NE(std::string(e.what()).find("is open read-only: construct"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(ErrnoOf([&] { Segment s(bip::open_read_only, Path(dir, "none").c_str()); }), ENOENT);
  EXPECT_EQ(ErrnoOf([&] { Segment s(bip::open_or_create, (dir.path() + "/").c_str(), 1 << 20); }), EINVAL);
  Segment moved;
  moved = Segment(bip::open_only, path.c_str());
  EXPECT_EQ(*moved.find<int>("x").first, 1);
}

TEST(ManagedHeap, GrowAndRemoveWorkOnAClosedHeap) {
  TempDir dir;
  const std::string path = Path(dir, "grown");
  EXPECT_FALSE(Segment::grow(path.c_str(), 1000)) << "no such heap";
  EXPECT_FALSE(Segment::remove(path.c_str()));
  size_t free_before = 0;
  int* x = nullptr;
  {
    Segment s(bip::create_only, path.c_str(), 16 << 20);
    x = s.construct<int>("x")(7);
    free_before = s.get_free_memory();
    EXPECT_FALSE(Segment::grow(path.c_str(), 1000)) << "grew a heap that is open";
    EXPECT_FALSE(Segment::remove(path.c_str())) << "removed a heap that is open";
  }
  EXPECT_TRUE(Segment::grow(path.c_str(), 1000));
  {
    Segment s(bip::open_only, path.c_str());
    EXPECT_GT(s.get_size(), size_t{16} << 20);
    EXPECT_GE(s.get_free_memory(), free_before + 1000);
    EXPECT_EQ(s.find<int>("x").first, x) << "objects stay where they are";
  }
  EXPECT_TRUE(Segment::remove(path.c_str()));
  EXPECT_FALSE(std::filesystem::exists(path));
}

struct Counted {
  static inline int live = 0;
  static inline int throw_at = -1;  // the construction that throws, counting from 0
  Counted(int a, const std::string& b) : value(a + static_cast<int>(b.size())) {
    if (throw_at == 0) throw std::runtime_error("construction failed");
    --throw_at;
    ++live;
  }
  ~Counted() { --live; }
  int value;
};

TEST(ManagedHeap, ConstructFindAndDestroyInEveryForm) {
  TempDir dir;
  Segment seg(bip::create_only, Path(dir, "objects").c_str(), 32 << 20);
  const std::string three = "abc";

  Counted* one = seg.construct<Counted>("one")(1, three);
  EXPECT_EQ(one->value, 4);
  EXPECT_EQ(seg.find<Counted>("one"), std::make_pair(one, size_t{1}));
  EXPECT_EQ(seg.heap().root<Counted>("one"), one) << "a single named object is a plain typed root";
  EXPECT_THROW(seg.construct<Counted>("one")(2, three), bip::interprocess_exception);
  EXPECT_EQ(seg.construct<Counted>("one", std::nothrow)(2, three), nullptr);
  EXPECT_EQ(seg.find_or_construct<Counted>("one")(9, three), one);
  EXPECT_EQ(one->value, 4) << "find_or_construct made nothing";

  Counted* arr = seg.construct<Counted>("array")[5](10, three);
  EXPECT_EQ(seg.find<Counted>("array"), std::make_pair(arr, size_t{5}));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(arr[i].value, 13);
  Counted* arr2 = seg.find_or_construct<Counted>("array2")[3](0, three);
  EXPECT_EQ(seg.find_or_construct<Counted>("array2")[7](0, three), arr2);
  EXPECT_EQ(seg.find<Counted>("array2").second, 3u);
  EXPECT_EQ(Counted::live, 9);

  long* u = seg.construct<long>(bip::unique_instance)(5L);
  EXPECT_EQ(seg.find<long>(bip::unique_instance), std::make_pair(u, size_t{1}));
  EXPECT_EQ(seg.find_or_construct<long>(bip::unique_instance)(6L), u);
  EXPECT_THROW(seg.construct<long>(bip::unique_instance)(7L), bip::interprocess_exception);

  double* ud = seg.find_or_construct<double>(bip::unique_instance)(1.5);
  EXPECT_EQ(seg.get_num_unique_objects(), 2u);
  EXPECT_TRUE(seg.destroy<double>(bip::unique_instance));
  EXPECT_FALSE(seg.destroy<double>(bip::unique_instance));
  EXPECT_EQ(seg.find<double>(bip::unique_instance).first, nullptr);
  (void)ud;
  EXPECT_EQ(seg.find_or_construct<Counted>("one", std::nothrow)(9, three), one);

  Counted* anon = seg.construct<Counted>(bip::anonymous_instance)(0, three);
  Counted* anon_arr = seg.construct<Counted>(bip::anonymous_instance)[4](0, three);
  EXPECT_EQ(Counted::live, 14);
  EXPECT_EQ(seg.get_num_named_objects(), 3u);
  EXPECT_EQ(seg.get_num_unique_objects(), 1u);

  // A type other than the one stored is refused, naming both.
  try {
    seg.find<double>("one");
    FAIL() << "found as another type";
  } catch (const pheap::error& e) {
    EXPECT_NE(std::string(e.what()).find("Counted"), std::string::npos) << e.what();
  }
  EXPECT_THROW(seg.find<double>("array"), pheap::error);
  EXPECT_THROW(seg.construct<int>("pheap.mine")(1), pheap::error) << "reserved names";

  // An element that throws: the ones made are destroyed, nothing is named.
  Counted::throw_at = 2;
  EXPECT_THROW(seg.construct<Counted>("broken")[4](0, three), std::runtime_error);
  Counted::throw_at = -1;
  EXPECT_EQ(Counted::live, 14);
  EXPECT_EQ(seg.find<Counted>("broken").first, nullptr);

  seg.destroy_ptr(anon);
  seg.destroy_ptr(anon_arr);
  EXPECT_EQ(Counted::live, 9);
  seg.destroy_ptr(arr2);  // named, found by address
  EXPECT_EQ(seg.find<Counted>("array2").first, nullptr);
  seg.destroy_ptr(u);  // unique, found by address
  EXPECT_EQ(seg.find<long>(bip::unique_instance).first, nullptr);
  EXPECT_TRUE(seg.destroy<Counted>("array"));
  EXPECT_TRUE(seg.destroy<Counted>("one"));
  EXPECT_FALSE(seg.destroy<Counted>("one"));
  EXPECT_EQ(Counted::live, 0);
  EXPECT_EQ(seg.get_num_named_objects(), 0u);
  EXPECT_EQ(seg.get_num_unique_objects(), 0u);
  int on_stack = 0;
  EXPECT_THROW(seg.destroy_ptr(&on_stack), pheap::error);
  EXPECT_TRUE(seg.check_sanity());
}

// Concurrent find_or_construct of one name makes one object: the named
// functions are serialised, as Boost's are by the segment's mutex.
TEST(ManagedHeap, FindOrConstructFromManyThreadsMakesOneObject) {
  TempDir dir;
  Segment seg(bip::create_only, Path(dir, "threads").c_str(), 32 << 20);
  std::atomic<int> made{0};
  struct Made {
    explicit Made(std::atomic<int>* n) { ++*n; }
  };
  std::vector<std::thread> threads;
  std::vector<Made*> got(8, nullptr);
  for (size_t t = 0; t < got.size(); ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        std::string name = "shared";
        name += std::to_string(i);
        Made* m = seg.find_or_construct<Made>(name.c_str())(&made);
        if (i == 99) got[t] = m;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(made.load(), 100);
  for (Made* m : got) EXPECT_EQ(m, got[0]);
  EXPECT_EQ(seg.get_num_named_objects(), 100u);
}

TEST(ManagedHeap, TheNamedIndexListsNamesAndValues) {
  TempDir dir;
  Segment seg(bip::create_only, Path(dir, "index").c_str(), 32 << 20);
  int* a = seg.construct<int>("a")(1);
  double* b = seg.construct<double>("b")[10](0.5);
  seg.construct<char>(bip::unique_instance)('u');
  seg.construct<int>(bip::anonymous_instance)(3);
  std::map<std::string, const void*> seen;
  for (auto it = seg.named_begin(); it != seg.named_end(); ++it) {
    EXPECT_EQ(std::strlen(it->name()), it->name_length());
    seen[it->name()] = it->value();
  }
  EXPECT_EQ(seen, (std::map<std::string, const void*>{{"a", a}, {"b", b}}));
  size_t unique = 0;
  for (auto it = seg.unique_begin(); it != seg.unique_end(); ++it) {
    EXPECT_EQ(std::string(it->name()), typeid(char).name());
    EXPECT_EQ(*static_cast<const char*>(it->value()), 'u');
    ++unique;
  }
  EXPECT_EQ(unique, 1u);
}

TEST(ManagedHeap, MemoryFunctions) {
  TempDir dir;
  Segment seg(bip::create_only, Path(dir, "memory").c_str(), 64 << 20);
  EXPECT_EQ(seg.get_size(), size_t{64} << 20);
  const size_t free_before = seg.get_free_memory();
  EXPECT_GT(free_before, size_t{32} << 20);
  EXPECT_LT(free_before, seg.get_size());
  void* big = seg.allocate(8 << 20);
  EXPECT_LE(seg.get_free_memory(), free_before - (8 << 20));
  EXPECT_TRUE(seg.belongs_to_segment(big));
  EXPECT_EQ(seg.get_address_from_handle(seg.get_handle_from_address(big)), big);
  seg.deallocate(big);
  EXPECT_EQ(seg.get_free_memory(), free_before);
  EXPECT_EQ(seg.allocate(size_t{1} << 40, std::nothrow), nullptr);
  EXPECT_THROW(seg.allocate(size_t{1} << 40), bip::bad_alloc);
  void* aligned = seg.allocate_aligned(100, 4096);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(aligned) % 4096, 0u);
  seg.deallocate(aligned);
  auto ints = seg.get_allocator<int>();
  int* p = ints.allocate(10);  // a raw pointer: void_pointer is void*
  EXPECT_TRUE(seg.belongs_to_segment(p));
  ints.deallocate(p, 10);
  EXPECT_TRUE(seg.check_sanity());
  EXPECT_TRUE(seg.flush());
  EXPECT_GE(seg.durable_epoch(), 1);
  EXPECT_GT(seg.commit(), 1);
  pheap::pending_commit pending = seg.commit_async();
  EXPECT_EQ(pending.wait(), pending.epoch());
  EXPECT_GE(seg.durable_epoch(), pending.epoch());
  int n = 0;
  auto f = [&] { ++n; };
  seg.atomic_func(f);
  EXPECT_TRUE(seg.try_atomic_func(f));
  EXPECT_EQ(n, 2);
}

using IntAlloc = bip::allocator<int, Segment::segment_manager>;
using CharAlloc = bip::allocator<char, Segment::segment_manager>;
using BString = bip::basic_string<char, std::char_traits<char>, CharAlloc>;
using StringAlloc = bip::allocator<BString, Segment::segment_manager>;
using BVector = bip::vector<int, IntAlloc>;
using BStrings = bip::vector<BString, StringAlloc>;
using BList = bip::list<int, IntAlloc>;
using PairAlloc = bip::allocator<std::pair<const BString, int>, Segment::segment_manager>;
using BMap = bip::map<BString, int, std::less<BString>, PairAlloc>;

std::string Text(int i) {
  std::string s = "string ";
  s += std::to_string(i);
  s += " longer than any small-string buffer";
  return s;
}

TEST(ManagedHeap, BoostContainersOnTheSegmentManagerComeBackAfterReopen) {
  TempDir dir;
  const std::string path = Path(dir, "boost");
  {
    Segment seg(bip::create_only, path.c_str(), 64 << 20);
    Segment::segment_manager* sm = seg.get_segment_manager();
    EXPECT_TRUE(seg.belongs_to_segment(sm)) << "the segment manager lives in the heap";
    auto* v = seg.construct<BVector>("v")(sm);
    for (int i = 0; i < 100000; ++i) v->push_back(i);
    v->shrink_to_fit();
    auto* strings = seg.construct<BStrings>("strings")(sm);
    for (int i = 0; i < 1000; ++i) strings->emplace_back(Text(i).c_str(), sm);
    auto* list = seg.construct<BList>("list")(sm);
    for (int i = 0; i < 1000; ++i) list->push_back(i);
    list->insert(list->begin(), 50, 7);  // nodes allocated many at a time
    auto* m = seg.construct<BMap>("map")(std::less<BString>(), sm);
    for (int i = 0; i < 1000; ++i) m->emplace(BString(Text(i).c_str(), sm), i);
    EXPECT_TRUE(seg.belongs_to_segment(&*v->begin()));
    EXPECT_TRUE(seg.belongs_to_segment(strings->back().c_str()));
    seg.commit();
  }
  Segment seg(bip::open_only, path.c_str());
  BVector* v = seg.find<BVector>("v").first;
  ASSERT_NE(v, nullptr);
  ASSERT_EQ(v->size(), 100000u);
  for (int i = 0; i < 100000; ++i) ASSERT_EQ((*v)[static_cast<size_t>(i)], i);
  BStrings* strings = seg.find<BStrings>("strings").first;
  ASSERT_EQ(strings->size(), 1000u);
  EXPECT_EQ(std::string((*strings)[999].c_str()), Text(999));
  BList* list = seg.find<BList>("list").first;
  ASSERT_EQ(list->size(), 1050u);
  EXPECT_EQ(list->front(), 7);
  EXPECT_EQ(list->back(), 999);
  BMap* m = seg.find<BMap>("map").first;
  ASSERT_EQ(m->size(), 1000u);
  EXPECT_EQ(m->at(BString(Text(500).c_str(), seg.get_segment_manager())), 500);
  // They keep growing in this process: the allocators' segment manager
  // pointer is valid here too.
  for (int i = 0; i < 1000; ++i) v->push_back(-i);
  strings->emplace_back("after the reopen", seg.get_segment_manager());
  list->clear();
  m->clear();
  EXPECT_TRUE(seg.check_sanity());
}

TEST(ManagedHeap, ScopedContainersNestWithoutAnAllocator) {
  TempDir dir;
  using Index = pheap::map<pheap::string, pheap::vector<int>>;
  Segment seg(bip::create_only, Path(dir, "scoped").c_str(), 32 << 20);
  Index* m = seg.find_or_construct<Index>("index")();
  (*m)[pheap::string("k", pheap::allocator<char>(seg.heap()))].push_back(42);
  EXPECT_EQ(m->find("k")->second.at(0), 42);
  EXPECT_TRUE(seg.belongs_to_segment(m->find("k")->second.data()));
  using Table = pheap::unordered_map<int, pheap::deque<pheap::string>>;
  Table* t = seg.construct<Table>("table")();
  (*t)[1].emplace_back(Text(1).c_str());
  EXPECT_TRUE(seg.belongs_to_segment((*t)[1].back().data()));
}

// While the writer runs with changes it has not committed, a read-only
// process finds exactly what was committed and can change nothing; then
// the writer is killed, and a new process finds the same.
TEST(ManagedHeap, ReadersAndTheNextWriterFindTheCommittedObjects) {
  TempDir dir;
  const std::string path = Path(dir, "killed");
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    execl(g_worker.c_str(), g_worker.c_str(), "write", path.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  FILE* from = fdopen(out[0], "r");
  std::string said;
  char line[256];
  while (said.find("dirty") == std::string::npos && std::fgets(line, sizeof(line), from) != nullptr) said += line;
  ASSERT_NE(said.find("committed\ndirty"), std::string::npos) << said;
  // A reader beside the running writer sees the commit, not what followed.
  std::string read;
  EXPECT_EQ(pheaptest::RunCommand(g_worker + " read " + path + " 2>&1", &read), 0) << read;
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  std::fclose(from);
  std::string checked;
  EXPECT_EQ(pheaptest::RunCommand(g_worker + " check " + path + " 2>&1", &checked), 0) << checked;
  // And this process too, after the checker's own changes were committed.
  Segment seg(bip::open_only, path.c_str());
  auto arr = seg.find<double>("array");
  ASSERT_EQ(arr.second, 64u);
  EXPECT_EQ(arr.first[0], 2.5);
  EXPECT_EQ(seg.find<BVector>("vector").first->size(), 10001u) << "the checker's close committed its push_back";
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s MANAGED_HEAP_WORKER\n", argv[0]);
    return 2;
  }
  g_worker = argv[1];
  return RUN_ALL_TESTS();
}
