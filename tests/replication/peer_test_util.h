// Shared by the peer tests: a scratch directory, page contents, and a peer
// daemon run as a child process (test_peer, built next to the tests).
#pragma once

#include "tests/support/test_util.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "base/types.h"

namespace pheap::testing {

// A temporary directory for one test.
class TempDir : public pheaptest::TempDir {
 public:
  TempDir() : pheaptest::TempDir("pheap-peer") {}
};
using pheaptest::FillPage;
using pheaptest::Mix;

inline std::string SelfDir() {
  return std::filesystem::read_symlink("/proc/self/exe").parent_path().string();
}

// A test_peer child process.
class PeerProcess {
 public:
  PeerProcess() = default;
  ~PeerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  PeerProcess(const PeerProcess&) = delete;
  PeerProcess& operator=(const PeerProcess&) = delete;

  void Start(const std::vector<std::string>& args) {
    std::vector<std::string> all = {SelfDir() + "/test_peer"};
    all.insert(all.end(), args.begin(), args.end());
    pid_ = fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  // Sends `sig` and returns the exit status (as waitpid gives it).
  int Signal(int sig) {
    kill(pid_, sig);
    return Wait();
  }
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

}  // namespace pheap::testing
