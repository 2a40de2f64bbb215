// Metall's example/simple.cpp, rewritten for pheap::managed_heap: a vector
// made in one session and extended in the next. (C) LLNS and the Metall
// project developers; Apache-2.0 OR MIT, as Metall.
#include <iostream>

#include <boost/container/vector.hpp>

#include <pheap/managed_heap.hpp>
#include "tests/heap/boost_examples/checkpoint.hpp"  // pheap test

// A Boost.Container vector whose memory comes from the persistent heap.
using vector_t = boost::container::vector<int, pheap::managed_heap::allocator_type<int>>;

int main() {
  {
    // A fresh datastore.
    pheap::managed_heap manager(pheap::create_only, "dir");

    // Made under a name, so that a later run can find it.
    auto pvec = manager.construct<vector_t>("vec")(manager.get_allocator());
    pvec->push_back(5);
    pheap_example_checkpoint(manager);  // pheap test: commit and crash here when asked
  }                                     // closing the manager makes it durable

  // A later run of the program would start here.
  if (pheap::managed_heap::consistent("dir")) {
    pheap::managed_heap manager(pheap::open_only, "dir");

    auto pvec = manager.find<vector_t>("vec").first;  // .first: the object, .second: its count
    pvec->push_back(10);

    std::cout << (*pvec)[0] << std::endl;  // 5
    std::cout << (*pvec)[1] << std::endl;  // 10

    manager.destroy<vector_t>("vec");
  } else {
    std::cerr << "the datastore cannot be opened" << std::endl;
  }
  return 0;
}
