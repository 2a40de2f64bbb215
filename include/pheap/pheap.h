/* pheap C interface: a persistent heap whose objects survive crashes and
 * restarts at the same addresses.
 *
 * Every function that can fail returns NULL or -1 and sets errno;
 * pheap_last_error() then says why, naming the thing and what to do.
 * All functions are thread-safe unless noted. Pointers returned by the
 * allocation functions stay valid across commits, crashes and reopens (as of
 * the last durable commit), in this and in later processes.
 */
#ifndef PHEAP_PHEAP_H_
#define PHEAP_PHEAP_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The heap handle. In C, and in C++ code that uses only this header, it is
 * `pheap`. The C++ interface (heap.hpp) owns the namespace `pheap`, which a
 * type of the same name would clash with, so there the handle is spelled
 * `pheap::handle`; both name the same object (C linkage ignores the name). */
#if defined(__cplusplus) && defined(PHEAP_CXX_API)
namespace pheap { struct handle; }
#define PHEAP_HANDLE ::pheap::handle
#else
typedef struct pheap pheap;
#define PHEAP_HANDLE pheap
#define PHEAP_HANDLE_IS_GLOBAL 1
#endif

/* Opens heap `name`, creating it if it does not exist (config create=0:
 * only an existing heap, else ENOENT; create=only: only a new one, else
 * EEXIST). `config` is NULL or
 * "key=value;key=value" (keys: dir, size, base, tracking, check, code_check,
 * commit_ms, peers, replicas, quorum, create, ...; a list value such as peers is
 * comma-separated). Every key is also read from the environment as
 * PHEAP_<KEY>; the config string wins. Returns NULL and sets errno on failure.
 * A process may open several heaps; each must have its own address range. */
PHEAP_HANDLE* pheap_open(const char* name, const char* config);

/* Opens heap `name` read-only, beside its writer (which may be running, in
 * this or another process, here or on another machine). The region is
 * mapped at the heap's address and shows its last durable epoch as one
 * consistent image; it is PROT_READ, so a write into it raises SIGSEGV.
 * `config` and PHEAP_* as for pheap_open; it reads dir, peers, replicas,
 * keys, replica_timeout_ms, replica_open_timeout_ms, base and code_check.
 * The image comes from the store under `dir`, read without its lock; when
 * there is none there and peers are given, from the replicas. The writer
 * never waits for a reader, and a reader takes nothing from it but disk
 * space: log files its epoch reads stay allocated, though compacted away,
 * until it refreshes or closes (or exits). pheap_root, pheap_roots,
 * pheap_base, pheap_of and pheap_epoch work as on any heap; allocation,
 * freeing, setting roots, commits, pheap_get_space and
 * pheap_check_allocator fail with EROFS, their message naming the heap. Close it with pheap_close (which commits nothing). Errors:
 * ENOENT when no store here and no replica holds the heap, or it has no
 * durable epoch yet; EBUSY when its address range is taken in this process
 * (a heap is opened once per process, read-only or not); the store's and
 * replicas' errors (EIO, ETIMEDOUT) otherwise. Returns NULL on failure. */
PHEAP_HANDLE* pheap_open_read_only(const char* name, const char* config);

/* As pheap_open_read_only, showing the heap as it was at the durable epoch
 * `epoch` (>= 1), read from the local store under dir (not from replicas).
 * A store keeps past epochs as config retain= asks its writer (retain=N:
 * the newest N epochs, retain=30s: those of the last 30 s; by default only
 * the durable one); compaction drops the others. ENOENT, the message
 * naming `epoch` and the oldest retained epoch, when it is not retained;
 * otherwise pheap_open_read_only's errors. pheap_refresh moves it to the
 * newest epoch. */
PHEAP_HANDLE* pheap_open_read_only_at(const char* name, const char* config, int64_t epoch);

/* Makes a new, independent heap `dest` from h's image as of durable epoch
 * `epoch` (0: the epoch h shows: a writer's durable epoch, a reader's own;
 * else a retained one), read from h's local store, not from its memory:
 * the calling thread copies it, while the heap's other threads (or its
 * writer, in another process) keep running and committing, never paused
 * for it. `config`
 * is NULL or "dir=DIR", dest's store directory (default: h's). The new
 * heap holds the image at the same address, so it cannot be open in the
 * process that has h open; it has no peers, and its durable epoch is
 * `epoch`. Returns that epoch, or -1: EEXIST if dest exists, ENOENT if the
 * epoch is not retained (or h has none durable yet), the stores' errors
 * (EIO, ENOSPC), after which no dest is left. Costs a read and a write of
 * every stored page of the image, and one fdatasync. */
int64_t pheap_snapshot(PHEAP_HANDLE* h, const char* dest, const char* config, int64_t epoch);

