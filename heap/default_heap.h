// The process's default heap: what pheap_default() returns (heap/c_api.cc).
// Only the preload library sets it, to the heap that serves the program's
// malloc; without it pheap_default() is NULL.
#pragma once

namespace pheap {

class PersistentHeap;

// Publishes h (release) as pheap_default(); nullptr withdraws it (a fork
// child, whose copy of the heap never commits). h must stay open while
// published. Any thread.
void SetDefaultHeap(PersistentHeap* h);

}  // namespace pheap
