// Pager::PopulateAll: what fork() needs from the pager.
#include "pager/pager.h"
#include "pager/pager_impl.h"

namespace pheap {

void Pager::PopulateAll() {
  // A read of an absent page below hwm raises a missing fault, which the
  // fault service fills from the PageSource (clean: reading dirties nothing).
  // Resident pages cost one load each.
  const auto* base = reinterpret_cast<const volatile uint8_t*>(impl_->region_.base());
  for (Pgno p = 0; p < impl_->image_.hwm; ++p) (void)base[p * kPageSize];
}

}  // namespace pheap