/* Moves a read-only heap to the newest durable epoch and returns it: pages
 * that changed since show their new contents, at the same addresses (a
 * pointer stays valid while the object it points to is still in the
 * image). No other thread may read the region meanwhile. On failure (-1,
 * errno as pheap_open_read_only's) the heap stays at its epoch. For a
 * writer's heap, returns its durable epoch. Its cost grows with the pages
 * changed (read from a local store) or with the image (from replicas). */
int64_t pheap_refresh(PHEAP_HANDLE* h);

/* Commits, then closes `h` and unmaps its region: every pointer into it
 * becomes invalid. Returns 0, or -1 if the final commit failed (the heap is
 * closed either way; the last durable epoch is intact). */
int pheap_close(PHEAP_HANDLE* h);

/* Removes heap `name` from the store directory `config` names (dir=, as
 * pheap_open reads it): its objects are gone for good. A crash part way
 * leaves the whole heap or none of it. A heap with replicas keeps them
 * (`pheap rm --on-replicas` removes it there). 0, or -1: ENOENT if there
 * is no such heap, EBUSY if a process (this one included) has it open. */
int pheap_remove(const char* name, const char* config);

/* Allocation, with malloc's meaning. REQUIRES: p is NULL or was returned by
 * an allocation function of the same heap and not yet freed. */
void* pheap_malloc(PHEAP_HANDLE* h, size_t n);
void* pheap_calloc(PHEAP_HANDLE* h, size_t count, size_t n);
void* pheap_realloc(PHEAP_HANDLE* h, void* p, size_t n);
void* pheap_aligned_alloc(PHEAP_HANDLE* h, size_t align, size_t n); /* align: power of two */
/* Errors of these: ENOMEM when the heap has no room (the error names the
 * size, the alignment and the heap's region); EINVAL for an alignment that
 * is not a power of two, or a pointer from elsewhere. */
void pheap_free(PHEAP_HANDLE* h, void* p);
size_t pheap_usable_size(PHEAP_HANDLE* h, const void* p);

/* Named roots: how a later process finds its data. pheap_root returns the
 * pointer stored under `name`, or NULL if unset (errno ENOENT). pheap_set_root
 * stores p (which must point into h, or be NULL to clear) under `name` (1..127
 * bytes); it takes effect in the durable image at the next commit. 0 or -1.
 * Errors of both: EINVAL for a NULL or empty name or a pointer outside h,
 * ENAMETOOLONG for a name over 127 bytes. */
void* pheap_root(PHEAP_HANDLE* h, const char* name);
int pheap_set_root(PHEAP_HANDLE* h, const char* name, void* p);

/* Takes a point-in-time image of the heap and returns its epoch once it is
 * durable, or -1. Other threads may keep running; they are paused briefly.
 * A failed commit's image stays queued and is written again before later
 * ones, so a later successful commit makes it durable too. Errors: errno as
 * the store or replicas reported it (ENOSPC, EIO, EROFS; ETIMEDOUT without
 * a quorum). While failed or slow commits hold more than staging_max bytes,
 * a commit fails at once with the failure's errno when a retry of the oldest
 * fails again, or with ETIMEDOUT after staging_wait_ms. */
int64_t pheap_commit(PHEAP_HANDLE* h);
/* The last durable epoch (0 for a heap never committed). */
int64_t pheap_epoch(PHEAP_HANDLE* h);

/* How the program will use [addr, addr + len) of h, as madvise(2) says it
 * of ordinary memory. The range is widened to whole pages; advice never
 * changes what the heap holds. SEQUENTIAL and RANDOM stay until other
 * advice for the same pages. */
enum pheap_advice {
  PHEAP_ADVICE_NORMAL = 0,     /* forget SEQUENTIAL and RANDOM there */
  PHEAP_ADVICE_SEQUENTIAL = 1, /* a fault there reads prefetch_max at once, and the next window ahead */
  PHEAP_ADVICE_RANDOM = 2,     /* a fault there reads the page touched alone */
  PHEAP_ADVICE_WILLNEED = 3,   /* pheap_prefetch */
  PHEAP_ADVICE_DONTNEED = 4    /* under memory_max: its clean durable pages go now, and first */
};
/* Gives advice (enum pheap_advice) for the pages of [addr, addr + len).
 * WILLNEED returns at once and pheap's fault threads read the range's
 * stored pages in the background, prefetch_max at a time between the
 * program's faults, skipping pages already in memory; under memory_max
 * they stop where the budget's high watermark (7/8) is reached. DONTNEED,
 * under memory_max, gives back at once the range's pages that are durable
 * and not written since the last commit (a written page stays, and keeps
 * its write), in pauses of at most 16 MiB each, and makes what stays the
 * first to go later; a page given back reads the same when touched again.
 * Without memory_max, or in a mode that loads the whole image at open,
 * WILLNEED and DONTNEED change nothing. A read-only heap holds its whole
 * image in memory: advice there changes nothing. 0, or -1: EINVAL when the
 * range is not inside h (the message names it and the region) or the
 * advice is unknown. */
int pheap_advise(PHEAP_HANDLE* h, const void* addr, size_t len, int advice);
/* pheap_advise(h, addr, len, PHEAP_ADVICE_WILLNEED): brings the range's
 * stored pages into memory ahead of use, in the background. */
