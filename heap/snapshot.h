// Snapshots: a new, independent heap made from a durable epoch of another,
// read from that heap's store (never from a running process's memory), so
// its writer keeps committing meanwhile and is never paused for it.
//
// The new heap holds the image at the same base address (its pointers
// point into itself), so it cannot be open in the same process as the
// heap it was taken from. It has no peers, and its durable epoch is the
// epoch it was taken at. Its store is written as one install file
// (docs/store-format.md) closed by one fdatasync: a crash part way leaves
// a directory holding no durable epoch, which the next snapshot to that
// name refuses and `pheap rm` removes.
//
// Cost: reads and writes every stored page of the image once, plus the
// one fdatasync; the source's log files it reads stay allocated until it
// returns, though compacted away meanwhile.
//
// Thread safety: any thread; several snapshots may run at once.
#pragma once

#include <string>

#include "base/page_io.h"
#include "base/status.h"
#include "store/page_store.h"

namespace pheap {

// Makes heap `dest` under `dest_dir` from `source`'s image as of `epoch`
// (PageStore::ImageAt: the durable epoch, or a retained one) and returns
// that image as the new heap holds it. Errors name the heaps:
//   - EEXIST (kInvalidArgument): `dest` exists under `dest_dir`;
//   - kNotFound: `epoch` is not retained (naming the oldest that is);
//   - the stores' errors (EIO, ENOSPC), after which no `dest` is left.
Result<ImageInfo> WriteSnapshot(const PageStore& source, Epoch epoch, const std::string& dest_dir,
                                const std::string& dest);

// The same from heap `name`'s store under `dir`, opened read-only without
// its lock (its writer may run in another process). `epoch` 0: the newest
// durable epoch there, taken again if a compaction drops it meanwhile.
Result<ImageInfo> SnapshotHeap(const std::string& dir, const std::string& name, Epoch epoch,
                               const std::string& dest_dir, const std::string& dest);

}  // namespace pheap
