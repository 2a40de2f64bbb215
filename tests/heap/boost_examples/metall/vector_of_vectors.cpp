// Metall's example/vector_of_vectors.cpp, rewritten for pheap::managed_heap:
// the inner vectors take their allocator from the outer vector's scoped
// allocator adaptor. (C) LLNS and the Metall project developers;
// Apache-2.0 OR MIT, as Metall.
#include <iostream>
#include <vector>

#include <boost/container/scoped_allocator.hpp>
#include <boost/container/vector.hpp>

#include <pheap/managed_heap.hpp>
#include "tests/heap/boost_examples/checkpoint.hpp"  // pheap test

namespace bc = boost::container;

// The rows.
using inner_vector_allocator_type = pheap::managed_heap::allocator_type<int>;
using inner_vector_type = bc::vector<int, inner_vector_allocator_type>;

// The table: only the outermost container names the scoped adaptor; every
// row built inside it is handed the same allocator.
using outer_vector_allocator_type =
    bc::scoped_allocator_adaptor<pheap::managed_heap::allocator_type<inner_vector_type>>;
using outer_vector_type = bc::vector<inner_vector_type, outer_vector_allocator_type>;

int main() {
  {
    pheap::managed_heap manager(pheap::create_only, "datastore");
    auto pvec = manager.construct<outer_vector_type>("vec-of-vecs")(manager.get_allocator<>());

    // A row made by resize, then filled.
    pvec->resize(1);
    (*pvec)[0].push_back(1);

    // A row of one element made in place, then set.
    pvec->emplace_back(1);
    (*pvec)[1][0] = 2;

    // A row copied from a range of ordinary memory.
    std::vector<int> local_row = {3, 4};
    pvec->emplace_back(local_row.begin(), local_row.end());
    pheap_example_checkpoint(manager);  // pheap test: commit and crash here when asked
  }

  {
    pheap::managed_heap manager(pheap::open_only, "datastore");
    auto pvec = manager.find<outer_vector_type>("vec-of-vecs").first;

    std::cout << (*pvec)[0][0] << std::endl;  // 1
    std::cout << (*pvec)[1][0] << std::endl;  // 2
    std::cout << (*pvec)[2][0] << std::endl;  // 3
    std::cout << (*pvec)[2][1] << std::endl;  // 4
  }
  return 0;
}
