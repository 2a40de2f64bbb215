// What the replica client puts on the wire, seen by a minimal peer in this
// process (a ROUTER that grants, takes and acknowledges everything and
// records each PAGES message): every page of an epoch travels exactly once,
// in ascending order within a message, intact, in messages of at least
// 64 KiB whenever the epoch has that much.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "replica_test_util.h"

namespace pheap {
namespace {

using testing::MakeEpoch;
using testing::Oracle;
using testing::Range;

struct SeenPages {
  Epoch epoch = 0;
  std::vector<Pgno> pgnos;
  bool intact = false;
};

class FakePeer {
 public:
  explicit FakePeer(const std::string& endpoint) : sock_(ctx_, zmq::socket_type::router) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.bind(endpoint);
    thread_ = std::thread([this] { Loop(); });
  }
  ~FakePeer() {
    stop_ = true;
    thread_.join();
  }
  std::vector<SeenPages> pages() {
    std::lock_guard l(mu_);
    return pages_;
  }

 private:
  void Loop() {
    while (!stop_) {
      zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, std::chrono::milliseconds(20)) <= 0) continue;
      std::vector<zmq::message_t> frames;
      do {
        frames.emplace_back();
        (void)sock_.recv(frames.back());
      } while (frames.back().more());
      std::vector<std::span<const uint8_t>> spans;
      for (size_t i = 1; i < frames.size(); ++i)
        spans.emplace_back(static_cast<const uint8_t*>(frames[i].data()), frames[i].size());
      wire::Message m;
      wire::ErrorCode code{};
      ASSERT_TRUE(wire::Decode(spans, &m, &code).ok());
      const wire::ReplyTo to{m.header.request_id, m.header.heap_id};
      wire::OutMessage reply;
      switch (m.type) {
        case wire::Type::kHello: {
          wire::ManifestBody b{};
          b.epoch = durable_;
          b.max_message_bytes = wire::kMaxMessageBytes;
          reply = wire::EncodeManifest(to, b);
          break;
        }
        case wire::Type::kClaimTerm:
          reply = wire::EncodeTermReply(to, wire::TermReplyBody{1, 0, m.header.term, durable_, 0});
          break;
        case wire::Type::kPages: {
          const auto& p = std::get<wire::Pages>(m.body);
          SeenPages seen{m.header.epoch, {}, false};
          for (uint32_t i = 0; i < p.count; ++i) seen.pgnos.push_back(p.ref(i).pgno);
          Pgno bad = 0;
          seen.intact = wire::VerifyPages(p, &bad).ok();
          {
            std::lock_guard l(mu_);
            pages_.push_back(std::move(seen));
          }
          reply = wire::EncodePagesAck(to, m.header.epoch, m.header.term, p.count, 0);
          break;
        }
        case wire::Type::kCommit:
          durable_ = m.header.epoch;
          reply = wire::EncodeCommitAck(to, m.header.term, durable_, m.header.term);
          break;
        default:
          continue;
      }
      sock_.send(frames[0], zmq::send_flags::sndmore);
      auto h = reply.header_bytes();
      sock_.send(zmq::const_buffer(h.data(), h.size()), zmq::send_flags::sndmore);
      sock_.send(zmq::const_buffer(reply.body.data(), reply.body.size()), zmq::send_flags::none);
    }
  }

  zmq::context_t ctx_;
  zmq::socket_t sock_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<SeenPages> pages_;
  Epoch durable_ = 0;
};

TEST(ReplicaFramesTest, EveryPageOnceInFramesOfAtLeast64KiB) {
  testing::TempDir tmp;
  const std::string ep = "ipc://" + tmp.path() + "/fake.sock";
  FakePeer peer(ep);
  ReplicaClientOptions o;
  auto rc = ResolveReplication({ep}, 0, 0);
  ASSERT_TRUE(rc.ok());
  o.replication = *rc;
  o.frame_bytes = 64 * 4096;  // 64 pages a frame
  auto c = ReplicaClient::Open("frames", o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();

  // Epoch sizes around the frame size: smaller than the minimum frame, a
  // tail short of the minimum (folded in), and many whole frames.
  const std::vector<size_t> sizes = {5, 70, 64, 600, 16, 79};
  Oracle oracle;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const Epoch e = i + 1;
    std::vector<Pgno> pgnos;
    for (size_t j = 0; j < sizes[i]; ++j) pgnos.push_back(3 * j + i);  // sparse, ascending
    auto sealed = MakeEpoch(e, pgnos, 3 * 600 + 8, {}, &oracle);
    Status s = (*c)->Persist(sealed.sealed);
    ASSERT_TRUE(s.ok()) << s.ToString();

    std::vector<Pgno> got;
    for (const SeenPages& m : peer.pages()) {
      if (m.epoch != e) continue;
      EXPECT_TRUE(m.intact) << "epoch " << e;
      EXPECT_TRUE(std::is_sorted(m.pgnos.begin(), m.pgnos.end()));
      if (sizes[i] >= 16) {
        EXPECT_GE(m.pgnos.size(), 16u) << "epoch " << e << ": a PAGES message under 64 KiB";
      }
      got.insert(got.end(), m.pgnos.begin(), m.pgnos.end());
    }
    EXPECT_EQ(got, pgnos) << "epoch " << e;
  }
}

}  // namespace
}  // namespace pheap
