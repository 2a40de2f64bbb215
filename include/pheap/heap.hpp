// pheap C++ interface: RAII heaps, typed roots, make/destroy, commits.
//
//   pheap::Heap heap("notes", "dir=/var/lib/notes");
//   auto* book = heap.find_or_make<Book>("book");   // same object next run
//   book->add("hello");
//   heap.commit();                                   // durable now
//
// Header-only over the C interface (pheap.h): no exception crosses the
// library; the C++ layer turns C errors into pheap::error where a caller
// cannot be handed a value. Objects in the heap must not hold pointers
// outside it (other than code pointers; see README "Code pointers").
#ifndef PHEAP_HEAP_HPP_
#define PHEAP_HEAP_HPP_

#ifdef PHEAP_HANDLE_IS_GLOBAL
#error "in C++ include <pheap/heap.hpp> before <pheap/pheap.h> (the C header's global type pheap would clash with namespace pheap)"
#endif
#define PHEAP_CXX_API 1
#include <pheap/pheap.h>

#include <cerrno>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

namespace pheap {

// A failure of the heap: what() says what and what to do; code() is errno.
class error : public std::runtime_error {
 public:
  error(const std::string& what, int code) : std::runtime_error(what), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

namespace detail {
[[noreturn]] inline void throw_last(const char* doing) {
  int e = errno;
  throw error(std::string(doing) + ": " + pheap_last_error(), e);
}
// The recorded type of a root: the ABI's type name plus size and alignment,
// so a layout change is caught as well as a different type.
template <typename T>
std::string type_tag() {
  return std::string(typeid(T).name()) + "/" + std::to_string(sizeof(T)) + "/" +
         std::to_string(alignof(T));
}
}  // namespace detail

// A commit whose cut is taken; wait() returns once it is durable.
class pending_commit {
 public:
  pending_commit(handle* h, int64_t epoch) : h_(h), epoch_(epoch) {}
  int64_t epoch() const noexcept { return epoch_; }
  bool ready() const noexcept { return pheap_epoch(h_) >= epoch_; }
  // Returns the durable epoch; throws pheap::error if it cannot become durable.
  int64_t wait() const {
    int64_t r = pheap_wait(h_, epoch_);
    if (r < 0) detail::throw_last("waiting for a commit");
    return r;
  }

 private:
  handle* h_;
  int64_t epoch_;
};

// How the program will use a range of a heap (pheap_advise).
enum class advice {
  normal = PHEAP_ADVICE_NORMAL,          // forget sequential and random there
  sequential = PHEAP_ADVICE_SEQUENTIAL,  // faults there read ahead the widest window
  random = PHEAP_ADVICE_RANDOM,          // faults there read the page touched alone
  will_need = PHEAP_ADVICE_WILLNEED,     // read its stored pages in now, in the background
  dont_need = PHEAP_ADVICE_DONTNEED,     // under memory_max: give back its clean durable pages now
};

// Re-executes the program with stable code addresses (see pheap_exec_stable);
// returns when they already are. Throws pheap::error if it cannot.
inline void exec_with_stable_addresses(char** argv) {
  if (pheap_exec_stable(argv) != 0) detail::throw_last("re-executing with stable addresses");
}

class Heap {
 public:
  // Opens or creates heap `name` (config as pheap_open). Throws pheap::error.
  explicit Heap(const std::string& name, const std::string& config = "")
      : h_(pheap_open(name.c_str(), config.empty() ? nullptr : config.c_str())) {
    if (h_ == nullptr) detail::throw_last(("opening heap '" + name + "'").c_str());
  }
  // Opens heap `name` read-only beside its writer (pheap_open_read_only):
  // the region shows its last durable epoch, writes into it raise SIGSEGV
  // (destroy(p) among them, when T's destructor writes), and make,
  // set_root, destroy(name) and commit throw pheap::error (EROFS).
  // Throws pheap::error (ENOENT: no such heap, or none durable yet).
  static Heap open_read_only(const std::string& name, const std::string& config = "") {
    handle* h = pheap_open_read_only(name.c_str(), config.empty() ? nullptr : config.c_str());
    if (h == nullptr) detail::throw_last(("opening heap '" + name + "' read-only").c_str());
    return Heap(h);
  }
  // The same, as the heap was at the past durable epoch `epoch`
  // (pheap_open_read_only_at): ENOENT, naming it and the oldest retained
  // epoch, when the store no longer keeps it (config retain=).
  static Heap open_read_only(const std::string& name, const std::string& config, int64_t epoch) {
    handle* h = pheap_open_read_only_at(name.c_str(), config.empty() ? nullptr : config.c_str(), epoch);
    if (h == nullptr)
      detail::throw_last(("opening heap '" + name + "' read-only at epoch " + std::to_string(epoch)).c_str());
    return Heap(h);
  }

  // Commits and closes. A failed final commit cannot throw from here: call
  // commit() first where that matters. While an exception thrown since the
  // Heap was made unwinds it, it closes without committing: an update the
  // exception stopped half-way never becomes durable, and the heap stays at
  // its last commit.
  ~Heap() {
    if (h_ == nullptr) return;
    if (std::uncaught_exceptions() > uncaught_at_open_) pheap_close_uncommitted(h_);
    else pheap_close(h_);
  }
  Heap(const Heap&) = delete;
  Heap& operator=(const Heap&) = delete;
  Heap(Heap&& o) noexcept : h_(std::exchange(o.h_, nullptr)), uncaught_at_open_(o.uncaught_at_open_) {}

  handle* c_handle() const noexcept { return h_; }

