#include "base/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

namespace pheap {
namespace {

const std::vector<std::string> kKeys = {"dir", "size", "peers", "check"};

TEST(Config, ParsesPairsAndTrims) {
  auto c = Config::Parse(" dir = /tmp/x ; size=64M;;peers=a:1, b:2 ", kKeys);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->GetOr("dir", ""), "/tmp/x");
  EXPECT_EQ(c->GetSize("size", 0).value(), uint64_t{64} << 20);
  EXPECT_EQ(SplitList(*c->Get("peers")), (std::vector<std::string>{"a:1", "b:2"}));
}

TEST(Config, RejectsUnknownKeyByName) {
  auto c = Config::Parse("dri=/tmp", kKeys);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("'dri'"), std::string::npos);
}

TEST(Config, RejectsItemWithoutEquals) {
  EXPECT_FALSE(Config::Parse("dir", kKeys).ok());
  EXPECT_FALSE(Config::Parse("=x", kKeys).ok());
}

TEST(Config, StringWinsOverEnvironment) {
  setenv("PHEAP_DIR", "/from/env", 1);
  setenv("PHEAP_SIZE", "2G", 1);
  auto c = Config::Parse("dir=/from/string", kKeys);
  unsetenv("PHEAP_DIR");
  unsetenv("PHEAP_SIZE");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->GetOr("dir", ""), "/from/string");
  EXPECT_EQ(c->GetSize("size", 0).value(), uint64_t{2} << 30);
}

TEST(Config, DefaultsApplyWhereNothingElseSetsAKey) {
  setenv("PHEAP_SIZE", "2G", 1);
  auto c = Config::Parse("dir=/from/string", kKeys, {{"dir", "/default"}, {"size", "1M"}, {"check", "1"}});
  unsetenv("PHEAP_SIZE");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->GetOr("dir", ""), "/from/string");
  EXPECT_EQ(c->GetSize("size", 0).value(), uint64_t{2} << 30);
  EXPECT_TRUE(c->GetBool("check", false).value());
}

TEST(Config, AnErrorNamesTheSettingAsWritten) {
  setenv("PHEAP_CHECK", "maybe", 1);
  auto c = Config::Parse("size=12Q", kKeys);
  unsetenv("PHEAP_CHECK");
  ASSERT_TRUE(c.ok());
  EXPECT_NE(c->GetBool("check", false).status().message().find("PHEAP_CHECK='maybe'"), std::string::npos);
  EXPECT_NE(c->GetSize("size", 0).status().message().find("config size='12Q'"), std::string::npos);
}

TEST(Config, BadValuesAreErrors) {
  auto c = Config::Parse("size=12Q;check=maybe", kKeys);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->GetSize("size", 0).ok());
  EXPECT_FALSE(c->GetBool("check", false).ok());
  auto d = Config::Parse("size=-1", kKeys);
  EXPECT_FALSE(d->GetSize("size", 0).ok());
}

}  // namespace
}  // namespace pheap
