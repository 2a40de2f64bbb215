// The one line each Boost.Interprocess example gains, at the point where
// it has built its data: in a crash run (PHEAP_EXAMPLE_CRASH set) the
// program commits there and kills itself with SIGKILL, so that
// boost_examples_test can reopen the heap in another process and check
// what it holds. In an ordinary run it does nothing, and the example runs
// as written.
#ifndef PHEAP_TESTS_BOOST_EXAMPLES_CHECKPOINT_HPP_
#define PHEAP_TESTS_BOOST_EXAMPLES_CHECKPOINT_HPP_

#include <csignal>
#include <cstdlib>

template <typename Segment>
void pheap_example_checkpoint(Segment& segment) {
  if (std::getenv("PHEAP_EXAMPLE_CRASH") == nullptr) return;
  segment.commit();
  std::raise(SIGKILL);
}

#endif  // PHEAP_TESTS_BOOST_EXAMPLES_CHECKPOINT_HPP_
