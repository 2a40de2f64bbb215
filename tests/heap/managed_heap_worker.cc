// A program written against managed_heap, run by managed_heap_test in its
// own processes:
//   managed_heap_worker write PATH   builds the objects below, commits,
//                                    prints "committed", changes them
//                                    without committing, prints "dirty"
//                                    and waits to be killed.
//   managed_heap_worker check PATH   opens PATH with open_only and exits 0
//                                    if it holds exactly the committed
//                                    objects (else prints why, exits 1).
//   managed_heap_worker read PATH    the same through open_read_only, beside
//                                    the writer, and every change refused.
#include <pheap/containers.hpp>
#include <pheap/managed_heap.hpp>

#include <unistd.h>

#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/containers/map.hpp>
#include <boost/interprocess/containers/string.hpp>
#include <boost/interprocess/containers/vector.hpp>

#include <cstdio>
#include <cstring>
#include <string>

namespace bip = boost::interprocess;
using Segment = pheap::managed_heap;
using IntAlloc = bip::allocator<int, Segment::segment_manager>;
using CharAlloc = bip::allocator<char, Segment::segment_manager>;
using BString = bip::basic_string<char, std::char_traits<char>, CharAlloc>;
using BVector = bip::vector<int, IntAlloc>;
using PairAlloc = bip::allocator<std::pair<const int, BString>, Segment::segment_manager>;
using BMap = bip::map<int, BString, std::less<int>, PairAlloc>;
using Nested = pheap::map<pheap::string, pheap::vector<int>>;

