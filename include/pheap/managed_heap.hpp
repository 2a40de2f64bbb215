// pheap::managed_heap: a heap with the interface of Boost.Interprocess's
// managed_mapped_file, so a program written against it switches by changing
// one type and one include:
//
//   namespace bip = boost::interprocess;
//   pheap::managed_heap seg(bip::open_or_create, "/var/lib/app/books", 64 << 20);
//   using Alloc = bip::allocator<int, pheap::managed_heap::segment_manager>;
//   auto* v = seg.find_or_construct<bip::vector<int, Alloc>>("v")(seg.get_segment_manager());
//   v->push_back(42);
//   seg.commit();                         // durable now; kill -9 after this loses nothing
//
// What differs from managed_mapped_file, and why:
//   - The path names a heap, not a file: its directory is the store
//     directory (config dir=) and its last part the heap name, so
//     "/var/lib/app/books" is heap `books` in /var/lib/app. A path without
//     a directory names a heap in the configured dir (PHEAP_DIR, else
//     ./.pheap). The size is the region's (config size=), raised to
//     min_size; an existing heap smaller than it grows. The optional last
//     argument is a pheap config string (pheap_open), and PHEAP_*
//     variables apply as they do everywhere.
//   - Objects are durable at commit() (or flush(), which commits), not
//     whenever the OS writes pages back; a crash returns the heap to the
//     last commit as a whole. Closing commits, except while an exception
//     unwinds the managed_heap (see pheap::Heap).
//   - Pointers are raw: the region sits at the same address in every
//     process, so the segment manager's void_pointer is void* and objects
//     hold ordinary pointers (offset_ptr is not needed, and std containers
//     work too: containers.hpp).
//   - One process opens a heap at a time (a second open fails naming the
//     holder). What exists only for several writers sharing a file does not
//     compile: open_copy_on_write, shrink_to_fit(), node allocators and
//     pools that keep process-shared mutexes in the segment. grow() and
//     remove() work on a heap no process has open, as Boost's do on a file.
//   - open_read_only opens the heap beside its writer, which may keep
//     running (pheap::Heap::open_read_only): it shows the last durable
//     epoch, and heap().refresh() moves it to the newest. find, the
//     indexes, get_size and the objects read as usual; construct, destroy,
//     allocate, deallocate and commit throw pheap::error (EROFS), and a
//     write into an object is a SIGSEGV, as with Boost's read-only
//     mapping. get_free_memory returns 0 and check_sanity false there:
//     only the writer walks the allocator's metadata.
//   - Named objects are the heap's roots (pheap::Heap::root sees a single
//     one), and each records its type: find<T> of an object made as
//     another type throws pheap::error naming both, where Boost would hand
//     out the pointer. Names are 1..127 bytes; names starting "pheap." are
//     reserved. A heap holds at most ~900 named and unique objects.
//   - Not provided, so code using them does not compile: construct_it,
//     get_instance_name/length/type (a named object is a plain root, with
//     no header to read them from), deleters and the smart pointers built
//     on them, the index reservation functions, zero_free_memory.
//   - For programs written against LLNL Metall's manager, which copies
//     this interface: allocator_type<T>, scoped_allocator_type<T>,
//     get_allocator<>() (of std::byte), consistent() and snapshot() are
//     Metall's, and pheap::create_only, open_only, open_read_only,
//     unique_instance ... name Boost's tags, so such a program switches by
//     changing metall:: to pheap:: and metall::manager to
//     pheap::managed_heap. A heap is consistent as of its last commit
//     whatever stopped its writer, and a snapshot commits, then copies the
//     durable epoch from the store (pheap::Heap::snapshot).
//   - Errors: out of memory throws boost::interprocess::bad_alloc and a
//     construct() of an existing name interprocess_exception
//     (already_exists_error), as Boost does; everything else pheap::error.
//
// Thread safety: the allocation functions from any thread; the named-object
// functions from any thread too, serialised by a process-local recursive
// mutex (atomic_func runs under it), so find_or_construct makes an object
// once.
#ifndef PHEAP_MANAGED_HEAP_HPP_
#define PHEAP_MANAGED_HEAP_HPP_

#include <pheap/heap.hpp>

#include <boost/container/scoped_allocator.hpp>
#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/containers/allocation_type.hpp>
#include <boost/interprocess/creation_tags.hpp>
#include <boost/interprocess/detail/segment_manager_helper.hpp>
#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/mem_algo/detail/mem_algo_common.hpp>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

namespace pheap {

class managed_heap;

// The memory source of boost::interprocess::allocator<T, segment_manager>
// and of the Boost.Interprocess containers built on it. It lives inside
// its heap, at the same address in every process (Boost's allocator keeps
// a pointer to it inside containers that live in the heap), and holds no
// process-local state: it finds its open heap by its own address.
// REQUIRES (every member): the heap is open in this process.
class segment_manager {
 public:
  using void_pointer = void*;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using char_type = char;
  using multiallocation_chain = boost::interprocess::ipcdetail::basic_multiallocation_chain<void*>;

