// The durable promise a peer makes for one heap: the highest term it has
// granted, and to which writer session. Kept in the heap's directory as the
// file TERM (64 bytes, format below), next to the page store's log files.
// A peer persists a promise before it replies to the claim, so a promise
// survives any crash of the peer.
//
// TERM: magic "PHTERM01" (8), version u32 = 1, reserved u32, term u64,
// claimant u64[2], reserved 16 bytes, XXH3-64 of bytes [0, 56) (8); all
// little-endian. Replaced atomically: written to TERM.next, fsynced, renamed,
// directory fsynced.
//
// Thread safety: none; the peer calls it from its one write thread.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "base/types.h"

namespace pheap {

struct TermPromise {
  Term term = 0;               // 0: nothing promised yet
  // The writer session granted `term` (or whose request adopted it); 0,0
  // unknown (a promise older than writers naming themselves).
  uint64_t claimant[2] = {0, 0};
};

class TermStore {
 public:
  // Reads dir/TERM; a missing file (or dir) is an empty promise. A damaged
  // file is kCorruption naming it: the peer must not guess a lower term.
  static Result<TermStore> Open(const std::string& dir);

  const TermPromise& promise() const { return promise_; }
  // Makes `p` the durable promise; returns once it is on disk. Creates the
  // directory if missing. On failure the previous promise stays in force.
  Status Promise(const TermPromise& p);

 private:
  explicit TermStore(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
  TermPromise promise_;
};

}  // namespace pheap
