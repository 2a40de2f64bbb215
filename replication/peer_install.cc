// The peer's side of installing an image (INSTALL_BEGIN, INSTALL_PAGES,
// INSTALL_COMMIT) and of repairing damaged pages (REPAIR). Rules in
// docs/wire-protocol.md.
#include <fcntl.h>
#include <fmt/format.h>

#include <filesystem>

#include "base/log.h"
#include "base/os.h"
#include "store/log_file.h"
#include "replication/peer_heap_internal.h"

namespace pheap {

using wire::ErrorCode;
using namespace peer_internal;
using Heap = HeapTable::Heap;

std::optional<Reply> peer_internal::InstallHolds(Heap* h, const wire::Header& req) {
  if (h->install_term == 0) return std::nullopt;
  if (req.term > h->install_term) {
    PHEAP_LOG_INFO("heap '{}': the install of term {} ends: a writer of term {} ships epochs", h->name, h->install_term, req.term);
    if (auto store = h->Store()) store->AbandonInstall();
    h->install_term = 0;
    return std::nullopt;
  }
  return Err(req, h, ErrorCode::kBusy, 0,
             fmt::format("heap '{}': an image is being installed here; epochs come after its INSTALL_COMMIT", h->name));
}

Result<std::shared_ptr<PageStore>> HeapTable::CreateStore(Heap* h, uint64_t base, uint64_t size) {
  PageStoreOptions o = store_options_;
  o.base = base;
  o.size = size;
  auto s = PageStore::Open(dir_, h->name, o);
  if (!s.ok()) return s.status();
  std::shared_ptr<PageStore> store = std::move(s.value());
  std::lock_guard l(h->mu);
  h->store = store;
  PHEAP_LOG_INFO("heap '{}': created its store (region {:#x}+{:#x})", h->name, base, size);
  return store;
}

Reply HeapTable::InstallBegin(const wire::Message& m) {
  Reply err;
  auto h = FindWritable(m, &err);
  if (!h) return err;
  if (auto r = Fence(h.get(), m.header)) return std::move(*r);
  const auto& b = std::get<wire::InstallBeginBody>(m.body);
  const Term t = m.header.term;
  const ImageInfo im = h->Image();
  // Not behind: it holds the writer's durable image, or later epochs of the
  // writer's own. Any other image at or past that epoch was written by
  // another writer and never became durable: it is set aside below.
  const bool holds = im.epoch == m.header.epoch ? im.term == b.image_term : im.epoch > m.header.epoch && im.term == t;
  if (holds)
    return Err(m.header, h.get(), ErrorCode::kEpochMismatch, im.epoch,
               fmt::format("heap '{}': holds epoch {}, not behind epoch {}: nothing to install", h->name, im.epoch, m.header.epoch));
  h->inbox.Clear();
  h->inbox_pages.store(0, std::memory_order_relaxed);
  // The image goes into an install file beside the store's own files, which
  // keep serving the image held here until INSTALL_COMMIT's record is
  // durable (PageStore::InstallPages). Another writer's unfinished install
  // is dropped; the same writer's is continued (each part it sends labels
  // every page of its run, so older parts are overridden).
  const bool continue_own = h->install_term == t;
  if (!continue_own && h->install_term != 0) {
    if (auto store = h->Store()) store->AbandonInstall();
  }
  if (!h->Store()) {
    auto s = CreateStore(h.get(), b.base, b.size);
    if (!s.ok()) return Err(m.header, h.get(), ErrorCode::kStoreError, 0, s.status().message());
  }
  if (!continue_own) h->install_pages = 0;
  h->install_term = t;
  PHEAP_LOG_INFO("heap '{}': installing an image of epoch {} or later for the writer of term {}", h->name, m.header.epoch, t);
  return Reply{wire::EncodeInstallAck(To(m.header), h->Promised(), {0, 0, h->install_pages}), nullptr};
}

Reply HeapTable::InstallPages(const wire::Message& m) {
  Reply err;
  auto h = FindWritable(m, &err);
  if (!h) return err;
  if (auto r = Fence(h.get(), m.header)) return std::move(*r);
  const auto& ip = std::get<wire::InstallPages>(m.body);
  auto store = h->Store();
  if (h->install_term != m.header.term || !store)
    return Err(m.header, h.get(), ErrorCode::kNoInstall, 0,
               fmt::format("heap '{}': no install of term {} in progress here (the peer may have restarted); send INSTALL_BEGIN",
                           h->name, m.header.term));
  Pgno bad = 0;
  if (Status s = wire::VerifyPages(ip.pages, &bad); !s.ok()) return Err(m.header, h.get(), ErrorCode::kPageChecksum, bad, s.message());
  SealedEpoch part;
  part.image = ImageInfo{h->id, m.header.epoch, m.header.term, 0, 0, 0};
  part.pages.reserve(ip.pages.count);
  for (uint32_t i = 0; i < ip.pages.count; ++i) part.pages.push_back(ip.pages.ref(i).pgno);
  part.data = ip.pages.data;
  part.discarded = ip.discarded;
  if (Status s = store->InstallPages(part); !s.ok()) return Err(m.header, h.get(), ErrorCode::kStoreError, 0, s.message());
  h->install_pages += ip.pages.count;
  return Reply{wire::EncodeInstallAck(To(m.header), h->Promised(), {0, 0, h->install_pages}), nullptr};
}

Reply HeapTable::InstallCommit(const wire::Message& m) {
  Reply err;
  auto h = FindWritable(m, &err);
  if (!h) return err;
  if (auto r = Fence(h.get(), m.header)) return std::move(*r);
  const auto& b = std::get<wire::InstallCommitBody>(m.body);
  const Epoch e = m.header.epoch;
  auto ack = [&](const ImageInfo& now) {
    return Reply{wire::EncodeInstallAck(To(m.header), h->Promised(), {now.epoch, now.term, 0}), nullptr};
  };
  auto store = h->Store();
  if (store) {  // a resend: installed already (and maybe extended by the same writer)
    const ImageInfo im = store->image();
    if ((im.epoch == e && im.term == b.image_term) || (im.epoch > e && im.term == m.header.term)) return ack(im);
  }
  if (h->install_term != m.header.term || !store)
    return Err(m.header, h.get(), ErrorCode::kNoInstall, 0,
               fmt::format("heap '{}': no install of term {} in progress here (the peer may have restarted); send INSTALL_BEGIN",
                           h->name, m.header.term));
  Status s = store->InstallCommit(ImageInfo{h->id, e, b.image_term, b.base, b.size, b.hwm});
  if (!s.ok()) return Err(m.header, h.get(), ErrorCode::kStoreError, 0, s.message());
  h->install_term = 0;
  h->install_pages = 0;
  return ack(store->image());
}

Reply HeapTable::Repair(const wire::Message& m) {
  auto h = Find(m.header.heap_id);
  if (!h) return Err(m.header, nullptr, ErrorCode::kUnknownHeap, 0, "heap id not known here: send HELLO first");
  auto store = h->Store();
  if (!store) return Err(m.header, h.get(), ErrorCode::kStoreError, 0, fmt::format("heap '{}': no store here to repair", h->name));
  const auto& p = std::get<wire::Pages>(m.body);
  Pgno bad = 0;
  if (Status s = wire::VerifyPages(p, &bad); !s.ok()) return Err(m.header, h.get(), ErrorCode::kPageChecksum, bad, s.message());
  wire::RepairAckBody b{};
  for (uint32_t i = 0; i < p.count; ++i) {
    Status s = store->RepairPage(p.ref(i).pgno, p.page(i));
    if (s.ok()) {
      ++b.repaired;
    } else if (s.code() == Status::Code::kInvalidArgument) {
      ++b.refused;  // not the version stored here (it moved on, or never had it)
      PHEAP_LOG_INFO("heap '{}': repair refused: {}", h->name, s.message());
    } else {
      return Err(m.header, h.get(), ErrorCode::kStoreError, p.ref(i).pgno, s.message());
    }
  }
  return Reply{wire::EncodeRepairAck(To(m.header), h->Promised(), store->image().epoch, b), nullptr};
}

}  // namespace pheap
