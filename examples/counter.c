/* counter: the C interface in a dozen lines. Each run adds one to a counter
 * that lives in the heap and commits it; kill it at any time and the next
 * run continues from the last committed value. */
#include <pheap/pheap.h>

#include <stdint.h>
#include <stdio.h>

int main(void) {
  pheap* h = pheap_open("counter", NULL);
  if (h == NULL) {
    fprintf(stderr, "counter: %s\n", pheap_last_error());
    return 1;
  }
  uint64_t* count = pheap_root(h, "count");
  if (count == NULL) {
    count = pheap_calloc(h, 1, sizeof *count);
    if (count == NULL || pheap_set_root(h, "count", count) != 0) {
      fprintf(stderr, "counter: %s\n", pheap_last_error());
      return 1;
    }
  }
  ++*count;
  int64_t epoch = pheap_commit(h);
  if (epoch < 0) {
    fprintf(stderr, "counter: %s\n", pheap_last_error());
    return 1;
  }
  printf("count = %llu (epoch %lld)\n", (unsigned long long)*count, (long long)epoch);
  return pheap_close(h) == 0 ? 0 : 1;
}
