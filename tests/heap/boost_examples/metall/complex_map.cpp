// Metall's example/complex_map.cpp, rewritten for pheap::managed_heap: a map
// whose values hold a vector and a string, all built on one allocator
// through a scoped adaptor. (C) LLNS and the Metall project developers;
// Apache-2.0 OR MIT, as Metall.
#include <iostream>

#include <boost/container/map.hpp>
#include <boost/container/scoped_allocator.hpp>
#include <boost/container/string.hpp>
#include <boost/container/vector.hpp>

#include <pheap/managed_heap.hpp>
#include "tests/heap/boost_examples/checkpoint.hpp"  // pheap test

namespace bc = boost::container;

// The allocator for another element type.
template <typename allocator_type, typename new_type>
using rebind_alloc = typename std::allocator_traits<allocator_type>::template rebind_alloc<new_type>;

using key_type = int;

// The value: constructible from an allocator, which makes it
// allocator-aware, so the map hands it its own.
template <typename _allocator_type>
struct mapped_type {
  using allocator_type = _allocator_type;

  bc::vector<int, rebind_alloc<_allocator_type, int>> vec;
  bc::basic_string<char, std::char_traits<char>, rebind_alloc<_allocator_type, char>> str;

  explicit mapped_type(const allocator_type& allocator) : vec(allocator), str(allocator) {}
};

template <typename allocator_type>
using value_type = std::pair<const key_type, mapped_type<allocator_type>>;

template <typename base_allocator_type>
using map_allocator_type =
    bc::scoped_allocator_adaptor<rebind_alloc<base_allocator_type, value_type<base_allocator_type>>>;
template <typename base_allocator_type>
using map_type =
    bc::map<key_type, mapped_type<base_allocator_type>, std::less<>, map_allocator_type<base_allocator_type>>;

// The map on the persistent heap's allocator.
using metall_map_type = map_type<pheap::managed_heap::allocator_type<std::byte>>;

int main() {
  {
    pheap::managed_heap manager(pheap::create_only, "datastore");
    auto pmap = manager.construct<metall_map_type>("map")(manager.get_allocator<>());

    (*pmap)[0];  // made with the map's allocator
    pmap->at(0).vec.push_back(0);
    pmap->at(0).str = "hello, world 0";

    pmap->try_emplace(1);
    pmap->at(1).vec.push_back(1);
    pmap->at(1).str = "hello, world 1";
    pheap_example_checkpoint(manager);  // pheap test: commit and crash here when asked
  }

  {
    pheap::managed_heap manager(pheap::open_only, "datastore");
    auto pmap = manager.find<metall_map_type>("map").first;

    std::cout << pmap->at(0).vec[0] << std::endl;  // 0
    std::cout << pmap->at(0).str << std::endl;     // hello, world 0
    std::cout << pmap->at(1).vec[0] << std::endl;  // 1
    std::cout << pmap->at(1).str << std::endl;     // hello, world 1
  }
  return 0;
}