  segment_manager(const segment_manager&) = delete;
  segment_manager& operator=(const segment_manager&) = delete;

  // n bytes, aligned as pheap_malloc aligns them (to 8, and to 16 when n is
  // a multiple of 16: enough for an array of any type of alignment <= 16). Throws
  // boost::interprocess::bad_alloc when the heap is full; the nothrow form
  // returns nullptr.
  void* allocate(size_type n) { return or_throw(allocate(n, std::nothrow)); }
  void* allocate(size_type n, const std::nothrow_t&) noexcept { return pheap_malloc(heap(), n); }
  // REQUIRES: align is a power of two.
  void* allocate_aligned(size_type n, size_type align) { return or_throw(allocate_aligned(n, align, std::nothrow)); }
  void* allocate_aligned(size_type n, size_type align, const std::nothrow_t&) noexcept {
    return pheap_aligned_alloc(heap(), align < sizeof(void*) ? sizeof(void*) : align, n);
  }
  // REQUIRES: p is null or came from this heap.
  void deallocate(void* p) noexcept { pheap_free(heap(), p); }
  // The bytes usable at p (at least those asked for).
  size_type size(const void* p) const noexcept { return pheap_usable_size(heap(), p); }

  // Boost's multi-allocation: n blocks of elem_bytes each (or of
  // elem_sizes[i] * sizeof_element), appended to chain. All or none: on
  // failure the chain is as it was and bad_alloc is thrown.
  void allocate_many(size_type elem_bytes, size_type n, multiallocation_chain& chain) {
    allocate_many_impl(n, chain, [&](size_type) { return elem_bytes; });
  }
  void allocate_many(const size_type* elem_sizes, size_type n, size_type sizeof_element, multiallocation_chain& chain) {
    allocate_many_impl(n, chain, [&](size_type i) { return elem_sizes[i] * sizeof_element; });
  }
  void deallocate_many(multiallocation_chain& chain) noexcept {
    while (!chain.empty()) deallocate(chain.pop_front());
  }

  // Boost's allocation command, in objects of sizeof(T). expand_fwd
  // succeeds when `reuse` already has room for at least limit_size objects
  // (pheap grows no block in place); expand_bwd and the shrinks never
  // do; allocate_new allocates prefer_in_recvd_out_size objects, or at
  // least limit_size. On success prefer_in_recvd_out_size is set to what
  // the block holds, and reuse to null when a new block was allocated.
  // Without nothrow_allocation a failure throws bad_alloc (pheap::error,
  // EROFS, in a heap open read-only).
  template <typename T>
  T* allocation_command(boost::interprocess::allocation_type command, size_type limit_size,
                        size_type& prefer_in_recvd_out_size, T*& reuse) {
    void* raw = reuse;
    void* r = raw_allocation_command(command, limit_size, prefer_in_recvd_out_size, raw, sizeof(T), alignof(T));
    reuse = static_cast<T*>(raw);
    return static_cast<T*>(r);
  }
  void* raw_allocation_command(boost::interprocess::allocation_type command, size_type limit_objects,
                               size_type& prefer_in_recvd_out_objects, void*& reuse, size_type sizeof_object = 1,
                               size_type align = 1) {
    namespace bip = boost::interprocess;
    void* r = nullptr;
    const size_type want = prefer_in_recvd_out_objects < limit_objects ? limit_objects : prefer_in_recvd_out_objects;
    const bool shrink = (command & (bip::shrink_in_place | bip::try_shrink_in_place)) != 0;
    if (sizeof_object != 0 && want <= SIZE_MAX / sizeof_object && !shrink) {
      const size_type has = reuse != nullptr && (command & bip::expand_fwd) ? size(reuse) / sizeof_object : 0;
      if (has >= want) r = reuse;
      for (size_type objects : {want, limit_objects}) {
        if (r != nullptr || !(command & bip::allocate_new)) break;
        if ((r = allocate_aligned(objects * sizeof_object, align, std::nothrow)) != nullptr) {
          if (command & bip::zero_memory) std::memset(r, 0, size(r));
          reuse = nullptr;
        }
      }
      if (r == nullptr && has >= limit_objects && has != 0) r = reuse;
      if (r != nullptr) prefer_in_recvd_out_objects = size(r) / sizeof_object;
    }
    if (r == nullptr && !(command & bip::nothrow_allocation)) or_throw(r);
    return r;
  }

  // The region's size in bytes.
  size_type get_size() const noexcept { return pheap_size(heap()); }
  // The bytes blocks could still hold (fragmentation aside); walks the
  // allocator's metadata. 0 in a heap open read-only.
  size_type get_free_memory() const noexcept {
    const pheap_space s = space();
    return static_cast<size_type>(s.capacity > s.live ? s.capacity - s.live : 0);
  }
  // Validates the allocator's metadata. REQUIRES: no other thread
  // allocates or frees meanwhile.
  bool check_sanity() noexcept { return pheap_check_allocator(heap()) == 0; }
  bool belongs_to_segment(const void* p) const noexcept { return pheap_of(p) == heap(); }

