// Small things every test folder needs: a temporary directory removed
// afterwards, a 64-bit mixer and deterministic page content. In namespace
// pheaptest (not pheap) so tests of the C interface, where `pheap` is a type,
// can use them too.
#pragma once

#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

// Skips the calling test under ThreadSanitizer, saying why; a no-op in the
// other builds. (A macro: GTEST_SKIP returns from the test body.)
#if defined(__SANITIZE_THREAD__)
#define PHEAP_SKIP_UNDER_TSAN(why) GTEST_SKIP() << "under ThreadSanitizer: " << (why)
#else
#define PHEAP_SKIP_UNDER_TSAN(why) static_cast<void>(0)
#endif

namespace pheaptest {

class TempDir {
 public:
  explicit TempDir(const char* prefix = "pheap-test") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (std::string(prefix) + "-XXXXXX")).string();
    path_ = mkdtemp(tmpl.data()) != nullptr ? tmpl : std::string();
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // A heap config for this directory: "dir=PATH;size=SIZE" plus `extra`.
  std::string config(const std::string& extra = "", const std::string& size = "256M") const {
    return "dir=" + path_ + (size.empty() ? "" : ";size=" + size) + (extra.empty() ? "" : ";" + extra);
  }

 private:
  std::string path_;
};

// Runs `cmd` with /bin/sh; its exit status (-1 if it did not exit), and
// in *out what it printed on stdout (add 2>&1 to the command for stderr).
inline int RunCommand(const std::string& cmd, std::string* out) {
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return -1;
  std::array<char, 512> buf;
  while (std::fgets(buf.data(), buf.size(), p) != nullptr) *out += buf.data();
  int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

inline uint64_t Mix(uint64_t x) {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Deterministic content: the 4 KiB that epoch `e` writes to page `pgno`.
inline void FillPage(uint8_t* out, uint64_t pgno, uint64_t e) {
  uint64_t s = Mix(pgno * 1000003 + e);
  for (size_t i = 0; i < 4096; i += 8) {
    s = Mix(s);
    std::memcpy(out + i, &s, 8);
  }
}

// The bytes of the log files in a store's directory; a file removed
// meanwhile (by a compaction) counts 0.
inline uint64_t LogFileBytes(const std::string& dir) {
  uint64_t n = 0;
  for (const auto& de : std::filesystem::directory_iterator(dir)) {
    std::error_code ec;
    uint64_t size = de.path().extension() == ".pheap" ? std::filesystem::file_size(de.path(), ec) : 0;
    if (!ec) n += size;
  }
  return n;
}

// Waits, up to `timeout`, for a moment when the store in `dir` holds at
// most `bound` bytes of log files; returns the sample that ended the wait.
// Judge by it, not by a later read: a compaction that begins right after
// has its output beside its sources until it is durable.
inline uint64_t LogFileBytesOnceAtMost(const std::string& dir, uint64_t bound, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  uint64_t bytes;
  while ((bytes = LogFileBytes(dir)) > bound && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  return bytes;
}

// Flips one byte of the stored copy of page `pgno` as epoch `e` wrote it
// (FillPage's content) in the log files under `dir`; false if no copy was
// found.
inline bool DamageStoredPage(const std::string& dir, uint64_t pgno, uint64_t e) {
  std::vector<uint8_t> page(4096);
  FillPage(page.data(), pgno, e);
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir)) {
    if (f.path().extension() != ".pheap") continue;
    std::ifstream in(f.path(), std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto at = std::search(bytes.begin(), bytes.end(), page.begin(), page.end());
    if (at == bytes.end()) continue;
    std::fstream out(f.path(), std::ios::binary | std::ios::in | std::ios::out);
    out.seekp(at - bytes.begin() + 100);
    const char flipped = static_cast<char>(at[100] ^ 0x5a);
    out.write(&flipped, 1);
    return true;
  }
  return false;
}

// Flips one byte of every stored copy of a page that `is_copy` recognises
// (log files keep pages page-aligned) in the log files under `dir`;
// returns how many were flipped.
template <typename Match>
inline int DamageStoredCopies(const std::string& dir, Match is_copy) {
  int flipped = 0;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir)) {
    if (f.path().extension() != ".pheap") continue;
    std::fstream io(f.path(), std::ios::in | std::ios::out | std::ios::binary);
    std::vector<char> page(4096);
    for (std::streamoff off = 0; io.read(page.data(), 4096); off += 4096) {
      if (!is_copy(page.data())) continue;
      io.seekp(off + 100);
      io.put(static_cast<char>(page[100] ^ 0x5a));
      io.seekg(off + 4096);
      ++flipped;
    }
  }
  return flipped;
}

}  // namespace pheaptest
