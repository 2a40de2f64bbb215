// The two interfaces between the pager and wherever pages live. The pager
// (pager/) never knows whether pages come from the local store, from peer
// replicas or from both; heap/ wires a PageStore (store/page_store.h)
// or a replica client to it.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "base/status.h"
#include "base/types.h"

namespace pheap {

// What a durable image is: enough to map its region and serve its faults.
struct ImageInfo {
  HeapId heap_id = 0;
  Epoch epoch = 0;     // last durable epoch; 0 for a heap never committed
  Term term = 0;
  uint64_t base = 0;   // region base address
  uint64_t size = 0;   // region size in bytes
  Pgno hwm = 0;        // pages at or above hwm were never stored
};

// The lineage order of images: an epoch is named by (term, epoch), and of
// two images the one of the higher term is the newer, whatever the epoch
// numbers say. One writer holds a term and writes its epochs in order, so
// two images of one term and epoch are the same image, and an image of a
// newer term began from every epoch durable when its term was claimed: an
// older term's epoch that is not in it never became durable.
inline bool NewerImage(const ImageInfo& a, const ImageInfo& b) {
  return a.term != b.term ? a.term > b.term : a.epoch > b.epoch;
}

// One commit's pages, cut at a single instant: copied out of the region
// (data), or, for a sink that says it can take them so, read in place from
// the region while the program is held paused (region).
struct SealedEpoch {
  ImageInfo image;               // image.epoch is this commit's number;
                                 // image.hwm covers every page below
  std::vector<Pgno> pages;       // ascending, no duplicates
  const uint8_t* data = nullptr; // pages.size() * kPageSize bytes: page i at
                                 // data + i * kPageSize; 4 KiB aligned; owned
                                 // by the pager and valid until Persist returns
  const uint8_t* region = nullptr;  // when data is null: page p at
                                 // region + p * kPageSize, unchanging until
                                 // Persist returns
  std::vector<Run> discarded;    // runs given back to the OS since the last
                                 // epoch: they read as zeros from this epoch on
                                 // (disjoint from `pages`)
  uint64_t pause_ns = 0;         // how long the cut held the program still,
                                 // for the sink to record; 0: not known yet
                                 // (Write: Sync gets it)

  // The bytes of pages[i].
  const uint8_t* page_data(size_t i) const {
    return data != nullptr ? data + i * kPageSize : region + pages[i] * kPageSize;
  }
};

class PageSource {
 public:
  virtual ~PageSource() = default;
  // Fills out[0, count * kPageSize) with pages [first, first + count) of the
  // durable image; a page never stored (or discarded) reads as zeros.
  // `present`, when not null, gets bit i set iff page first + i has stored
  // data. A page whose stored bytes fail their checksum is an error (kCorruption)
  // naming the page and where it lies; never silently wrong data.
  // REQUIRES: out is 4 KiB aligned; count <= kMaxReadRun; present, if given,
  // holds at least (count + 63) / 64 words.
  // Thread-safe: several fault-service threads call it at once.
  virtual Status ReadRun(Pgno first, uint32_t count, uint8_t* out, uint64_t* present) = 0;

  // Where pages [first, first + n) lie back to back in one stored file,
  // each already checked against its checksum there, for the largest
  // n <= count: so the caller can map them (MAP_PRIVATE) instead of copying
  // them. `fd` is a descriptor of that file for the caller to close.
  // pages == 0 (and no fd) when no such run of at least kMinMapRun pages
  // starts at `first`, or the source keeps no files; the caller copies
  // them through ReadRun then. Thread-safe, as ReadRun.
  struct StoredRun {
    int fd = -1;
    uint64_t offset = 0;  // of page `first` in the file; page aligned
    uint64_t pages = 0;
  };
  virtual StoredRun LocateRun(Pgno first, uint64_t count) {
    (void)first, (void)count;
    return {};
  }

  // Hints that pages [first, first + count) will be read soon: a source
  // that reads them from files starts those reads now, without waiting, so
  // a later ReadRun finds them in memory. Thread-safe, as ReadRun.
  virtual void WillNeed(Pgno first, uint64_t count) { (void)first, (void)count; }

  static constexpr uint32_t kMaxReadRun = 1024;  // 4 MiB
  static constexpr uint32_t kMinMapRun = 16;     // shorter runs are copied
};

// After ReadRun(first, count, buf, present): moves the pages that hold data
// to the front of buf, in order, and appends their numbers to *pgnos, so
// buf and *pgnos form the data and page list of a SealedEpoch.
inline void PackPresentPages(Pgno first, uint32_t count, const uint64_t* present, uint8_t* buf,
                             std::vector<Pgno>* pgnos) {
  const size_t base = pgnos->size();
  for (uint32_t i = 0; i < count; ++i) {
    if (((present[i / 64] >> (i % 64)) & 1) == 0) continue;
    const size_t at = pgnos->size() - base;
    if (at != i) std::memmove(buf + at * kPageSize, buf + uint64_t{i} * kPageSize, kPageSize);
    pgnos->push_back(first + i);
  }
}

class EpochSink {
 public:
  virtual ~EpochSink() = default;
  // Makes `e` durable and returns only then: every page and the commit
  // record on disk (and, for a replicated sink, on a write quorum).
  // On failure the epoch is not durable and nothing earlier is harmed; the
  // caller may retry the same epoch.
  // REQUIRES: e.image.epoch == last durable epoch + 1; one caller at a time.
  virtual Status Persist(const SealedEpoch& e) = 0;
  // True if Persist takes an epoch whose pages it reads in place from the
  // region (SealedEpoch::region) rather than from a copy. Such a Persist
  // must read them holding no lock that ReadRun takes: a page not yet
  // resident faults, and the fault service serves it through ReadRun.
  virtual bool PersistsFromRegion() const { return false; }
  // Persist in two steps, for a commit that holds the program still only
  // while the epoch is read: Write takes what it needs from the epoch's
  // pages (the region may change once it returns), Sync makes the epoch
  // durable. Write(e) then Sync() has Persist(e)'s effect and contract; a
  // failure of either leaves the epoch not durable, and its number may be
  // used again for a later cut. The defaults do all the work in Write.
  // The pause is over only after Write returns: Sync gets it (pause_ns),
  // for a sink that records it with the epoch.
  // REQUIRES: Sync follows each successful Write before the next epoch.
  virtual Status Write(const SealedEpoch& e) { return Persist(e); }
  virtual Status Sync(uint64_t pause_ns) {
    (void)pause_ns;
    return Status::Ok();
  }
};

}  // namespace pheap
