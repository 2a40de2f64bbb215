#include "tests/support/kill_loop.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <sstream>
#include <thread>

namespace pheaptest {

bool KilledWorker::killed() const { return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL; }

unsigned long long KilledWorker::get(const std::string& word) const {
  auto it = last.find(word);
  return it == last.end() ? 0 : it->second;
}

namespace {

std::string Drain(int fd) {
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) out.append(buf, static_cast<size_t>(n));
  return out;
}

}  // namespace

KilledWorker RunAndKill(const std::vector<std::string>& argv, bool early, unsigned delay_us,
                        const std::string& wait_for) {
  int acks[2], errs[2];
  if (pipe2(acks, O_CLOEXEC) != 0 || pipe2(errs, O_CLOEXEC) != 0) std::abort();
  pid_t pid = fork();
  if (pid == 0) {
    int ack = dup(acks[1]);  // without O_CLOEXEC: the worker inherits it
    dup2(errs[1], 2);
    std::vector<std::string> args = argv;
    args.push_back(std::to_string(ack));
    std::vector<char*> c;
    for (auto& a : args) c.push_back(a.data());
    c.push_back(nullptr);
    execv(c[0], c.data());
    _exit(127);
  }
  close(acks[1]);
  close(errs[1]);
  std::string text;
  if (!early) {
    char buf[256];
    while (text.find(wait_for + " ") == std::string::npos) {
      ssize_t n = read(acks[0], buf, sizeof(buf));
      if (n <= 0) break;
      text.append(buf, static_cast<size_t>(n));
    }
  }
  std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
  kill(pid, SIGKILL);
  KilledWorker w;
  waitpid(pid, &w.status, 0);
  text += Drain(acks[0]);
  w.stderr_text = Drain(errs[0]);
  close(acks[0]);
  close(errs[0]);
  std::istringstream in(text);
  std::string word;
  unsigned long long v;
  while (in >> word >> v) w.last[word] = v;
  return w;
}

}  // namespace pheaptest
