// Runs the Boost.Interprocess documentation examples and the rewritten
// Metall examples (README.md here) as written, then with a SIGKILL at
// their checkpoint, and checks the data each built in the heap it leaves,
// reopened in this process.
#include <pheap/managed_heap.hpp>

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <boost/container/map.hpp>
#include <boost/container/scoped_allocator.hpp>
#include <boost/container/string.hpp>
#include <boost/container/vector.hpp>
#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/containers/list.hpp>
#include <boost/interprocess/containers/map.hpp>
#include <boost/interprocess/containers/string.hpp>
#include <boost/interprocess/containers/vector.hpp>
#include <boost/unordered_map.hpp>

#include <fcntl.h>

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

// complex_map's value type, as the Metall example declares it (at global
// scope: its recorded type names it so).
template <typename _allocator_type>
struct mapped_type {
  using allocator_type = _allocator_type;
  boost::container::vector<int, typename std::allocator_traits<_allocator_type>::template rebind_alloc<int>> vec;
  boost::container::basic_string<char, std::char_traits<char>,
                                 typename std::allocator_traits<_allocator_type>::template rebind_alloc<char>>
      str;
  explicit mapped_type(const allocator_type& allocator) : vec(allocator), str(allocator) {}
};

namespace {

using pheaptest::TempDir;
std::map<std::string, std::string> g_examples;  // name -> executable

// Runs example `name` with PHEAP_DIR=dir (and PHEAP_EXAMPLE_CRASH if
// `crash`); its wait status, and in *out what it printed on stdout.
int Run(const std::string& name, const TempDir& dir, bool crash, std::string* out = nullptr) {
  const std::string& exe = g_examples.at(name);
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(pipefd[1], 1);
    setenv("PHEAP_DIR", dir.path().c_str(), 1);
    if (crash) setenv("PHEAP_EXAMPLE_CRASH", "1", 1);
    execl(exe.c_str(), exe.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(pipefd[1]);
  std::string said;
  char buf[512];
  for (ssize_t n; (n = read(pipefd[0], buf, sizeof(buf))) > 0;) said.append(buf, static_cast<size_t>(n));
  close(pipefd[0]);
  if (out != nullptr) *out = said;
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

// Metall's examples: no assertions of their own, but comments saying what
// each prints, which `printed` holds. They leave their datastores (and
// create them with create_only), so the crash run gets a fresh directory;
// `check` gets that directory once the example was killed.
template <typename Check>
void RunMetallExample(const std::string& name, const std::string& printed, Check check) {
  if (g_examples.count(name) == 0) GTEST_SKIP() << name << " was not built";
  {
    TempDir dir;
    std::string out;
    const int status = Run(name, dir, false, &out);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << name << " failed as written: status " << status;
    EXPECT_EQ(out, printed) << name;
  }
  TempDir dir;
  const int status = Run(name, dir, true);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << name << " was not killed: status " << status;
  check(dir.path() + "/");
}

namespace metall_types {
namespace bc = boost::container;
template <typename T>
using Alloc = pheap::managed_heap::allocator_type<T>;
using vector_t = bc::vector<int, Alloc<int>>;
using outer_vector_type = bc::vector<vector_t, bc::scoped_allocator_adaptor<Alloc<vector_t>>>;
template <typename A, typename N>
using rebind_alloc = typename std::allocator_traits<A>::template rebind_alloc<N>;
using base = Alloc<std::byte>;
using value_type = std::pair<const int, mapped_type<base>>;
using map_type =
    bc::map<int, mapped_type<base>, std::less<>, bc::scoped_allocator_adaptor<rebind_alloc<base, value_type>>>;
}  // namespace metall_types

TEST(MetallExamples, Simple) {
  RunMetallExample("metall_simple", "5\n10\n", [](const std::string& dir) {
    pheap::managed_heap manager(open_only, (dir + "dir").c_str());
    auto* v = manager.find<metall_types::vector_t>("vec").first;
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(std::vector<int>(v->begin(), v->end()), std::vector<int>{5}) << "the vector as of the checkpoint";
    EXPECT_TRUE(manager.check_sanity());
  });
}

TEST(MetallExamples, VectorOfVectors) {
  RunMetallExample("metall_vector_of_vectors", "1\n2\n3\n4\n", [](const std::string& dir) {
    pheap::managed_heap manager(open_only, (dir + "datastore").c_str());
    auto* v = manager.find<metall_types::outer_vector_type>("vec-of-vecs").first;
    ASSERT_NE(v, nullptr);
    std::vector<std::vector<int>> rows;
    for (const auto& row : *v) rows.emplace_back(row.begin(), row.end());
    EXPECT_EQ(rows, (std::vector<std::vector<int>>{{1}, {2}, {3, 4}}));
    EXPECT_TRUE(manager.check_sanity());
  });
}

TEST(MetallExamples, ComplexMap) {
  RunMetallExample("metall_complex_map", "0\nhello, world 0\n1\nhello, world 1\n", [](const std::string& dir) {
    pheap::managed_heap manager(open_only, (dir + "datastore").c_str());
    auto* m = manager.find<metall_types::map_type>("map").first;
    ASSERT_NE(m, nullptr);
    ASSERT_EQ(m->size(), 2u);
    for (int k : {0, 1}) {
      EXPECT_EQ(std::vector<int>(m->at(k).vec.begin(), m->at(k).vec.end()), std::vector<int>{k});
      EXPECT_EQ(std::string(m->at(k).str.c_str()), "hello, world " + std::to_string(k));
    }
    EXPECT_TRUE(manager.check_sanity());
  });
}

TEST(MetallExamples, Snapshot) {
  RunMetallExample("metall_snapshot", "0\n1\n2\n", [](const std::string& dir) {
    // One at a time: the copies live at the master's address.
    for (const auto& [heap, value] :
         {std::pair<const char*, int>{"dir_path", 2}, {"snapshot-ver0", 0}, {"snapshot-ver1", 1}}) {
      pheap::managed_heap manager(open_only, (dir + heap).c_str());
      auto* a = manager.find<int>(unique_instance).first;
      ASSERT_NE(a, nullptr) << heap;
      EXPECT_EQ(*a, value) << heap;
    }
  });
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) g_examples[std::filesystem::path(argv[i]).filename().string()] = argv[i];
  return RUN_ALL_TESTS();
}
