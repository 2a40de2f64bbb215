// Runs the Boost.Interprocess documentation examples (README.md here) as
// written, then with a SIGKILL at their checkpoint, and checks the data
// each built in the heap it leaves, reopened in this process.
#include <pheap/managed_heap.hpp>

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/containers/list.hpp>
#include <boost/interprocess/containers/map.hpp>
#include <boost/interprocess/containers/string.hpp>
#include <boost/interprocess/containers/vector.hpp>
#include <boost/unordered_map.hpp>

#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "tests/support/test_util.h"

using namespace boost::interprocess;

// doc_complex_map's types, as the example declares them.
typedef pheap::managed_heap::segment_manager segment_manager_t;
typedef allocator<void, segment_manager_t> void_allocator;
typedef allocator<int, segment_manager_t> int_allocator;
typedef vector<int, int_allocator> int_vector;
typedef allocator<int_vector, segment_manager_t> int_vector_allocator;
typedef vector<int_vector, int_vector_allocator> int_vector_vector;
typedef allocator<char, segment_manager_t> char_allocator;
typedef basic_string<char, std::char_traits<char>, char_allocator> char_string;
class complex_data {
  int id_;
  char_string char_string_;
  int_vector_vector int_vector_vector_;

 public:
  complex_data(int id, const char* name, const void_allocator& void_alloc)
      : id_(id), char_string_(name, void_alloc), int_vector_vector_(void_alloc) {}
  int get_id() { return id_; };
  char_string get_char_string() { return char_string_; };
  int_vector_vector get_int_vector_vector() { return int_vector_vector_; };
};
typedef std::pair<const char_string, complex_data> map_value_type;
typedef allocator<map_value_type, segment_manager_t> map_value_type_allocator;
typedef map<char_string, complex_data, std::less<char_string>, map_value_type_allocator> complex_map_type;

namespace {

using pheaptest::TempDir;
std::map<std::string, std::string> g_examples;  // name -> executable

// Runs example `name` with PHEAP_DIR=dir (and PHEAP_EXAMPLE_CRASH if
// `crash`); its wait status.
int Run(const std::string& name, const TempDir& dir, bool crash) {
  const std::string& exe = g_examples.at(name);
  pid_t pid = fork();
  if (pid == 0) {
    setenv("PHEAP_DIR", dir.path().c_str(), 1);
    if (crash) setenv("PHEAP_EXAMPLE_CRASH", "1", 1);
    execl(exe.c_str(), exe.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

// The example runs as written, its assertions hold, and it removes its
// heap; then it runs again, is killed at its checkpoint, and `check` gets
// the heap it left, reopened here.
template <typename Check>
void RunExample(const std::string& name, const char* heap, Check check) {
  if (g_examples.count(name) == 0) GTEST_SKIP() << name << " was not built";
  TempDir dir;
  int status = Run(name, dir, false);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << name << " failed as written: status " << status;
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/" + heap)) << name << " left its heap";
  status = Run(name, dir, true);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << name << " was not killed: status " << status;
  pheap::managed_heap segment(open_only, (dir.path() + "/" + heap).c_str());
  check(segment);
  EXPECT_TRUE(segment.check_sanity());
}

TEST(BoostExamples, DocMap) {
  RunExample("doc_map", "MySharedMemory", [](pheap::managed_heap& segment) {
    typedef allocator<std::pair<const int, float>, pheap::managed_heap::segment_manager> ShmemAllocator;
    typedef map<int, float, std::less<int>, ShmemAllocator> MyMap;
    MyMap* mymap = segment.find<MyMap>("MyMap").first;
    ASSERT_NE(mymap, nullptr);
    ASSERT_EQ(mymap->size(), 100u);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(mymap->at(i), static_cast<float>(i));
  });
}

TEST(BoostExamples, DocCont) {
  RunExample("doc_cont", "MySharedMemory", [](pheap::managed_heap& segment) {
    typedef allocator<int, pheap::managed_heap::segment_manager> ShmemAllocator;
    typedef vector<int, ShmemAllocator> MyVector;
    MyVector* myvector = segment.find<MyVector>("MyVector").first;
    ASSERT_NE(myvector, nullptr);
    EXPECT_EQ(std::vector<int>(myvector->begin(), myvector->end()), (std::vector<int>{6, 5, 4, 3, 2, 1, 0}));
  });
}

TEST(BoostExamples, DocComplexMap) {
  RunExample("doc_complex_map", "MySharedMemory", [](pheap::managed_heap& segment) {
    complex_map_type* mymap = segment.find<complex_map_type>("MyMap").first;
    ASSERT_NE(mymap, nullptr);
    ASSERT_EQ(mymap->size(), 1u) << "every insert used the same (empty) key";
    complex_data& d = mymap->begin()->second;
    EXPECT_EQ(d.get_id(), 0);
    EXPECT_EQ(std::string(d.get_char_string().c_str()), "default_name");
    EXPECT_TRUE(d.get_int_vector_vector().empty());
  });
}

TEST(BoostExamples, DocWhereAllocate) {
  RunExample("doc_where_allocate", "MySharedMemory", [](pheap::managed_heap& shm) {
    typedef allocator<char, pheap::managed_heap::segment_manager> CharAllocator;
    typedef basic_string<char, std::char_traits<char>, CharAllocator> MyShmString;
    typedef allocator<MyShmString, pheap::managed_heap::segment_manager> StringAllocator;
    typedef vector<MyShmString, StringAllocator> MyShmStringVector;
    MyShmStringVector* v = shm.find<MyShmStringVector>("myshmvector").first;
    ASSERT_NE(v, nullptr);
    ASSERT_EQ(v->size(), 10u);
    for (const MyShmString& s : *v) EXPECT_EQ(std::string(s.c_str()), "this is my text");
  });
}

TEST(BoostExamples, DocUnorderedMap) {
  RunExample("doc_unordered_map", "MySharedMemory", [](pheap::managed_heap& segment) {
    typedef std::pair<const int, float> ValueType;
    typedef allocator<ValueType, pheap::managed_heap::segment_manager> ShmemAllocator;
    typedef boost::unordered_map<int, float, boost::hash<int>, std::equal_to<int>, ShmemAllocator> MyHashMap;
    MyHashMap* m = segment.find<MyHashMap>("MyHashMap").first;
    ASSERT_NE(m, nullptr);
    ASSERT_EQ(m->size(), 100u);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(m->at(i), static_cast<float>(i));
  });
}

TEST(BoostExamples, DocManagedMappedFile) {
  RunExample("doc_managed_mapped_file", "file_mapping", [](pheap::managed_heap& mfile_memory) {
    typedef list<int, allocator<int, pheap::managed_heap::segment_manager>> MyList;
    MyList* mylist = mfile_memory.find<MyList>("MyList").first;
    ASSERT_NE(mylist, nullptr);
    EXPECT_GT(mfile_memory.get_size(), pheap::managed_heap::min_size) << "grow() made it larger";
    EXPECT_GT(mylist->size(), 100000u) << "it filled the heap twice";
    for (int v : *mylist) ASSERT_EQ(v, 0);
  });
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) g_examples[std::filesystem::path(argv[i]).filename().string()] = argv[i];
  return RUN_ALL_TESTS();
}