 private:
  friend class managed_heap;
  static constexpr std::uint64_t kMagic = 0x31474d5350454850ull;  // "PHEPSMG1"
  segment_manager() noexcept = default;

  handle* heap() const noexcept { return pheap_of(this); }
  pheap_space space() const noexcept {
    pheap_space s{};
    (void)pheap_get_space(heap(), &s);
    return s;
  }
  // A failed allocation: a read-only heap's refusal (EROFS) is no lack of
  // memory.
  static void* or_throw(void* p) {
    if (p == nullptr && errno == EROFS) detail::throw_last("allocating");
    if (p == nullptr) throw boost::interprocess::bad_alloc();
    return p;
  }
  template <typename Bytes>
  void allocate_many_impl(size_type n, multiallocation_chain& chain, Bytes bytes) {
    multiallocation_chain made;
    for (size_type i = 0; i < n; ++i) {
      const size_type b = bytes(i);
      void* p = allocate(b < sizeof(void*) ? sizeof(void*) : b, std::nothrow);  // the chain links through it
      if (p == nullptr) {
        deallocate_many(made);
        throw boost::interprocess::bad_alloc();
      }
      made.push_back(p);
    }
    while (!made.empty()) chain.push_back(made.pop_front());
  }

  std::uint64_t magic_ = kMagic;
};

namespace detail {

// Named, unique and anonymous objects. A single named or unique object is
// a root pointing at the object, typed type_tag<T>() as Heap's roots are.
// An array, and every anonymous object, has a header before its first
// element: the block starts with `pad` (so an array root, which points at
// the block, leads to its elements) and the 16 bytes before the first
// element hold pad, a magic number and the element count. An array root's
// type is array_tag<T>(): Itanium's mangling of "array of unknown bound of
// T" ("A_" + T's), which demangles as "T []" in messages.
struct array_header {
  std::uint32_t pad;  // bytes from the block to the first element
  std::uint32_t magic;
  std::uint64_t count;
};
static_assert(sizeof(array_header) == 16);
inline constexpr std::uint32_t kArrayMagic = 0x59415250;  // "PRAY"
inline constexpr std::string_view kReservedPrefix = "pheap.";
inline constexpr std::string_view kUniquePrefix = "pheap.unique.";
inline constexpr const char* kSegmentManagerRoot = "pheap.segment_manager";

template <typename T>
constexpr std::size_t array_pad() {
  return alignof(T) > sizeof(array_header) ? alignof(T) : sizeof(array_header);
}
template <typename T>
std::string array_tag() {
  std::string tag = "A_";
  tag += type_tag<T>();
  return tag;
}
inline bool is_array_tag(std::string_view type) { return type.substr(0, 2) == "A_"; }
inline array_header* header_of(void* first) { return static_cast<array_header*>(first) - 1; }
// The first element of the array whose block `block` starts.
inline void* elements_of(void* block) {
  std::uint32_t pad = 0;
  std::memcpy(&pad, block, sizeof(pad));
  return static_cast<char*>(block) + pad;
}

// The root name of T's unique instance: Boost names it by typeid; past the
// root name limit, the name's first bytes and a hash of the whole.
template <typename T>
std::string unique_root() {
  std::string name(kUniquePrefix);
  const std::string_view type = typeid(T).name();
  constexpr std::size_t kMax = 127;
  if (name.size() + type.size() <= kMax) return name += type;
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char c : type) h = (h ^ c) * 0x100000001b3ull;
  char hex[18];
  std::snprintf(hex, sizeof(hex), "#%016llx", static_cast<unsigned long long>(h));
  name += type.substr(0, kMax - name.size() - 17);
  return name += hex;
}

enum class instance_kind { named, unique, anonymous };

}  // namespace detail

class managed_heap {
 public:
  using segment_manager = pheap::segment_manager;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using char_type = char;
  using handle_t = difference_type;  // an offset from the region's base
  template <typename T>
  struct allocator {
    using type = boost::interprocess::allocator<T, segment_manager>;
  };
  // Metall's names for the same allocator, and for it in a scoped adaptor
  // (nested containers take their allocator from the outer one).
  template <typename T>
  using allocator_type = boost::interprocess::allocator<T, segment_manager>;
  template <typename T>
  using scoped_allocator_type = boost::container::scoped_allocator_adaptor<allocator_type<T>>;

  // The least region a pheap heap holds (its superblock, the allocator's
  // header and one 4 MiB segment): smaller sizes are raised to it.
  static constexpr size_type min_size = size_type{16} << 20;