namespace {

int Fail(const std::string& why) {
  std::printf("check failed: %s\n", why.c_str());
  return 1;
}

std::string Text(int i) {
  std::string s = "entry ";
  s += std::to_string(i);
  s += " with text past the small-string buffer";
  return s;
}

int Write(const char* path) {
  Segment seg(bip::create_only, path, 64 << 20);
  auto* v = seg.construct<BVector>("vector")(seg.get_segment_manager());
  for (int i = 0; i < 10000; ++i) v->push_back(i);
  auto* m = seg.construct<BMap>("map")(std::less<int>(), seg.get_segment_manager());
  for (int i = 0; i < 500; ++i) m->emplace(i, BString(Text(i).c_str(), seg.get_segment_manager()));
  double* arr = seg.construct<double>("array")[64](2.5);
  seg.construct<long>(bip::unique_instance)(77L);
  auto* nested = seg.find_or_construct<Nested>("nested")();
  for (int i = 0; i < 100; ++i)
    (*nested)[pheap::string(Text(i % 10).c_str(), pheap::allocator<char>(seg.heap()))].push_back(i);
  seg.commit();
  std::printf("committed\n");
  std::fflush(stdout);
  // Never committed: a SIGKILL must take all of it away.
  for (int i = 0; i < 10000; ++i) (*v)[static_cast<size_t>(i)] = -1;
  v->push_back(99);
  m->clear();
  arr[0] = -1;
  seg.construct<int>("uncommitted")(1);
  seg.destroy<long>(bip::unique_instance);
  (*nested)["extra"].push_back(1);
  std::printf("dirty\n");
  std::fflush(stdout);
  for (;;) pause();
}

// Whether seg holds exactly what Write committed; prints why not.
bool Committed(Segment& seg) {
  auto Fail = [](const std::string& why) { return ::Fail(why) == 0; };
  auto v = seg.find<BVector>("vector");
  if (v.first == nullptr || v.second != 1) return Fail("no vector");
  if (v.first->size() != 10000) return Fail("vector size " + std::to_string(v.first->size()));
  for (int i = 0; i < 10000; ++i)
    if ((*v.first)[static_cast<size_t>(i)] != i) return Fail("vector[" + std::to_string(i) + "]");
  BMap* m = seg.find<BMap>("map").first;
  if (m == nullptr || m->size() != 500) return Fail("map");
  for (int i = 0; i < 500; ++i)
    if (m->at(i) != Text(i).c_str()) return Fail("map[" + std::to_string(i) + "]");
  auto arr = seg.find<double>("array");
  if (arr.first == nullptr || arr.second != 64) return Fail("array");
  for (size_t i = 0; i < 64; ++i)
    if (arr.first[i] != 2.5) return Fail("array[" + std::to_string(i) + "]");
  auto u = seg.find<long>(bip::unique_instance);
  if (u.first == nullptr || *u.first != 77) return Fail("unique");
  if (seg.find<int>("uncommitted").first != nullptr) return Fail("an uncommitted object survived");
  Nested* nested = seg.find<Nested>("nested").first;
  if (nested == nullptr || nested->size() != 10) return Fail("nested");
  if (nested->find("extra") != nested->end()) return Fail("an uncommitted key survived");
  auto it = nested->find(Text(3));
  if (it == nested->end() || it->second.size() != 10 || it->second[9] != 93) return Fail("nested[3]");
  if (seg.get_num_named_objects() != 4 || seg.get_num_unique_objects() != 1) return Fail("object counts");
  return true;
}

int Check(const char* path) {
  Segment seg(bip::open_only, path);
  if (!Committed(seg)) return 1;
  if (!seg.check_sanity()) return Fail("allocator sanity");
  BVector* v = seg.find<BVector>("vector").first;
  BMap* m = seg.find<BMap>("map").first;
  Nested* nested = seg.find<Nested>("nested").first;
  // The containers keep working in this process.
  v->push_back(10000);
  m->emplace(1000, BString("later", seg.get_segment_manager()));
  (*nested)["later"].push_back(1);
  return 0;
}

// Which errno f throws pheap::error with (0: none thrown).
template <typename F>
int Refused(F f) {
  try {
    f();
  } catch (const pheap::error& e) {
    return e.code();
  }
  return 0;
}

int Read(const char* path) {
  Segment seg(bip::open_read_only, path);
  if (!seg.read_only()) return Fail("not read-only");
  if (!Committed(seg)) return 1;
  if (seg.get_size() != size_t{64} << 20) return Fail("get_size " + std::to_string(seg.get_size()));
  std::string names;
  for (auto it = seg.named_begin(); it != seg.named_end(); ++it) names += std::string(it->name()) + " ";
  if (names != "vector map array nested ") return Fail("named index: " + names);
  if (seg.find_or_construct<BVector>("vector")(seg.get_segment_manager()) != seg.find<BVector>("vector").first)
    return Fail("find_or_construct of an existing object");
  const struct {
    const char* what;
    int err;
  } refusals[] = {
      {"construct", Refused([&] { seg.construct<int>("new")(1); })},
      {"find_or_construct", Refused([&] { seg.find_or_construct<int>("new")(1); })},
      {"anonymous construct", Refused([&] { seg.construct<int>(bip::anonymous_instance)(1); })},
      {"destroy", Refused([&] { seg.destroy<long>(bip::unique_instance); })},
      {"destroy_ptr", Refused([&] { seg.destroy_ptr(seg.find<double>("array").first); })},
      {"allocate", Refused([&] { seg.allocate(64); })},
      {"container growth", Refused([&] { seg.find<BVector>("vector").first->reserve(1 << 20); })},
      {"commit", Refused([&] { seg.commit(); })},
  };
  for (const auto& r : refusals)
    if (r.err != EROFS) return Fail(std::string(r.what) + " was not refused with EROFS: " + std::to_string(r.err));
  if (seg.flush()) return Fail("flush succeeded");
  if (seg.find<int>("new").first != nullptr) return Fail("a refused construct left an object");
  return Committed(seg) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  try {
    if (std::strcmp(argv[1], "write") == 0) return Write(argv[2]);
    if (std::strcmp(argv[1], "check") == 0) return Check(argv[2]);
    if (std::strcmp(argv[1], "read") == 0) return Read(argv[2]);
  } catch (const std::exception& e) {
    std::printf("%s\n", e.what());
    return 3;
  }
  return 2;
}
