// Runs a worker process, kills it with SIGKILL at a chosen instant, and
// returns what it acknowledged: the crash tests' harness. A worker reports
// on the file descriptor whose number it gets as its last argument, one line
// per event, "WORD NUMBER".
#pragma once

#include <map>
#include <string>
#include <vector>

namespace pheaptest {

struct KilledWorker {
  int status = 0;                       // from waitpid
  bool killed() const;                  // ended by our SIGKILL, not by itself
  std::map<std::string, unsigned long long> last;  // last number per word
  bool said(const std::string& word) const { return last.count(word) != 0; }
  unsigned long long get(const std::string& word) const;  // 0 if never said
  std::string stderr_text;              // what the worker wrote to stderr
};

// Starts `argv` (argv[0] is the path) plus the ack fd number. Unless
// `early`, waits until the worker has said `wait_for` (e.g. its first durable
// commit), so the kill lands after real work whatever the machine's load.
// Then sleeps `delay_us`, kills it and collects.
KilledWorker RunAndKill(const std::vector<std::string>& argv, bool early, unsigned delay_us,
                        const std::string& wait_for);

}  // namespace pheaptest