  // An object with no heap, for a move to assign to later.
  managed_heap() noexcept = default;
  // Creates heap `path`; throws pheap::error (errno EEXIST) if it exists.
  managed_heap(boost::interprocess::create_only_t, const char* path, size_type size, const char* config = nullptr)
      : managed_heap(path, "only", size, config) {}
  // Opens heap `path`, creating it if it does not exist.
  managed_heap(boost::interprocess::open_or_create_t, const char* path, size_type size, const char* config = nullptr)
      : managed_heap(path, "1", size, config) {}
  // Metall's forms, without a size: the region is config size= (else the
  // default, 16 GiB of address space, reserved, not used).
  managed_heap(boost::interprocess::create_only_t, const char* path, const char* config = nullptr)
      : managed_heap(path, "only", 0, config) {}
  managed_heap(boost::interprocess::open_or_create_t, const char* path, const char* config = nullptr)
      : managed_heap(path, "1", 0, config) {}
  // Opens heap `path`; throws pheap::error (errno ENOENT) if it does not exist.
  managed_heap(boost::interprocess::open_only_t, const char* path, const char* config = nullptr)
      : managed_heap(path, "0", 0, config) {}
  // Opens heap `path` read-only beside its writer (see the top of this
  // file): its last durable epoch. Throws pheap::error (ENOENT: no such
  // heap, or none durable yet).
  managed_heap(boost::interprocess::open_read_only_t, const char* path, const char* config = nullptr) {
    const auto [name, cfg] = heap_config(path, config, 0, nullptr);
    s_ = std::make_unique<open_state>(Heap::open_read_only(name, cfg), true, path);
    attach_segment_manager(path);
  }
  // A private writable mapping whose writes never reach the file has no
  // honest pheap equivalent.
  managed_heap(boost::interprocess::open_copy_on_write_t, const char*, const char* = nullptr) = delete;

  managed_heap(const managed_heap&) = delete;
  managed_heap& operator=(const managed_heap&) = delete;
  managed_heap(managed_heap&&) noexcept = default;
  managed_heap& operator=(managed_heap&& o) noexcept {
    managed_heap gone(std::move(*this));
    swap(o);
    return *this;
  }
  void swap(managed_heap& o) noexcept { s_.swap(o.s_); }
  // Closes the heap: commits, unless an exception unwinds it (pheap::Heap).
  ~managed_heap() = default;

  // As Boost's, for a heap that no process has open: grows heap `path` by
  // at least extra_bytes (to whole 4 MiB allocator segments), so objects
  // stay where they are. False if it does not exist, is open, or cannot
  // grow (its address range is taken).
  static bool grow(const char* path, size_type extra_bytes, const char* config = nullptr) noexcept {
    try {
      size_type size = 0;
      {
        managed_heap h(boost::interprocess::open_only, path, config);
        size = h.get_size();
      }
      constexpr size_type kSegment = size_type{4} << 20;
      if (extra_bytes > SIZE_MAX - size - kSegment) return false;
      managed_heap h(path, "0", (size + extra_bytes + kSegment - 1) / kSegment * kSegment, config);
      return h.get_size() >= size + extra_bytes;
    } catch (...) {
      return false;
    }
  }
  // A heap's region never shrinks: pointers into it must stay valid.
  static bool shrink_to_fit(const char*) = delete;
  // Boost's file_mapping::remove and shared_memory_object::remove for a
  // heap: removes heap `path` (pheap_remove). False if it does not exist
  // or a process (this one included) has it open.
  static bool remove(const char* path, const char* config = nullptr) noexcept {
    try {
      const auto [name, cfg] = heap_config(path, config, 0, nullptr);
      return pheap_remove(name.c_str(), cfg.c_str()) == 0;
    } catch (...) {
      return false;
    }
  }

  // Metall's: whether heap `path` can be opened as it was last committed.
  // A pheap heap is consistent at every durable epoch, whatever stopped
  // its writer, so this says whether it exists with a durable epoch (and
  // is not open in this process); it opens it read-only to see, reading
  // its image.
  static bool consistent(const char* path, const char* config = nullptr) noexcept {
    try {
      managed_heap h(boost::interprocess::open_read_only, path, config);
      return true;
    } catch (...) {
      return false;
    }
  }
  // Metall's: commits, then makes heap `dest_path` (a path as the
  // constructors take it; without a directory, beside this heap) a new
  // heap holding that epoch, read from the store while this process runs
  // on (pheap::Heap::snapshot). False if either step fails. The copy lives
  // at this heap's address: open it once this one is closed, or in
  // another process.
  bool snapshot(const char* dest_path) noexcept {
    try {
      if (!read_only()) commit();
      std::string_view p = dest_path != nullptr ? dest_path : "";
      const size_t slash = p.rfind('/');
      std::string cfg;
      if (slash != std::string_view::npos) {
        cfg = "dir=";
        cfg += slash == 0 ? std::string_view("/") : p.substr(0, slash);
      }
      state().heap.snapshot(std::string(slash == std::string_view::npos ? p : p.substr(slash + 1)), cfg);
      return true;
    } catch (...) {
      return false;
    }
  }

