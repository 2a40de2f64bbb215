// A replica whose disk fills up, against three real peer processes: the
// writer's failed commit names the replica and ENOSPC (not a timeout); a
// commit that still makes its quorum is logged once by the writer, and once
// more when the replica recovers; the peer logs the failure once and shows
// it in its status. The small disk is a tmpfs in a mount namespace of this
// test process, which the peer started after it inherits.
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "replica_test_util.h"
#include "replication/peer_server.h"

namespace pheap {
namespace {

using namespace std::chrono_literals;
using testing::MakeEpoch;
using testing::Oracle;
using testing::Range;

// Sends this process's stderr, and that of the children it starts, to a
// file the test reads while it runs.
class StderrToFile {
 public:
  explicit StderrToFile(std::string path) : path_(std::move(path)) {
    std::fflush(stderr);
    saved_ = dup(STDERR_FILENO);
    int fd = open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    EXPECT_GE(fd, 0) << std::strerror(errno);
    dup2(fd, STDERR_FILENO);
    close(fd);
  }
  ~StderrToFile() {
    std::fflush(stderr);
    dup2(saved_, STDERR_FILENO);
    close(saved_);
  }
  StderrToFile(const StderrToFile&) = delete;
  StderrToFile& operator=(const StderrToFile&) = delete;

  // Lines process `pid` logged that contain `text`.
  int Count(pid_t pid, const std::string& text) const {
    std::ifstream f(path_);
    const std::string mark = "pheap[" + std::to_string(pid) + "] ";
    int n = 0;
    for (std::string line; std::getline(f, line);)
      n += line.rfind(mark, 0) == 0 && line.find(text) != std::string::npos;
    return n;
  }
  std::string Lines(const std::string& text) const {
    std::ifstream f(path_);
    std::string out;
    for (std::string line; std::getline(f, line);)
      if (line.find(text) != std::string::npos) out += line + "\n";
    return out;
  }

