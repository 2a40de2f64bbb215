// Code pointers across processes: with stable addresses a polymorphic object
// and a function pointer work in the next run of the same build; a run at
// another load address, or another build, is refused when code_check=error.
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "tests/support/test_util.h"

namespace {

std::string g_worker, g_other;

int RunWorker(const std::string& exe, const std::string& mode, const std::string& dir, std::string* out) {
  std::string cmd = exe + " " + mode + " " + dir + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  char buf[1024];
  out->clear();
  while (fgets(buf, sizeof(buf), p) != nullptr) *out += buf;
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool AslrOn() {
  std::ifstream f("/proc/sys/kernel/randomize_va_space");
  int v = 0;
  f >> v;
  return v != 0;
}

TEST(CodePointers, SurviveARestartWithStableAddresses) {
  pheaptest::TempDir dir;
  std::string out;
  ASSERT_EQ(RunWorker(g_worker, "create", dir.path(), &out), 0) << out;
  ASSERT_EQ(RunWorker(g_worker, "use", dir.path(), &out), 0) << out;
  EXPECT_NE(out.find("area 49, callback 15"), std::string::npos) << out;
}

TEST(CodePointers, AnotherLoadAddressIsRefused) {
  if (!AslrOn()) GTEST_SKIP() << "address randomization is off on this machine";
  pheaptest::TempDir dir;
  std::string out;
  ASSERT_EQ(RunWorker(g_worker, "create", dir.path(), &out), 0) << out;
  EXPECT_EQ(RunWorker(g_worker, "open", dir.path(), &out), 10) << out;
  EXPECT_NE(out.find("loads at"), std::string::npos) << out;
}

TEST(CodePointers, AnotherBuildIsRefused) {
  pheaptest::TempDir dir;
  std::string out;
  ASSERT_EQ(RunWorker(g_worker, "create", dir.path(), &out), 0) << out;
  EXPECT_EQ(RunWorker(g_other, "open", dir.path(), &out), 10) << out;
  EXPECT_NE(out.find("another build"), std::string::npos) << out;
}

// A heap that holds no code pointers opens in any build at any address,
// without a word; declared through the C interface, it is checked.
TEST(CodePointers, OnlyHeapsThatHoldThemAreChecked) {
  pheaptest::TempDir dir;
  std::string out;
  ASSERT_EQ(RunWorker(g_worker, "plain", dir.path(), &out), 0) << out;
  EXPECT_EQ(RunWorker(g_other, "open", dir.path(), &out), 4) << "opens, and finds no shape: " << out;
  EXPECT_EQ(out.find("code pointers"), std::string::npos) << out;
  pheaptest::TempDir declared;
  ASSERT_EQ(RunWorker(g_worker, "declared", declared.path(), &out), 0) << out;
  EXPECT_EQ(RunWorker(g_other, "open", declared.path(), &out), 10) << out;
  EXPECT_NE(out.find("another build"), std::string::npos) << out;
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc != 3) return 2;
  g_worker = argv[1];
  g_other = argv[2];
  return RUN_ALL_TESTS();
}
