// pheap::allocator<T>: a standard allocator whose memory lives in a heap, so
// std containers can be stored in the heap and come back after a reopen.
//
//   using Str = std::basic_string<char, std::char_traits<char>, pheap::allocator<char>>;
//   using Map = std::map<Str, Str, std::less<>, pheap::allocator<std::pair<const Str, Str>>>;
//   Map* m = heap.find_or_make<Map>("notes", pheap::allocator<char>(heap));
//
// The allocator keeps the heap's base address, not a process-local handle:
// the base is the same in every process that opens the heap, so an
// allocator stored inside a container in the heap stays valid after a
// restart. Allocation finds the open heap by that address.
//
// Which heap an allocator allocates from:
//   - one made from a Heap, or by allocator::of(p): that heap;
//   - a copy (or rebinding) of another: the same heap as its source;
//   - a default-constructed one: the heap whose region holds the allocator
//     object itself. So a container made inside a heap (a member of an
//     object made by heap.make<T>(), or an element that a scoped
//     container constructs) allocates there with no allocator spelt out,
//     in this process and after a restart;
//   - a default-constructed one outside every heap (on the stack, in static
//     or malloc'd memory) names no heap: it, and a copy of it, take the
//     heap that holds them when they are used (std::basic_string copies a
//     default allocator made on the stack into itself), else the process's
//     only open heap; allocate throws pheap::error when no heap or several
//     are open.
// Any allocator frees a block of any open heap: deallocate goes by the
// block's address. Two allocators compare equal when they name the same
// heap (or both name none).
#ifndef PHEAP_ALLOCATOR_HPP_
#define PHEAP_ALLOCATOR_HPP_

#include <pheap/heap.hpp>

#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>

namespace pheap {

template <typename T>
class allocator {
 public:
  using value_type = T;
  using propagate_on_container_copy_assignment = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;
  using is_always_equal = std::false_type;

  // The heap that holds this allocator object, or none (see above).
  allocator() noexcept : anchor_(heap_anchor(pheap_of(this))) {}
  // The heap that `heap` names. REQUIRES: it stays open while the allocator
  // allocates or frees.
  explicit allocator(const Heap& heap) noexcept : anchor_(heap_anchor(heap.c_handle())) {}
  // The heap that contains p (an object or container in the heap).
  static allocator of(const void* p) noexcept { return allocator(heap_anchor(pheap_of(p))); }
  allocator(const allocator& o) noexcept : anchor_(o.anchor()) {}
  allocator& operator=(const allocator& o) noexcept {
    anchor_ = o.anchor();
    return *this;
  }
  template <typename U>
  allocator(const allocator<U>& o) noexcept : anchor_(o.anchor()) {}  // NOLINT: rebinding

  // Throws std::bad_alloc when the heap is full, pheap::error when it has
  // no open heap to allocate from.
  T* allocate(std::size_t n) {
    const std::uintptr_t a = anchor();
    handle* h = a != 0 ? pheap_of(reinterpret_cast<const void*>(a)) : only_open_heap();
    if (h == nullptr) throw error("pheap::allocator: its heap is not open in this process", ENOENT);
    if (n > SIZE_MAX / sizeof(T)) throw std::bad_array_new_length();
    std::size_t align = alignof(T) < sizeof(void*) ? sizeof(void*) : alignof(T);
    void* p = pheap_aligned_alloc(h, align, n * sizeof(T));
    if (p == nullptr) throw std::bad_alloc();
    if constexpr (std::is_polymorphic_v<T>) pheap_holds_code(h);  // its vtable pointers are code
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept {
    if (p != nullptr) pheap_free(pheap_of(p), p);
  }

  // The base of the heap it names (for one that names none: of the heap
  // that holds it), or 0.
  std::uintptr_t anchor() const noexcept { return anchor_ != 0 ? anchor_ : heap_anchor(pheap_of(this)); }
  template <typename U>
  bool operator==(const allocator<U>& o) const noexcept {
    return anchor() == o.anchor();
  }
  template <typename U>
  bool operator!=(const allocator<U>& o) const noexcept {
    return anchor() != o.anchor();
  }

 private:
  explicit allocator(std::uintptr_t anchor) noexcept : anchor_(anchor) {}
  // The heap of an allocator that names none and is held by none.
  static handle* only_open_heap() {
    handle* open[2] = {nullptr, nullptr};
    const int n = pheap_open_heaps(open, 2);
    if (n == 1) return open[0];
    throw error(n == 0 ? "pheap::allocator: a default-constructed allocator outside any heap allocates from the "
                         "only open heap, and none is open"
                       : "pheap::allocator: a default-constructed allocator outside any heap allocates from the "
                         "only open heap, and several are open: construct it from the heap to use",
                EINVAL);
  }
  static std::uintptr_t heap_anchor(handle* h) noexcept {
    return h == nullptr ? 0 : reinterpret_cast<std::uintptr_t>(pheap_base(h));
  }
  std::uintptr_t anchor_;  // the heap's base; 0: none named (see above)
};

}  // namespace pheap

#endif  // PHEAP_ALLOCATOR_HPP_