 private:
  std::string path_;
  int saved_ = -1;
};

class ReplicaFailureTest : public testing::ReplicaFixture {
 protected:
  // Fills the disk at `dir` but for `left` bytes.
  void FillDisk(const std::string& dir, uint64_t left) {
    struct statvfs fs {};
    ASSERT_EQ(statvfs(dir.c_str(), &fs), 0);
    const uint64_t free_bytes = uint64_t{fs.f_bavail} * fs.f_frsize;
    ASSERT_GT(free_bytes, left);
    int fd = open((dir + "/filler").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    ASSERT_EQ(fallocate(fd, 0, 0, static_cast<off_t>(free_bytes - left)), 0) << std::strerror(errno);
    close(fd);
  }
  // Peer `i`'s status entry for the heap.
  std::optional<wire::HeapStatusEntry> StatusOf(int i) {
    zmq::context_t ctx;
    auto ch = PeerChannel::Connect(ctx, endpoints_[i], nullptr);
    if (!ch.ok()) return std::nullopt;
    auto r = (*ch)->Call(wire::EncodeStatus((*ch)->NextRequestId()), 5s);
    if (!r.ok()) return std::nullopt;
    const auto* st = std::get_if<wire::StatusReply>(&(*r)->msg.body);
    if (st == nullptr) return std::nullopt;
    for (const auto& h : st->heaps)
      if (h.name == kHeap) return h;
    return std::nullopt;
  }
};

TEST_F(ReplicaFailureTest, FullDiskReachesTheWriterTheLogAndTheStatus) {
  if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    GTEST_SKIP() << "cannot make a mount namespace here: " << std::strerror(errno);
  const std::string disk = tmp_.path() + "/small";
  std::filesystem::create_directories(disk);
  if (mount("tmpfs", disk.c_str(), "tmpfs", 0, "size=8m") != 0)
    GTEST_SKIP() << "cannot mount a tmpfs: " << std::strerror(errno);
  StderrToFile log(tmp_.path() + "/stderr");
  peers_[0]->Signal(SIGKILL);
  dirs_[0] = disk + "/data";
  StartPeer(0);
  const pid_t peer = peers_[0]->pid();
  const std::string& full = endpoints_[0];

  // Quorum 2: the two others carry the commits; the writer says once that
  // replica 0 fails, naming the cause, and once that it is back.
  Oracle oracle;
  std::vector<testing::TestEpoch> epochs;
  auto persist = [&](ReplicaClient& c) {
    const Epoch e = epochs.size() + 1;
    epochs.push_back(MakeEpoch(e, Range(0, 64), 64, {}, &oracle));  // 256 KiB each
    return c.Persist(epochs.back().sealed);
  };
  {
    auto o = Options(/*claim=*/true, /*quorum=*/2);
    o.timeout = 30s;
    auto c = Open(o);
    ASSERT_TRUE(c);
    ASSERT_TRUE(persist(*c).ok());
    FillDisk(disk, 64 << 10);
    const std::string failed = "replica " + full + " failed epoch";
    for (int i = 0; i < 10 && log.Count(getpid(), failed) == 0; ++i) {
      Status s = persist(*c);
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
    ASSERT_EQ(log.Count(getpid(), failed), 1) << log.Lines("pheap[");
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(persist(*c).ok());
    EXPECT_EQ(log.Count(getpid(), failed), 1) << "logged once per cause, not per epoch:\n" << log.Lines(failed);
    EXPECT_EQ(log.Count(getpid(), std::strerror(ENOSPC)), 1) << log.Lines(failed);

    // The peer logged it once too, and its status shows it.
    EXPECT_EQ(log.Count(peer, "a write to its store failed"), 1) << log.Lines("pheap[" + std::to_string(peer));
    auto st = StatusOf(0);
    ASSERT_TRUE(st);
    EXPECT_NE(st->status.flags & wire::kHeapTrouble, 0u);
    EXPECT_EQ(st->status.error_errno, static_cast<uint32_t>(ENOSPC));
    EXPECT_NE(st->error.find(std::strerror(ENOSPC)), std::string::npos) << st->error;
    ::testing::internal::CaptureStdout();
    EXPECT_EQ(PrintPeerStatus(full, "", /*json=*/false), 0);
    const std::string shown = ::testing::internal::GetCapturedStdout();
    EXPECT_NE(shown.find(" failed "), std::string::npos) << shown;
    EXPECT_NE(shown.find(std::strerror(ENOSPC)), std::string::npos) << shown;

    // Room again: it is caught up, and both sides say it recovered.
    std::filesystem::remove(disk + "/filler");
    const std::string back = "replica " + full + " acknowledges epochs again";
    for (int i = 0; i < 10 && log.Count(getpid(), back) == 0; ++i) ASSERT_TRUE(persist(*c).ok());
    EXPECT_EQ(log.Count(getpid(), back), 1) << log.Lines("pheap[");
    EXPECT_EQ(log.Count(peer, "its store works again"), 1);
    st = StatusOf(0);
    ASSERT_TRUE(st);
    EXPECT_EQ(st->status.flags & wire::kHeapTrouble, 0u) << st->error;
    EXPECT_TRUE(st->error.empty()) << st->error;
  }
  for (const auto& ep : endpoints_) ASSERT_TRUE(AwaitDurable(ep, epochs.size())) << ep;

  // Quorum 3: the commit fails at once, with replica 0's own error.
  auto o = Options(/*claim=*/true, /*quorum=*/3);
  o.timeout = 30s;
  auto c = Open(o);
  ASSERT_TRUE(c);
  FillDisk(disk, 64 << 10);
  const auto start = std::chrono::steady_clock::now();
  Status s = persist(*c);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.code(), Status::Code::kTimeout) << s.ToString();
  EXPECT_EQ(s.err(), ENOSPC) << s.ToString();
  EXPECT_NE(s.message().find("replica " + full + " refused it"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("STORE_ERROR"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(std::strerror(ENOSPC)), std::string::npos) << s.message();
  EXPECT_LT(took, 15s) << "the replica's answer should end the commit, not the 30 s timeout";
  c.reset();
  peers_[0]->Signal(SIGKILL);
  EXPECT_EQ(umount2(disk.c_str(), MNT_DETACH), 0) << std::strerror(errno);
}

}  // namespace
}  // namespace pheap