int pheap_prefetch(PHEAP_HANDLE* h, const void* addr, size_t len);

/* A message about the calling thread's last failure (never NULL). */
const char* pheap_last_error(void);

/* The heap the preload library (libpheap_preload.so) runs the program on, or
 * NULL when the program does not run under it. */
PHEAP_HANDLE* pheap_default(void);

/* ---- Extensions used by the C++ interface (heap.hpp), stable as well. ---- */

/* The open heap whose region contains p, or NULL. */
PHEAP_HANDLE* pheap_of(const void* p);
/* The first address of h's region: the same in every process. */
void* pheap_base(PHEAP_HANDLE* h);
/* The size in bytes of h's region (of a read-only heap too); 0 for a bad
 * handle. */
size_t pheap_size(PHEAP_HANDLE* h);

/* Roots with a recorded type: `type` names the type (any length; past 127
 * bytes its first bytes and a hash of the whole are recorded).
 * pheap_root_typed returns NULL and sets errno to ENOENT if the root is
 * unset, or to EINVAL (see pheap_last_error) if it was stored with another
 * type. pheap_set_root_typed records `type` with the root. */
void* pheap_root_typed(PHEAP_HANDLE* h, const char* name, const char* type);
int pheap_set_root_typed(PHEAP_HANDLE* h, const char* name, void* p, const char* type);

/* Calls fn(name, type, p, ctx) for each root (type "" if none was
 * recorded), on a copy of the table taken first, so fn may set roots.
 * Stops at the first non-zero value fn returns and returns it; 0 once
 * every root was seen; -1 for a bad handle. */
typedef int (*pheap_root_fn)(const char* name, const char* type, void* p, void* ctx);
int pheap_roots(PHEAP_HANDLE* h, pheap_root_fn fn, void* ctx);
/* Clears root `name`, then frees the block it pointed to (from h's
 * allocation functions). 0, or -1 (errno ENOENT if no such root). */
int pheap_free_root(PHEAP_HANDLE* h, const char* name);
/* Closes h without a final commit: the heap stays at its last durable
 * epoch, as after a crash, and what the process wrote since is lost. For
 * a program that stops half-way through an update (the C++ interface's
 * Heap when an exception unwinds it). 0, or -1 for a bad handle. */
int pheap_close_uncommitted(PHEAP_HANDLE* h);

/* Takes the point-in-time cut now and returns its epoch at once; the epoch
 * becomes durable in the background. -1 on failure, with pheap_commit's
 * errors (no cut is taken then). */
int64_t pheap_commit_async(PHEAP_HANDLE* h);
/* Waits until epoch e is durable: returns e, or -1 if it cannot become
 * durable (the error says why). */
int64_t pheap_wait(PHEAP_HANDLE* h, int64_t e);

/* The space of h's region: its size, the most its blocks can hold (the
 * region less the superblock and the allocator's metadata; fragmentation
 * can keep some of it from a given request), and the bytes in blocks
 * handed out and not freed (a small block counts its size class;
 * approximate while other threads allocate). Walks the allocator's
 * metadata under its lock: not for a hot path. 0, or -1 for a bad handle. */
struct pheap_space {
  uint64_t region;
  uint64_t capacity;
  uint64_t live;
};
int pheap_get_space(PHEAP_HANDLE* h, struct pheap_space* out);
/* Validates the allocator's metadata: every heap page's free lists and the
 * segment maps. 0, or -1 with errno EIO and the problem in
 * pheap_last_error(). REQUIRES: no other thread allocates or frees in h
 * meanwhile. */
int pheap_check_allocator(PHEAP_HANDLE* h);
/* The heaps open in this process: stores up to `max` of them in out (which
 * may be NULL when max is 0) and returns how many there are. A heap that
 * opens or closes meanwhile may or may not be counted. */
int pheap_open_heaps(PHEAP_HANDLE** out, int max);

/* Code pointers (virtual functions, function pointers) stored in a heap are
 * valid only in the same build loaded at the same address. Call this first
 * thing in main: it re-executes the program with address randomization off
 * (ADDR_NO_RANDOMIZE) unless it already runs so, so every run of one build
 * loads at the same addresses. Returns 0 when already stable; -1 (errno set)
 * if it could not re-execute. argv as given to main. */
int pheap_exec_stable(char** argv);

/* Declares that heap h holds, or may hold, code pointers (function pointers,
 * objects with virtual functions). From then on every open of the heap
 * compares the program's build and load address with its writer's, per the
 * code_check setting; a heap never declared so is not checked, since its
 * contents stay valid in any build. The C++ interface declares it itself
 * when it constructs a polymorphic type. Never undone. 0, or -1 for a bad
 * handle. */
int pheap_holds_code(PHEAP_HANDLE* h);

#ifdef __cplusplus
}
#endif

#endif /* PHEAP_PHEAP_H_ */