  // Read-only heaps: moves to the newest durable epoch and returns it
  // (pheap_refresh, with its rule: no other thread reads the heap
  // meanwhile). Pointers stay valid; what they point to is as of the new
  // epoch. Throws pheap::error, leaving the heap at its epoch.
  int64_t refresh() {
    int64_t e = pheap_refresh(h_);
    if (e < 0) detail::throw_last("refresh");
    return e;
  }

  // Allocates and constructs a T in the heap. Throws std::bad_alloc when the
  // region is full, and whatever T's constructor throws (freeing the memory).
  template <typename T, typename... Args>
  T* make(Args&&... args) {
    void* p = pheap_aligned_alloc(h_, alignof(T) < sizeof(void*) ? sizeof(void*) : alignof(T), sizeof(T));
    if (p == nullptr && errno == EROFS) detail::throw_last("make");  // a read-only heap
    if (p == nullptr) throw std::bad_alloc();
    if constexpr (std::is_polymorphic_v<T>) pheap_holds_code(h_);  // its vtable pointer is code
    try {
      return ::new (p) T(std::forward<Args>(args)...);
    } catch (...) {
      pheap_free(h_, p);
      throw;
    }
  }
  // REQUIRES: p came from make<T> of this heap (or is null).
  template <typename T>
  void destroy(T* p) {
    if (p == nullptr) return;
    p->~T();
    pheap_free(h_, p);
  }

  // The root `name`, or nullptr if unset. Throws pheap::error if it was
  // stored as another type.
  template <typename T>
  T* root(const std::string& name) {
    void* p = pheap_root_typed(h_, name.c_str(), detail::type_tag<T>().c_str());
    if (p == nullptr && errno != ENOENT) detail::throw_last(("root '" + name + "'").c_str());
    return static_cast<T*>(p);
  }
  // REQUIRES: p points into this heap, or is null (clears the root).
  template <typename T>
  void set_root(const std::string& name, T* p) {
    if (pheap_set_root_typed(h_, name.c_str(), p, detail::type_tag<T>().c_str()) != 0)
      detail::throw_last(("setting root '" + name + "'").c_str());
  }
  // The root `name`, made from args (and recorded as a root) if unset. If
  // the root cannot be recorded, the object made is destroyed again.
  template <typename T, typename... Args>
  T* find_or_make(const std::string& name, Args&&... args) {
    if (T* p = root<T>(name)) return p;
    T* p = make<T>(std::forward<Args>(args)...);
    try {
      set_root(name, p);
    } catch (...) {
      destroy(p);
      throw;
    }
    return p;
  }
  // Destroys the object under root `name` (made by make<T>) and clears the
  // root; false if there is none. Throws pheap::error if it holds another
  // type.
  template <typename T>
  bool destroy(const std::string& name) {
    T* p = root<T>(name);
    if (p == nullptr) return false;
    set_root<T>(name, nullptr);  // first: no image holds the root pointing at a destroyed object
    destroy(p);
    return true;
  }

  // Every root: its name, its type as recorded (for roots set through this
  // interface, the mangled type name, its size and alignment, as
  // "<typeid name>/<size>/<align>") and where it points.
  struct root_info {
    std::string name, type;
    void* address;
  };
  std::vector<root_info> roots() const {
    std::vector<root_info> out;
    pheap_roots(
        h_,
        [](const char* name, const char* type, void* p, void* ctx) {
          static_cast<std::vector<root_info>*>(ctx)->push_back({name, type, p});
          return 0;
        },
        &out);
    return out;
  }

  // Takes a point-in-time image and returns its epoch once durable.
  int64_t commit() {
    int64_t e = pheap_commit(h_);
    if (e < 0) detail::throw_last("commit");
    return e;
  }
  // Takes the cut now; the returned commit becomes durable in the background.
  pending_commit commit_async() {
    int64_t e = pheap_commit_async(h_);
    if (e < 0) detail::throw_last("commit");
    return pending_commit(h_, e);
  }
  int64_t durable_epoch() const noexcept { return pheap_epoch(h_); }

  // Makes heap `dest` (in `config`'s dir=, else this heap's) a new heap
  // holding this one's image as of `epoch` (0: the epoch it shows), read
  // from the store while the writer keeps committing (pheap_snapshot).
  // Returns that epoch; throws pheap::error (EEXIST, ENOENT, EIO).
  int64_t snapshot(const std::string& dest, const std::string& config = "", int64_t epoch = 0) {
    int64_t e = pheap_snapshot(h_, dest.c_str(), config.empty() ? nullptr : config.c_str(), epoch);
    if (e < 0) detail::throw_last(("snapshot into heap '" + dest + "'").c_str());
    return e;
  }

  // Advice about [p, p + len), widened to whole pages (pheap_advise: what
  // each does, and when it changes nothing). Throws pheap::error (EINVAL)
  // naming the range when it is not inside this heap.
  void advise(const void* p, size_t len, advice a) {
    if (pheap_advise(h_, p, len, static_cast<int>(a)) != 0) detail::throw_last("advice");
  }
  // Reads the stored pages of [p, p + len) in ahead of use, in the
  // background; returns at once (pheap_prefetch). Throws as advise.
  void prefetch(const void* p, size_t len) { advise(p, len, advice::will_need); }

  void* malloc(size_t n) noexcept { return pheap_malloc(h_, n); }
  void free(void* p) noexcept { pheap_free(h_, p); }

 private:
  explicit Heap(handle* h) : h_(h) {}
  handle* h_;
  int uncaught_at_open_ = std::uncaught_exceptions();
};

}  // namespace pheap

#endif  // PHEAP_HEAP_HPP_