  // ---- pheap's own ----
  // A point-in-time image; returns its epoch once durable. Throws pheap::error.
  int64_t commit() { return state().heap.commit(); }
  pending_commit commit_async() { return state().heap.commit_async(); }
  int64_t durable_epoch() const noexcept { return s_ ? s_->heap.durable_epoch() : 0; }
  // Boost's flush: commits; false (never a throw) if the commit fails.
  bool flush() noexcept {
    try {
      commit();
      return true;
    } catch (...) {
      return false;
    }
  }
  // The heap beneath, for pheap's own interface.
  Heap& heap() { return state().heap; }
  // Opened with open_read_only.
  bool read_only() const noexcept { return s_ && s_->read_only; }

  // ---- memory ----
  void* allocate(size_type n) { return sm().allocate(n); }
  void* allocate(size_type n, const std::nothrow_t& nt) noexcept { return sm().allocate(n, nt); }
  void* allocate_aligned(size_type n, size_type align) { return sm().allocate_aligned(n, align); }
  void* allocate_aligned(size_type n, size_type align, const std::nothrow_t& nt) noexcept {
    return sm().allocate_aligned(n, align, nt);
  }
  void deallocate(void* p) noexcept { sm().deallocate(p); }
  size_type get_size() const noexcept { return s_ ? pheap_size(s_->heap.c_handle()) : 0; }
  size_type get_free_memory() const noexcept { return s_ && s_->sm ? s_->sm->get_free_memory() : 0; }
  bool check_sanity() noexcept { return s_ && s_->sm && s_->sm->check_sanity(); }
  void* get_address() const noexcept { return pheap_base(s_->heap.c_handle()); }
  bool belongs_to_segment(const void* p) const noexcept { return sm().belongs_to_segment(p); }
  handle_t get_handle_from_address(const void* p) const noexcept {
    return static_cast<const char*>(p) - static_cast<const char*>(get_address());
  }
  void* get_address_from_handle(handle_t h) const noexcept { return static_cast<char*>(get_address()) + h; }
  segment_manager* get_segment_manager() const noexcept { return s_ ? s_->sm : nullptr; }
  template <typename T = std::byte>
  typename allocator<T>::type get_allocator() const {
    return typename allocator<T>::type(&sm());
  }

  // ---- named, unique and anonymous objects ----
  // construct<T>(name)(args...) makes one T; construct<T>(name)[n](args...)
  // an array of n, each element made from the same args (as lvalues).
  template <typename T>
  class construct_proxy {
   public:
    template <typename... Args>
    T* operator()(Args&&... args) const {
      return mh_->generic_construct<T>(kind_, name_, num_, array_, find_, throws_, std::forward<Args>(args)...);
    }
    const construct_proxy& operator[](size_type n) const {
      num_ *= n;
      array_ = true;
      return *this;
    }

   private:
    friend class managed_heap;
    construct_proxy(managed_heap* mh, detail::instance_kind kind, const char* name, bool find, bool throws)
        : mh_(mh), kind_(kind), name_(name), find_(find), throws_(throws) {}
    managed_heap* mh_;
    detail::instance_kind kind_;
    const char* name_;
    mutable size_type num_ = 1;
    mutable bool array_ = false;
    bool find_, throws_;
  };

  using unique_instance_t = boost::interprocess::ipcdetail::unique_instance_t;
  using anonymous_instance_t = boost::interprocess::ipcdetail::anonymous_instance_t;

  // A new object; an existing name throws interprocess_exception
  // (already_exists_error), or returns nullptr in the nothrow form.
  template <typename T>
  construct_proxy<T> construct(const char* name) {
    return {this, detail::instance_kind::named, name, false, true};
  }
  template <typename T>
  construct_proxy<T> construct(const char* name, const std::nothrow_t&) {
    return {this, detail::instance_kind::named, name, false, false};
  }
  template <typename T>
  construct_proxy<T> construct(const unique_instance_t*) {
    return {this, detail::instance_kind::unique, nullptr, false, true};
  }
  template <typename T>
  construct_proxy<T> construct(const anonymous_instance_t*) {
    return {this, detail::instance_kind::anonymous, nullptr, false, true};
  }
  // The existing object, or a new one made from the args.
  template <typename T>
  construct_proxy<T> find_or_construct(const char* name) {
    return {this, detail::instance_kind::named, name, true, true};
  }
  template <typename T>
  construct_proxy<T> find_or_construct(const char* name, const std::nothrow_t&) {
    return {this, detail::instance_kind::named, name, true, false};
  }
  template <typename T>
  construct_proxy<T> find_or_construct(const unique_instance_t*) {
    return {this, detail::instance_kind::unique, nullptr, true, true};
  }

