// Pager::PopulateAll: what fork() needs from the pager.
#include "pager/pager.h"
#include "pager/pager_impl.h"

namespace pheap {

void Pager::PopulateAll() {
  // A read of an absent page below hwm raises a missing fault, which the
  // fault service fills from the PageSource (clean: reading dirties nothing).
  // Resident pages cost one load each. Evicted pages come back too, and
  // none goes again until EndPopulate: an eviction checks the hold inside
  // its pause, which this thread either has not reached or is past.
  impl_->evict_hold_.fetch_add(1, std::memory_order_acq_rel);
  const auto* base = reinterpret_cast<const volatile uint8_t*>(impl_->region_.base());
  const Pgno hwm = impl_->served_hwm();
  for (Pgno p = 0; p < hwm; ++p) (void)base[p * kPageSize];
}

void Pager::EndPopulate() { impl_->evict_hold_.fetch_sub(1, std::memory_order_acq_rel); }

}  // namespace pheap
