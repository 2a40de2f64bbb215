// ZeroMQ loaded on first use, for libpheap_preload.so only.
//
// Every program run under the preload library would otherwise map libzmq
// and what it needs (libsodium, Kerberos, PGM, NORM) at startup, about
// 1 ms and 2 MB of RSS per process, although only a heap with peers
// ever calls it. Linking this file defines the ZeroMQ functions the project
// calls; each forwards to libzmq.so.5, opened with dlopen the first time
// one is called. Nothing else changes: cppzmq and our code call zmq_* as
// usual. The library's version script keeps these definitions internal, so
// a program that uses ZeroMQ itself still binds to the real library (and
// dlopen then returns the copy it already has).
//
// When libzmq cannot be loaded, every call fails with ELIBACC, and
// zmq_strerror(ELIBACC) names the library, the loader's reason and the fix,
// so the error a heap with peers reports says what to install.
#include <dlfcn.h>
#include <errno.h>
#include <zmq.h>

#include <cstdio>
#include <cstring>
#include <mutex>
#include <type_traits>

// Each function forwarded: result type, name, parameters, arguments.
// zmq_strerror is forwarded by hand (it must explain ELIBACC), and
// zmq_errno is answered here: libzmq's only returns errno.
#define PHEAP_ZMQ_FUNCTIONS(X)                                                                     \
  X(void*, zmq_ctx_new, (void), ())                                                                \
  X(int, zmq_ctx_term, (void* c), (c))                                                             \
  X(void*, zmq_socket, (void* c, int type), (c, type))                                             \
  X(int, zmq_close, (void* s), (s))                                                                \
  X(int, zmq_bind, (void* s, const char* addr), (s, addr))                                         \
  X(int, zmq_connect, (void* s, const char* addr), (s, addr))                                      \
  X(int, zmq_setsockopt, (void* s, int opt, const void* val, size_t len), (s, opt, val, len))      \
  X(int, zmq_getsockopt, (void* s, int opt, void* val, size_t* len), (s, opt, val, len))           \
  X(int, zmq_socket_monitor, (void* s, const char* addr, int events), (s, addr, events))           \
  X(int, zmq_send, (void* s, const void* buf, size_t len, int flags), (s, buf, len, flags))        \
  X(int, zmq_poll, (zmq_pollitem_t * items, int n, long timeout), (items, n, timeout))             \
  X(int, zmq_msg_init, (zmq_msg_t * m), (m))                                                       \
  X(int, zmq_msg_init_size, (zmq_msg_t * m, size_t size), (m, size))                               \
  X(int, zmq_msg_init_data, (zmq_msg_t * m, void* data, size_t size, zmq_free_fn* ffn, void* hint), \
    (m, data, size, ffn, hint))                                                                    \
  X(int, zmq_msg_close, (zmq_msg_t * m), (m))                                                      \
  X(int, zmq_msg_copy, (zmq_msg_t * dest, zmq_msg_t* src), (dest, src))                            \
  X(void*, zmq_msg_data, (zmq_msg_t * m), (m))                                                     \
  X(size_t, zmq_msg_size, (const zmq_msg_t* m), (m))                                               \
  X(int, zmq_msg_more, (const zmq_msg_t* m), (m))                                                  \
  X(int, zmq_msg_send, (zmq_msg_t * m, void* s, int flags), (m, s, flags))                         \
  X(int, zmq_msg_recv, (zmq_msg_t * m, void* s, int flags), (m, s, flags))                         \
  X(int, zmq_curve_keypair, (char* pub, char* sec), (pub, sec))                                    \
  X(int, zmq_curve_public, (char* pub, const char* sec), (pub, sec))                               \
  X(char*, zmq_z85_encode, (char* dest, const uint8_t* data, size_t size), (dest, data, size))     \
  X(uint8_t*, zmq_z85_decode, (uint8_t * dest, const char* text), (dest, text))

namespace {

constexpr const char* kLibrary = "libzmq.so.5";

struct Functions {
#define PHEAP_ZMQ_SLOT(R, name, params, args) decltype(&::name) name = nullptr;
  PHEAP_ZMQ_FUNCTIONS(PHEAP_ZMQ_SLOT)
#undef PHEAP_ZMQ_SLOT
  decltype(&::zmq_strerror) zmq_strerror = nullptr;
};

Functions g_zmq;
bool g_loaded = false;
char g_why[512];  // why loading failed, for zmq_strerror(ELIBACC)
std::once_flag g_once;

void Load() {
  void* h = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
  const char* missing = nullptr;
  if (h != nullptr) {
#define PHEAP_ZMQ_RESOLVE(R, name, params, args)                                  \
  g_zmq.name = reinterpret_cast<decltype(&::name)>(dlsym(h, #name));             \
  if (g_zmq.name == nullptr && missing == nullptr) missing = #name;
    PHEAP_ZMQ_FUNCTIONS(PHEAP_ZMQ_RESOLVE)
    PHEAP_ZMQ_RESOLVE(, zmq_strerror, , )
#undef PHEAP_ZMQ_RESOLVE
  }
  if (h != nullptr && missing == nullptr) {
    g_loaded = true;
    return;
  }
  const char* err = h == nullptr ? dlerror() : missing;
  std::snprintf(g_why, sizeof(g_why),
                "%s could not be loaded (%s): a heap with peers needs ZeroMQ; install Debian's libzmq5",
                kLibrary, err != nullptr ? err : "unknown reason");
}

// The loaded functions, or null (errno = ELIBACC) when libzmq is missing.
const Functions* Zmq() {
  std::call_once(g_once, Load);
  if (g_loaded) return &g_zmq;
  errno = ELIBACC;
  return nullptr;
}

// What a call returns when libzmq is missing: ZeroMQ's own failure values.
template <typename R>
R Failed() {
  if constexpr (std::is_same_v<R, int>) return -1;
  else return R{};
}

}  // namespace

#define PHEAP_ZMQ_FORWARD(R, name, params, args) \
  extern "C" R name params {                     \
    const Functions* z = Zmq();                  \
    if (z == nullptr) return Failed<R>();        \
    return z->name args;                         \
  }
PHEAP_ZMQ_FUNCTIONS(PHEAP_ZMQ_FORWARD)
#undef PHEAP_ZMQ_FORWARD

extern "C" int zmq_errno(void) { return errno; }

extern "C" const char* zmq_strerror(int err) {
  const Functions* z = Zmq();
  if (z == nullptr) return err == ELIBACC ? g_why : std::strerror(err);
  return z->zmq_strerror(err);
}
