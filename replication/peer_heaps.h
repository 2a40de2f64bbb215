// HeapTable: what a peer holds, and the rules by which it answers each
// request. No sockets here: peer_server.cc receives messages, hands each to
// Handle, and sends back the reply it returns.
//
// For every heap in its directory the peer keeps (dir/<heap name>/):
//   the page store (store/page_store.h), opened at start or on first
//   use and kept open; created by the first COMMIT of epoch 1;
//   TERM, the durable term promise (replication/term_store.h);
//   in memory, its inbox: the pages of the epoch being shipped.
//
//   while an image is installed (kInstallBegin .. kInstallCommit), the term
//   of the writer installing it.
// A store the writer cannot catch up is installed anew: the writer's image
// goes into an install file beside the store's files, which keep serving the
// image held here until the install's closing record is durable; that
// record supersedes them, and they are removed. Directories named
// <heap name>.stale-epoch-N, which earlier versions set aside, are not
// served; their promise is honoured.
//
// Thread safety: kHello, kFetch and kStatus may be handled by any number of
// threads at once; kClaimTerm, kPages, kCommit, the install messages,
// kRepair and kDrop by one thread at a time (the peer's write thread), concurrently
// with the others.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "base/status.h"
#include "base/types.h"
#include "store/page_store.h"
#include "replication/wire.h"

namespace pheap {

class Compactor;

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using PageBuffer = std::unique_ptr<uint8_t, FreeDeleter>;

// A reply and the buffer its page data lives in (if it owns one).
struct Reply {
  wire::OutMessage msg;
  PageBuffer owned;
};

// How much of one epoch a peer holds while it waits for the COMMIT, per
// heap: the first memory_bytes in memory, the rest (up to max_bytes) in an
// unnamed file in the peer's directory, whose pages the kernel writes out
// under memory pressure. So an epoch larger than memory can be replicated.
struct InboxLimits {
  uint64_t max_bytes = uint64_t{16} << 30;  // address space reserved per heap on its first epoch
  uint64_t memory_bytes = uint64_t{256} << 20;
};

class HeapTable {
 public:
  // Registers every heap directory under `dir` (one holding TERM or log
  // files) and opens its store. A store that fails to open is logged and its
  // requests answered with kStoreError; the others are served.
  // `store` holds the settings every heap's store takes (its region and
  // create_if_missing are set per heap). With `compact`, a thread compacts
  // every heap's store in the background (store/compactor.h) beside the
  // write thread; a store with an install open is left alone until it ends.
  static Result<std::unique_ptr<HeapTable>> Open(const std::string& dir, const InboxLimits& inbox,
                                                 const PageStoreOptions& store = {}, bool compact = true);
  ~HeapTable();
  HeapTable(const HeapTable&) = delete;
  HeapTable& operator=(const HeapTable&) = delete;

  // Answers one decoded request. `clients` goes into a kStatus reply.
  // REQUIRES: wire::IsRequest(m.type).
  Reply Handle(const wire::Message& m, uint32_t clients);

  // Stops compacting and closes every store (after the last Handle).
  void Close();

  struct Heap;

 private:
  HeapTable(std::string dir, const InboxLimits& inbox, const PageStoreOptions& store);
  std::shared_ptr<Heap> Find(HeapId id);
  std::shared_ptr<Heap> Register(const std::string& name);
  std::shared_ptr<Heap> FindWritable(const wire::Message& m, Reply* err);

  Reply Hello(const wire::Message& m);
  Reply ClaimTerm(const wire::Message& m);
  Reply Pages(const wire::Message& m);
  Reply Commit(const wire::Message& m);
  Reply Fetch(const wire::Message& m);
  Reply InstallBegin(const wire::Message& m);
  Reply InstallPages(const wire::Message& m);
  Reply InstallCommit(const wire::Message& m);
  Reply Repair(const wire::Message& m);
  Reply Drop(const wire::Message& m);
  Result<std::shared_ptr<class PageStore>> CreateStore(Heap* h, uint64_t base, uint64_t size);
  Reply StatusReply(const wire::Message& m, uint32_t clients);

  const std::string dir_;
  const InboxLimits inbox_limits_;
  const PageStoreOptions store_options_;
  const uint64_t started_ms_;
  std::mutex mu_;  // guards heaps_
  std::map<HeapId, std::shared_ptr<Heap>> heaps_;
  std::unique_ptr<Compactor> compactor_;  // null with compaction off
};

}  // namespace pheap
