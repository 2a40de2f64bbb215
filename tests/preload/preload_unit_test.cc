// The preload library's parts that run without preloading: glibc's entry
// points found by symbol table lookup, and the statistics record read back
// from a store.
#include <dlfcn.h>

#include <cstring>
#include <filesystem>

#include <gtest/gtest.h>

#include "heap/persistent_heap.h"
#include "heap/preload_stats.h"
#include "preload/libc_syms.h"

namespace {

TEST(LibcSyms, FindsGlibcsOwnEntryPoints) {
  void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  ASSERT_NE(libc, nullptr);
  const auto& l = pheap::preload::Libc();
  EXPECT_EQ(reinterpret_cast<void*>(l.malloc), dlsym(libc, "__libc_malloc"));
  EXPECT_EQ(reinterpret_cast<void*>(l.free), dlsym(libc, "__libc_free"));
  EXPECT_EQ(reinterpret_cast<void*>(l.realloc), dlsym(libc, "__libc_realloc"));
  EXPECT_EQ(reinterpret_cast<void*>(l.memalign), dlsym(libc, "__libc_memalign"));
  EXPECT_EQ(reinterpret_cast<void*>(l.malloc_usable_size), dlsym(libc, "malloc_usable_size"));
  EXPECT_EQ(reinterpret_cast<void*>(l.pthread_create), dlsym(libc, "pthread_create"));
  dlclose(libc);
  // And they work as a pair.
  void* p = l.memalign(64, 100);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
  EXPECT_GE(l.malloc_usable_size(p), 100u);
  l.free(p);
}

class StatsReader : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pheap-preload-unit-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<pheap::PageStore> Store() {
    pheap::PageStoreOptions o;
    o.read_only = true;
    o.create_if_missing = false;
    auto s = pheap::PageStore::Open(dir_, "h", o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }

  std::string dir_;
};

TEST_F(StatsReader, ReadsTheRecordOfTheDurableImage) {
  auto options = pheap::PersistentHeap::OptionsFromConfig(("dir=" + dir_ + ";size=64M").c_str());
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  auto h = pheap::PersistentHeap::Open("h", *options);
  if (!h.ok() && h.status().code() == pheap::Status::Code::kUnsupported) GTEST_SKIP() << h.status().ToString();
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  ASSERT_TRUE((*h)->Commit().ok());
  {
    auto store = Store();
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(pheap::ReadPreloadStats(*store).status().code(), pheap::Status::Code::kNotFound);
  }
  // A record that straddles a page boundary, to read two pages.
  auto* block = static_cast<uint8_t*>((*h)->allocator().AlignedAlloc(4096, 8192));
  ASSERT_NE(block, nullptr);
  auto* s = reinterpret_cast<pheap::PreloadStats*>(block + 4096 - 40);
  std::memset(s, 0, sizeof(*s));
  s->magic = pheap::kPreloadStatsMagic;
  s->version = 1;
  s->commits = 42;
  s->pause_p50_ns = 1000;
  s->pause_p99_ns = 5000;
  std::strcpy(s->program, "prog");
  ASSERT_TRUE((*h)->SetRoot(pheap::kPreloadStatsRoot, s, pheap::kPreloadStatsType).ok());
  ASSERT_TRUE((*h)->Close().ok());
  auto store = Store();
  ASSERT_NE(store, nullptr);
  auto r = pheap::ReadPreloadStats(*store);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->commits, 42u);
  EXPECT_EQ(r->pause_p50_ns, 1000u);
  EXPECT_EQ(r->pause_p99_ns, 5000u);
  EXPECT_STREQ(r->program, "prog");
}

}  // namespace
