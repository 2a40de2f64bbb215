// A slow disk for the randomized fault tester: an Os whose syncs
// (fdatasync, fsync, writev_datasync) each take longer while a flag file
// exists. The file holds the extra milliseconds. A writer's local store then
// lags the replicas it ships to, and a peer acknowledges late, without the
// process knowing it is being tested.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <utility>

#include "base/os.h"

namespace pheaptest {

class SlowSyncOs final : public pheap::Os {
 public:
  explicit SlowSyncOs(std::string flag) : flag_(std::move(flag)) {}

  int fdatasync(int fd) override {
    Delay();
    return Os::fdatasync(fd);
  }
  int fsync(int fd) override {
    Delay();
    return Os::fsync(fd);
  }
  int writev_datasync(int fd, const struct iovec* iov, int iovcnt, off_t off) override {
    Delay();
    return Os::writev_datasync(fd, iov, iovcnt, off);
  }

 private:
  void Delay() const {
    const int fd = ::open(flag_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char buf[16] = {};
    const ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
    ::close(fd);
    const long ms = n > 0 ? std::strtol(buf, nullptr, 10) : 0;
    if (ms > 0) ::usleep(static_cast<useconds_t>(ms * 1000));
  }

  std::string flag_;
};

}  // namespace pheaptest
