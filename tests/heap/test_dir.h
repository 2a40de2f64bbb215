// A temporary store directory per test, removed afterwards.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>

namespace pheaptest {

class TestDir {
 public:
  TestDir() {
    char tmpl[] = "/tmp/pheap-heap-XXXXXX";
    path_ = mkdtemp(tmpl) ? tmpl : "";
  }
  ~TestDir() { std::filesystem::remove_all(path_); }
  TestDir(const TestDir&) = delete;
  TestDir& operator=(const TestDir&) = delete;
  const std::string& path() const { return path_; }
  // "dir=PATH;size=SIZE" plus `extra`.
  std::string config(const std::string& extra = "", const std::string& size = "256M") const {
    return "dir=" + path_ + ";size=" + size + (extra.empty() ? "" : ";" + extra);
  }

 private:
  std::string path_;
};

}  // namespace pheaptest
