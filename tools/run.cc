// `pheap run`: runs a program with its whole malloc/new family on a
// persistent heap, by executing it with LD_PRELOAD=libpheap_preload.so and
// the heap's settings in PHEAP_* variables (which the program's children
// inherit, as they inherit the preload).
#include "tools/commands.h"

#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

#include <fmt/format.h>

namespace pheap::tools {
namespace {

namespace fs = std::filesystem;

// The preload library: $PHEAP_PRELOAD_LIB, else beside this executable in
// the build tree, else in the install's library directory.
std::string FindPreloadLib() {
  if (const char* env = std::getenv("PHEAP_PRELOAD_LIB"); env != nullptr && *env != '\0') return env;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  std::vector<fs::path> candidates;
  if (!ec) {
    candidates.push_back(exe.parent_path().parent_path() / "preload" / "libpheap_preload.so");
    candidates.push_back(exe.parent_path().parent_path() / PHEAP_LIBDIR_NAME / "libpheap_preload.so");
  }
  candidates.push_back(fs::path(PHEAP_LIBDIR) / "libpheap_preload.so");
  for (const fs::path& p : candidates)
    if (fs::exists(p, ec)) return fs::absolute(p, ec).string();
  return "";
}

void SetEnv(const char* key, const std::string& value) {
  if (!value.empty()) setenv(key, value.c_str(), 1);
}

}  // namespace

int RunPreloaded(const RunOptions& o) {
  if (o.command.empty()) {
    fmt::print(stderr, "pheap run: no program given: pheap run [options] -- PROGRAM ARGS...\n");
    return 2;
  }
  std::string lib = FindPreloadLib();
  if (lib.empty()) {
    fmt::print(stderr, "pheap run: cannot find libpheap_preload.so beside this pheap or in {}; "
               "set PHEAP_PRELOAD_LIB to its path\n", PHEAP_LIBDIR);
    return 2;
  }
  SetEnv("PHEAP_NAME", o.name);
  if (!o.dir.empty()) {
    // Absolute, so a program that changes directory keeps the same store.
    std::error_code ec;
    fs::path dir = fs::absolute(o.dir, ec);
    SetEnv("PHEAP_DIR", ec ? o.dir : dir.string());
  }
  SetEnv("PHEAP_PEERS", o.peers);
  // The program keeps this pid through exec: it persists, and the
  // processes it starts run on glibc unless PHEAP_CHILDREN is on.
  SetEnv("PHEAP_RUN_PID", std::to_string(getpid()));
  if (o.children) SetEnv("PHEAP_CHILDREN", "1");
  if (o.commit_ms >= 0) SetEnv("PHEAP_COMMIT_MS", std::to_string(o.commit_ms));
  const char* old = std::getenv("LD_PRELOAD");
  SetEnv("LD_PRELOAD", old != nullptr && *old != '\0' ? lib + ":" + old : lib);
  std::vector<char*> argv;
  for (const std::string& a : o.command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execvp(argv[0], argv.data());
  int err = errno;
  fmt::print(stderr, "pheap run: cannot execute '{}': {}\n", o.command[0], std::strerror(err));
  return err == ENOENT ? 127 : 126;
}

}  // namespace pheap::tools
