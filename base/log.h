// Logging that never allocates: messages are formatted into a stack buffer
// and written to stderr with one write(2). It is safe inside the allocator,
// the fault service and the preload shim, where malloc may not be called.
// The level comes from PHEAP_LOG (error, warn, info, debug; default warn).
#pragma once

#include <fmt/format.h>

namespace pheap {

enum class LogLevel : int { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

LogLevel CurrentLogLevel();
void SetLogLevel(LogLevel level);
// Sets `level` unless PHEAP_LOG names one (a daemon's own default).
void SetDefaultLogLevel(LogLevel level);
// Writes "pheap[pid] level: text\n" to stderr.
void LogWrite(LogLevel level, const char* text, size_t len);

template <typename... Args>
void Log(LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
  if (static_cast<int>(level) > static_cast<int>(CurrentLogLevel())) return;
  char buf[1024];
  auto r = fmt::format_to_n(buf, sizeof(buf) - 1, f, std::forward<Args>(args)...);
  LogWrite(level, buf, r.size < sizeof(buf) - 1 ? r.size : sizeof(buf) - 1);
}

#define PHEAP_LOG_ERROR(...) ::pheap::Log(::pheap::LogLevel::kError, __VA_ARGS__)
#define PHEAP_LOG_WARN(...) ::pheap::Log(::pheap::LogLevel::kWarn, __VA_ARGS__)
#define PHEAP_LOG_INFO(...) ::pheap::Log(::pheap::LogLevel::kInfo, __VA_ARGS__)
#define PHEAP_LOG_DEBUG(...) ::pheap::Log(::pheap::LogLevel::kDebug, __VA_ARGS__)

}  // namespace pheap
