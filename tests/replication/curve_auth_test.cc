// Key files, the allow-list, and the loopback rule.
#include "replication/curve_auth.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "peer_test_util.h"

namespace pheap {
namespace {

TEST(CurveAuth, GenerateWritesSecretKeyPrivately) {
  testing::TempDir d;
  const std::string dir = d.path() + "/keys";
  ASSERT_TRUE(GenerateKeyPair(dir).ok());
  struct stat st{};
  ASSERT_EQ(stat((dir + "/peer.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(std::filesystem::is_directory(dir + "/authorized"));
  auto kp = LoadKeyPair(dir);
  ASSERT_TRUE(kp.ok()) << kp.status().ToString();
  auto pub = LoadPublicKey(dir + "/peer.pub");
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(kp->public_z85, *pub);  // the public key derives from the secret one
  EXPECT_EQ(GenerateKeyPair(dir).code(), Status::Code::kBusy);  // never overwrites
}

TEST(CurveAuth, AuthorizedKeysAreLoadedAndCheckedIndividually) {
  testing::TempDir d;
  const std::string a = d.path() + "/a", b = d.path() + "/b";
  ASSERT_TRUE(GenerateKeyPair(a).ok());
  ASSERT_TRUE(GenerateKeyPair(b).ok());
  std::filesystem::copy_file(b + "/peer.pub", a + "/authorized/b.pub");
  auto keys = LoadAuthorizedKeys(a);
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 1u);
  std::ofstream(a + "/authorized/junk.pub") << "not a key\n";
  auto bad = LoadAuthorizedKeys(a);
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("junk.pub"), std::string::npos);
}

TEST(CurveAuth, ClientKeysPreferServerPub) {
  testing::TempDir d;
  const std::string c = d.path() + "/c", s = d.path() + "/s";
  ASSERT_TRUE(GenerateKeyPair(c).ok());
  ASSERT_TRUE(GenerateKeyPair(s).ok());
  auto shared = LoadClientKeys(c);
  ASSERT_TRUE(shared.ok());
  EXPECT_EQ(shared->server_public_z85, shared->own.public_z85);
  std::filesystem::copy_file(s + "/peer.pub", c + "/server.pub");
  auto k = LoadClientKeys(c);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->server_public_z85, *LoadPublicKey(s + "/peer.pub"));
}

TEST(CurveAuth, LoopbackEndpoints) {
  EXPECT_TRUE(IsLoopbackEndpoint("ipc:///tmp/x"));
  EXPECT_TRUE(IsLoopbackEndpoint("inproc://x"));
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://127.0.0.1:7400"));
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://localhost:7400"));
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://[::1]:7400"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://0.0.0.0:7400"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://*:7400"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://10.1.2.3:7400"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://localhost.example.com:7400"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://127.0.0.1:1;10.0.0.1:7400"));
}

}  // namespace
}  // namespace pheap
