// Applying the oracle model's next operation (oracle_model.h) to the list in
// a heap, through the C interface: shared by the writers of the heap crash
// oracle and of the replication fault tests.
#pragma once

#include <pheap/pheap.h>

#include "tests/heap/oracle_model.h"

namespace pheaptest::oracle {

// Applies operation s->ops + 1. Returns false (nothing changed) when the
// heap cannot allocate.
inline bool ApplyNext(pheap* h, State* s) {
  const uint64_t k = s->ops + 1;
  const Op op = OpFor(s->seed, k, s->count);
  if (op.remove) {
    Node** at = &s->head;
    for (uint64_t i = op.position % s->count; i > 0; --i) at = &(*at)->next;
    Node* gone = *at;
    *at = gone->next;
    s->count--;
    pheap_free(h, gone->payload);
    pheap_free(h, gone);
  } else {
    auto* n = static_cast<Node*>(pheap_malloc(h, sizeof(Node)));
    auto* payload = static_cast<uint8_t*>(pheap_malloc(h, op.size));
    if (n == nullptr || payload == nullptr) {
      pheap_free(h, n);
      pheap_free(h, payload);
      return false;
    }
    for (uint64_t i = 0; i < op.size; ++i) payload[i] = PayloadByte(k, i);
    *n = Node{nullptr, k, op.size, payload};
    Node** at = &s->head;
    while (*at != nullptr) at = &(*at)->next;
    *at = n;
    s->count++;
  }
  if (s->ballast != nullptr) {
    uint64_t* page = s->ballast + (k % s->ballast_pages) * 512;
    page[0] = k;
    page[511] = k;
  }
  s->ops = k;
  return true;
}

}  // namespace pheaptest::oracle
