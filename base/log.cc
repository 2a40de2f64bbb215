#include "base/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace pheap {
namespace {

// The level PHEAP_LOG names, else `otherwise`.
LogLevel LevelFromEnv(LogLevel otherwise = LogLevel::kWarn) {
  const char* v = std::getenv("PHEAP_LOG");
  if (v == nullptr) return otherwise;
  if (std::strcmp(v, "error") == 0) return LogLevel::kError;
  if (std::strcmp(v, "info") == 0) return LogLevel::kInfo;
  if (std::strcmp(v, "debug") == 0) return LogLevel::kDebug;
  return LogLevel::kWarn;
}

// -1: not read yet. Reading the environment lazily keeps this free of
// static constructors, which matters for the preload shim.
std::atomic<int> g_level{-1};

const char* LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kError: return "error";
    case LogLevel::kWarn: return "warning";
    case LogLevel::kInfo: return "info";
    case LogLevel::kDebug: return "debug";
  }
  return "?";
}

}  // namespace

LogLevel CurrentLogLevel() {
  int l = g_level.load(std::memory_order_relaxed);
  if (l < 0) {
    l = static_cast<int>(LevelFromEnv());
    g_level.store(l, std::memory_order_relaxed);
  }
  return static_cast<LogLevel>(l);
}

void SetLogLevel(LogLevel level) {
  g_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

void SetDefaultLogLevel(LogLevel level) { SetLogLevel(LevelFromEnv(level)); }

void LogWrite(LogLevel level, const char* text, size_t len) {
  char buf[1200];
  auto r = fmt::format_to_n(buf, sizeof(buf) - 1, "pheap[{}] {}: {}\n", getpid(),
                            LevelName(level), std::string_view(text, len));
  size_t n = r.size < sizeof(buf) - 1 ? r.size : sizeof(buf) - 1;
  if (n > 0 && buf[n - 1] != '\n') buf[n++] = '\n';
  ssize_t w = ::write(STDERR_FILENO, buf, n);
  (void)w;
}

}  // namespace pheap