  // The object and its element count (1 for a single object), or
  // {nullptr, 0}. Throws pheap::error if it was made as another type.
  template <typename T>
  std::pair<T*, size_type> find(const char* name) {
    std::lock_guard<std::recursive_mutex> l(state().mu);
    return find_root<T>(named_root(name));
  }
  template <typename T>
  std::pair<T*, size_type> find(const unique_instance_t*) {
    std::lock_guard<std::recursive_mutex> l(state().mu);
    return find_root<T>(detail::unique_root<T>());
  }
  // Destroys the object (each element of an array) and frees it; false if
  // there is none. Throws pheap::error if it was made as another type.
  template <typename T>
  bool destroy(const char* name) {
    std::lock_guard<std::recursive_mutex> l(state().mu);
    return destroy_root<T>(named_root(name));
  }
  template <typename T>
  bool destroy(const unique_instance_t*) {
    std::lock_guard<std::recursive_mutex> l(state().mu);
    return destroy_root<T>(detail::unique_root<T>());
  }
  // Destroys a named, unique or anonymous object made by this heap, given
  // its address. Finding a named one walks the roots. Throws pheap::error
  // if p is none of those.
  template <typename T>
  void destroy_ptr(const T* cp) {
    T* p = const_cast<T*>(cp);
    if (p == nullptr) return;
    std::lock_guard<std::recursive_mutex> l(state().mu);
    writable("destroy_ptr");
    void* block = static_cast<char*>(static_cast<void*>(p)) - detail::array_pad<T>();
    for (const Heap::root_info& r : state().heap.roots()) {
      if (r.address != p && r.address != block) continue;
      if (r.name.compare(0, detail::kUniquePrefix.size(), detail::kUniquePrefix) != 0 &&
          r.name.compare(0, detail::kReservedPrefix.size(), detail::kReservedPrefix) == 0)
        continue;
      if (find_root<T>(r.name).first == p) {
        destroy_root<T>(r.name);
        return;
      }
    }
    detail::array_header* h = detail::header_of(p);
    if (!belongs_to_segment(block) || h->magic != detail::kArrayMagic || h->pad != detail::array_pad<T>())
      throw error("managed_heap::destroy_ptr: the pointer is not an object this heap constructed", EINVAL);
    destroy_elements(p, h->count);
    deallocate(block);
  }

  size_type get_num_named_objects() { return count_roots(false); }
  size_type get_num_unique_objects() { return count_roots(true); }

  // An entry of the named or unique index: name() and value(), the object
  // (an array's first element). Iterators walk a copy of the index taken
  // by named_begin()/unique_begin(); any two end iterators compare equal.
  class index_entry {
   public:
    const char_type* name() const noexcept { return name_.c_str(); }
    size_type name_length() const noexcept { return name_.size(); }
    const void* value() const noexcept { return value_; }

   private:
    friend class managed_heap;
    std::string name_;
    const void* value_ = nullptr;
  };
  class const_index_iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = index_entry;
    using difference_type = std::ptrdiff_t;
    using pointer = const index_entry*;
    using reference = const index_entry&;
    const_index_iterator() = default;
    reference operator*() const { return (*entries_)[i_]; }
    pointer operator->() const { return &(*entries_)[i_]; }
    const_index_iterator& operator++() {
      ++i_;
      return *this;
    }
    const_index_iterator operator++(int) {
      const_index_iterator old = *this;
      ++i_;
      return old;
    }
    bool operator==(const const_index_iterator& o) const {
      if (at_end() || o.at_end()) return at_end() && o.at_end();
      return entries_ == o.entries_ && i_ == o.i_;
    }

