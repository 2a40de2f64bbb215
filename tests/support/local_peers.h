// Peers on this machine, as `pheap peer` processes listening on Unix
// sockets beside their directories; SIGTERM and reaped at the end.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace pheaptest {

class LocalPeers {
 public:
  // Starts n peers of the `pheap` command at path `command`, each in dir/peerI.
  LocalPeers(const std::string& command, const std::string& dir, int n) : command_(command) {
    for (int i = 0; i < n; ++i) {
      const std::string d = dir + "/peer" + std::to_string(i);
      if (i != 0) endpoints_ += ',';  // not "," + string&&: GCC 12 at -O3 warns falsely (-Wrestrict)
      endpoints_ += Endpoint(d);
      dirs_.push_back(d);
      pids_.push_back(-1);
      Start(i);
    }
  }
  // Starts peer i again (after Kill) on its directory, as it was left.
  void Start(int i) {
    const std::string& d = dirs_.at(static_cast<size_t>(i));
    const std::string ep = Endpoint(d);
    pid_t pid = fork();
    if (pid == 0) {
      int null = open("/dev/null", O_WRONLY);
      dup2(null, 1);
      dup2(null, 2);
      execl(command_.c_str(), command_.c_str(), "peer", "--listen", ep.c_str(), "--dir", d.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    pids_.at(static_cast<size_t>(i)) = pid;
  }
  ~LocalPeers() {
    for (pid_t p : pids_)
      if (p > 0) kill(p, SIGTERM);
    for (pid_t p : pids_)
      if (p > 0) waitpid(p, nullptr, 0);
  }
  LocalPeers(const LocalPeers&) = delete;
  LocalPeers& operator=(const LocalPeers&) = delete;
  // "ipc://A,ipc://B,...", for config peers=.
  const std::string& endpoints() const { return endpoints_; }
  // Peer i's store directory.
  const std::string& dir(int i) const { return dirs_.at(static_cast<size_t>(i)); }
  // Stops peer i for good (SIGKILL), as a machine lost.
  void Kill(int i) {
    pid_t& p = pids_.at(static_cast<size_t>(i));
    if (p <= 0) return;
    kill(p, SIGKILL);
    waitpid(p, nullptr, 0);
    p = -1;
  }

 private:
  static std::string Endpoint(const std::string& dir) { return "ipc://" + dir + ".sock"; }
  std::string command_;
  std::string endpoints_;
  std::vector<std::string> dirs_;
  std::vector<pid_t> pids_;
};

}  // namespace pheaptest
