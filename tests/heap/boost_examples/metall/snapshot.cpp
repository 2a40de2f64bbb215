// Metall's example/snapshot.cpp, rewritten for pheap::managed_heap: two
// snapshots taken between updates, then each opened read-only. (C) LLNS
// and the Metall project developers; Apache-2.0 OR MIT, as Metall.
#include <iostream>
#include <string>

#include <pheap/managed_heap.hpp>
#include "tests/heap/boost_examples/checkpoint.hpp"  // pheap test

int main() {
  const std::string master_path("dir_path");
  const std::string snapshot_dir_prefix("snapshot-");
  const std::string snapshot_name0 = snapshot_dir_prefix + "ver0";
  const std::string snapshot_name1 = snapshot_dir_prefix + "ver1";

  {
    // The master copy.
    pheap::managed_heap manager(pheap::create_only, master_path.c_str());
    int* a = manager.construct<int>(pheap::unique_instance)(0);

    // Keep the value 0, then move on to 1.
    manager.snapshot(snapshot_name0.c_str());
    *a = 1;

    // Keep the value 1, then move on to 2.
    manager.snapshot(snapshot_name1.c_str());
    *a = 2;
    pheap_example_checkpoint(manager);  // pheap test: commit and crash here when asked
  }

  // Each copy, opened read-only when it is consistent.
  if (pheap::managed_heap::consistent(snapshot_name0.c_str())) {
    pheap::managed_heap manager(pheap::open_read_only, snapshot_name0.c_str());
    int* a = manager.find<int>(pheap::unique_instance).first;
    std::cout << *a << std::endl;  // 0
  } else {
    std::cerr << snapshot_name0 << " is not consistent" << std::endl;
  }

  if (pheap::managed_heap::consistent(snapshot_name1.c_str())) {
    pheap::managed_heap manager(pheap::open_read_only, snapshot_name1.c_str());
    int* a = manager.find<int>(pheap::unique_instance).first;
    std::cout << *a << std::endl;  // 1
  } else {
    std::cerr << snapshot_name1 << " is not consistent" << std::endl;
  }

  if (pheap::managed_heap::consistent(master_path.c_str())) {
    pheap::managed_heap manager(pheap::open_read_only, master_path.c_str());
    int* a = manager.find<int>(pheap::unique_instance).first;
    std::cout << *a << std::endl;  // 2
  } else {
    std::cerr << master_path << " is not consistent" << std::endl;
  }
  return 0;
}