   private:
    friend class managed_heap;
    const_index_iterator(std::shared_ptr<const std::vector<index_entry>> e, std::size_t i)
        : entries_(std::move(e)), i_(i) {}
    bool at_end() const { return entries_ == nullptr || i_ >= entries_->size(); }
    std::shared_ptr<const std::vector<index_entry>> entries_;
    std::size_t i_ = 0;
  };
  using const_named_iterator = const_index_iterator;
  using const_unique_iterator = const_index_iterator;
  const_named_iterator named_begin() const { return const_index_iterator(index(false), 0); }
  const_named_iterator named_end() const { return const_index_iterator(); }
  const_unique_iterator unique_begin() const { return const_index_iterator(index(true), 0); }
  const_unique_iterator unique_end() const { return const_index_iterator(); }

  // Runs f() with the named-object functions of this process held off.
  template <typename Func>
  void atomic_func(Func& f) {
    std::lock_guard<std::recursive_mutex> l(state().mu);
    f();
  }
  template <typename Func>
  bool try_atomic_func(Func& f) {
    std::unique_lock<std::recursive_mutex> l(state().mu, std::try_to_lock);
    if (!l.owns_lock()) return false;
    f();
    return true;
  }

 private:
  struct open_state {
    open_state(Heap h, bool ro, const char* p) : heap(std::move(h)), read_only(ro), path(p) {}
    Heap heap;
    const bool read_only;
    const std::string path;
    std::recursive_mutex mu;
    segment_manager* sm = nullptr;  // null: a read-only heap that holds none
  };

  // Heap `path`'s name, and the config that opens it: `config`, the path's
  // directory as dir=, then size= (unless 0) and create=.
  static std::pair<std::string, std::string> heap_config(const char* path, const char* config, size_type size,
                                                         const char* create) {
    std::string_view p = path != nullptr ? path : "";
    const size_t slash = p.rfind('/');
    std::string name(slash == std::string_view::npos ? p : p.substr(slash + 1));
    std::string what = "managed heap '";
    what += p;
    what += "'";
    if (name.empty()) throw error(what + ": the path names no heap (it is empty or ends in '/')", EINVAL);
    if (p.find(';') != std::string_view::npos)
      throw error(what + ": a path with ';' cannot be given as dir= in a config string", EINVAL);
    std::string cfg = config != nullptr ? config : "";
    if (slash != std::string_view::npos) {
      cfg += ";dir=";
      cfg += slash == 0 ? std::string_view("/") : p.substr(0, slash);
    }
    if (size != 0) {
      cfg += ";size=";
      cfg += std::to_string(size < min_size ? min_size : size);
    }
    if (create != nullptr) {
      cfg += ";create=";
      cfg += create;
    }
    return {std::move(name), std::move(cfg)};
  }

  managed_heap(const char* path, const char* create, size_type size, const char* config) {
    const auto [name, cfg] = heap_config(path, config, size, create);
    s_ = std::make_unique<open_state>(Heap(name, cfg), false, path);
    attach_segment_manager(path);
  }

  // Finds the heap's segment manager, or (writable) makes it.
  void attach_segment_manager(const char* path) {
    std::string what = "opening managed heap '";
    what += path;
    what += "'";
    s_->sm = s_->heap.root<segment_manager>(detail::kSegmentManagerRoot);
    if (s_->sm == nullptr && !s_->read_only) {
      void* m = s_->heap.malloc(sizeof(segment_manager));
      if (m == nullptr) throw boost::interprocess::bad_alloc();
      s_->sm = ::new (m) segment_manager();
      try {
        s_->heap.set_root(detail::kSegmentManagerRoot, s_->sm);
      } catch (...) {
        s_->heap.free(m);
        throw;
      }
    } else if (s_->sm != nullptr && s_->sm->magic_ != segment_manager::kMagic) {
      throw error(what + ": its segment manager root holds something else", EINVAL);
    }
  }

  open_state& state() const {
    if (!s_) throw error("managed_heap: no heap is open in this object", EINVAL);
    return *s_;
  }
  segment_manager& sm() const {
    open_state& s = state();
    if (s.sm == nullptr)
      throw error(
          "managed_heap: the heap holds no segment manager: it was not made by a managed_heap, and it is "
          "open read-only",
          EROFS);
    return *s.sm;
  }
  // Refuses a change to a heap open read-only, naming it.
  void writable(const char* what) const {
    if (!state().read_only) return;
    std::string msg = "managed heap '";
    msg += state().path;
    msg += "' is open read-only: ";
    msg += what;
    msg += " needs a writable open (open_only, open_or_create)";
    throw error(msg, EROFS);
  }

  static std::string named_root(const char* name) {
    if (name == nullptr ||
        std::string_view(name).substr(0, detail::kReservedPrefix.size()) == detail::kReservedPrefix) {
      std::string what = "managed_heap: the name '";
      what += name != nullptr ? name : "(null)";
      what += "' is null or reserved (names starting \"pheap.\" are pheap's)";
      throw error(what, EINVAL);
    }
    return name;
  }
  // The object under `root` and its element count, whether it was made
  // as one object or as an array; *block: where its block starts.
  template <typename T>
  std::pair<T*, size_type> find_root(const std::string& root, void** block = nullptr) {
    handle* h = state().heap.c_handle();
    void* p = pheap_root_typed(h, root.c_str(), detail::type_tag<T>().c_str());
    if (block != nullptr) *block = p;
    if (p != nullptr) return {static_cast<T*>(p), 1};
    if (errno == ENOENT) return {nullptr, 0};
    const std::string single_error = pheap_last_error();
    p = pheap_root_typed(h, root.c_str(), detail::array_tag<T>().c_str());
    if (p == nullptr) throw error(single_error, EINVAL);
    if (block != nullptr) *block = p;
    void* first = detail::elements_of(p);
    return {static_cast<T*>(first), static_cast<size_type>(detail::header_of(first)->count)};
  }

  // The root's block (the object, or an array's header) and elements.
  template <typename T>
  bool destroy_root(const std::string& root) {
    writable("destroy");
    void* block = nullptr;
    auto [p, n] = find_root<T>(root, &block);
    if (p == nullptr) return false;
    if (pheap_set_root(state().heap.c_handle(), root.c_str(), nullptr) != 0) detail::throw_last("clearing a root");
    destroy_elements(p, n);  // after the root is cleared: no image names a destroyed object
    deallocate(block);
    return true;
  }

  template <typename T>
  static void destroy_elements(T* p, size_type n) noexcept {
    if constexpr (!std::is_trivially_destructible_v<T>)
      for (size_type i = n; i > 0; --i) p[i - 1].~T();
  }

  template <typename T, typename... Args>
  T* generic_construct(detail::instance_kind kind, const char* name, size_type num, bool array, bool find, bool throws,
                       Args&&... args) {
    std::lock_guard<std::recursive_mutex> l(state().mu);
    std::string root;
    if (!find) writable("construct");
    if (kind == detail::instance_kind::named) root = named_root(name);
    if (kind == detail::instance_kind::unique) root = detail::unique_root<T>();
    if (kind != detail::instance_kind::anonymous) {
      if (T* found = find_root<T>(root).first) {
        if (find) return found;
        if (!throws) return nullptr;
        throw boost::interprocess::interprocess_exception(
            boost::interprocess::error_info(boost::interprocess::already_exists_error));
      }
    }
    writable("find_or_construct of a missing object");
    if (kind == detail::instance_kind::anonymous) array = true;  // destroy_ptr reads its header
    T* p = array ? make_array<T>(num, throws, args...) : make_one<T>(throws, std::forward<Args>(args)...);
    if (p == nullptr || kind == detail::instance_kind::anonymous) return p;
    void* block = array ? static_cast<char*>(static_cast<void*>(p)) - detail::array_pad<T>() : static_cast<void*>(p);
    const std::string tag = array ? detail::array_tag<T>() : detail::type_tag<T>();
    if (pheap_set_root_typed(state().heap.c_handle(), root.c_str(), block, tag.c_str()) != 0) {
      const int e = errno;
      std::string what = "recording root '";
      what += root;
      what += "': ";
      what += pheap_last_error();
      destroy_elements(p, array ? num : 1);
      deallocate(block);
      throw error(what, e);
    }
    return p;
  }

  template <typename T, typename... Args>
  T* make_one(bool throws, Args&&... args) {
    void* m = allocate_aligned(sizeof(T), alignof(T), std::nothrow);
    if (m == nullptr) {
      if (throws) throw boost::interprocess::bad_alloc();
      return nullptr;
    }
    if constexpr (std::is_polymorphic_v<T>) pheap_holds_code(state().heap.c_handle());
    try {
      return ::new (m) T(std::forward<Args>(args)...);
    } catch (...) {
      deallocate(m);
      throw;
    }
  }

  template <typename T, typename... Args>
  T* make_array(size_type n, bool throws, Args&... args) {
    constexpr size_type pad = detail::array_pad<T>();
    void* block = n <= (SIZE_MAX - pad) / (sizeof(T) == 0 ? 1 : sizeof(T))
                      ? allocate_aligned(pad + n * sizeof(T), alignof(T) > 16 ? alignof(T) : 16, std::nothrow)
                      : nullptr;
    if (block == nullptr) {
      if (throws) throw boost::interprocess::bad_alloc();
      return nullptr;
    }
    if constexpr (std::is_polymorphic_v<T>) pheap_holds_code(state().heap.c_handle());
    const auto pad32 = static_cast<std::uint32_t>(pad);
    std::memcpy(block, &pad32, sizeof(pad32));
    T* first = reinterpret_cast<T*>(static_cast<char*>(block) + pad);
    *detail::header_of(first) = detail::array_header{pad32, detail::kArrayMagic, n};
    size_type made = 0;
    try {
      for (; made < n; ++made) ::new (static_cast<void*>(first + made)) T(args...);
    } catch (...) {
      destroy_elements(first, made);
      deallocate(block);
      throw;
    }
    return first;
  }

  std::shared_ptr<const std::vector<index_entry>> index(bool unique) const {
    auto out = std::make_shared<std::vector<index_entry>>();
    std::lock_guard<std::recursive_mutex> l(state().mu);
    for (const Heap::root_info& r : state().heap.roots()) {
      const std::string_view name = r.name;
      index_entry e;
      if (unique) {
        if (name.substr(0, detail::kUniquePrefix.size()) != detail::kUniquePrefix) continue;
        e.name_ = name.substr(detail::kUniquePrefix.size());
      } else {
        if (name.substr(0, detail::kReservedPrefix.size()) == detail::kReservedPrefix) continue;
        e.name_ = r.name;
      }
      e.value_ = detail::is_array_tag(r.type) ? detail::elements_of(r.address) : r.address;
      out->push_back(std::move(e));
    }
    return out;
  }
  size_type count_roots(bool unique) const { return index(unique)->size(); }

  std::unique_ptr<open_state> s_;
};

inline void swap(managed_heap& a, managed_heap& b) noexcept { a.swap(b); }

// Boost.Interprocess's tags under pheap::, as Metall names its own: a
// Metall program's metall::create_only becomes pheap::create_only.
using boost::interprocess::anonymous_instance;
using boost::interprocess::create_only;
using boost::interprocess::open_only;
using boost::interprocess::open_or_create;
using boost::interprocess::open_read_only;
using boost::interprocess::unique_instance;

}  // namespace pheap

#endif  // PHEAP_MANAGED_HEAP_HPP_
