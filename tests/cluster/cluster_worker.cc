// The writer the cluster tests run against real peers, through the C
// interface only. It applies the heap oracle's operations (oracle_model.h)
// to a list under the root "state", a batch per commit, from one thread.
//
//   cluster_worker run   NAME CONFIG SEED ACK_FD  commits in a loop until killed;
//        reports "open N", "committing N", "durable N", "failed N" on ACK_FD
//        (N: operations applied), a failure's reason on stderr
//   cluster_worker step  NAME CONFIG SEED         one commit per line read on
//        stdin; answers "open N E", then per commit "durable N E" or
//        "failed N REASON" on stdout (E: the epoch)
//   cluster_worker check NAME CONFIG SEED         opens the heap, checks it
//        against the model, prints "ops N epoch E" (exit 0) or what is wrong
//        (exit 1); leaves without committing
#include <pheap/pheap.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tests/heap/oracle_apply.h"

using namespace pheaptest::oracle;

namespace {

pheap* g_heap = nullptr;
State* g_state = nullptr;

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "cluster_worker: %s: %s\n", what, pheap_last_error());
  std::fflush(stderr);
  _exit(1);
}

void Say(int fd, const std::string& line) {
  std::string l = line + "\n";
  if (write(fd, l.data(), l.size()) != static_cast<ssize_t>(l.size())) _exit(3);
}

void ApplyNext() {
  if (!pheaptest::oracle::ApplyNext(g_heap, g_state)) Die("malloc");
}

// A batch of 1..24 operations, chosen by the seed and the operation count.
void ApplyBatch() {
  for (uint64_t n = 1 + Mix(g_state->seed ^ ~g_state->ops) % 24; n > 0; --n) ApplyNext();
}

void OpenOrCreate(const char* name, const char* config, uint64_t seed) {
  g_heap = pheap_open(name, config);
  if (g_heap == nullptr) Die("open");
  g_state = static_cast<State*>(pheap_root(g_heap, "state"));
  if (g_state != nullptr) return;
  g_state = static_cast<State*>(pheap_calloc(g_heap, 1, sizeof(State)));
  if (g_state == nullptr) Die("calloc");
  g_state->seed = seed;
  if (pheap_set_root(g_heap, "state", g_state) != 0) Die("set_root");
}

[[noreturn]] void Run(int ack) {
  Say(ack, "open " + std::to_string(g_state->ops));
  for (;;) {
    ApplyBatch();
    const std::string ops = std::to_string(g_state->ops);
    Say(ack, "committing " + ops);
    if (pheap_commit(g_heap) < 0) {
      std::fprintf(stderr, "cluster_worker: commit of %s operations: %s\n", ops.c_str(), pheap_last_error());
      Say(ack, "failed " + ops);
      usleep(50000);
      continue;
    }
    Say(ack, "durable " + ops);
  }
}

int Step() {
  Say(1, "open " + std::to_string(g_state->ops) + " " + std::to_string(pheap_epoch(g_heap)));
  char cmd[64];
  while (std::fgets(cmd, sizeof(cmd), stdin) != nullptr) {
    ApplyBatch();
    const std::string ops = std::to_string(g_state->ops);
    int64_t e = pheap_commit(g_heap);
    if (e < 0) {
      std::string why = pheap_last_error();
      for (char& c : why)
        if (c == '\n') c = ' ';
      Say(1, "failed " + ops + " " + why);
    } else {
      Say(1, "durable " + ops + " " + std::to_string(e));
    }
  }
  return 0;
}

// True if the heap holds exactly the model's list after its recorded
// number of operations; else prints what is wrong.
bool CheckState(uint64_t seed) {
  if (g_state == nullptr) return true;
  if (g_state->seed != seed) {
    std::printf("the root holds seed %llu, not %llu\n", static_cast<unsigned long long>(g_state->seed),
                static_cast<unsigned long long>(seed));
    return false;
  }
  std::vector<uint64_t> model = Replay(seed, g_state->ops);
  const Node* n = g_state->head;
  for (size_t i = 0; i < model.size(); ++i, n = n->next) {
    if (n == nullptr || n->k != model[i] || n->size != OpFor(seed, model[i], 0).size) {
      std::printf("after %llu operations node %zu should be op %llu\n",
                  static_cast<unsigned long long>(g_state->ops), i, static_cast<unsigned long long>(model[i]));
      return false;
    }
    for (uint64_t b = 0; b < n->size; b += 61) {
      if (n->payload[b] != PayloadByte(n->k, b)) {
        const uint8_t* at = n->payload + b;
        const auto* page = reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(at) & ~uintptr_t{4095});
        bool zero = true;
        for (int z = 0; z < 4096 && zero; ++z) zero = page[z] == 0;
        std::printf("node %zu (op %llu of %llu) byte %llu at %p is %u, should be %u (page %s)\n", i,
                    static_cast<unsigned long long>(n->k), static_cast<unsigned long long>(n->size),
                    static_cast<unsigned long long>(b), static_cast<const void*>(at), *at, PayloadByte(n->k, b),
                    zero ? "all zero" : "not all zero");
        return false;
      }
    }
  }
  if (n != nullptr || g_state->count != model.size()) {
    std::printf("the list is longer than the model's %zu nodes (count %llu)\n", model.size(),
                static_cast<unsigned long long>(g_state->count));
    return false;
  }
  void* p = pheap_malloc(g_heap, 12345);
  if (p == nullptr) {
    std::printf("cannot allocate after recovery: %s\n", pheap_last_error());
    return false;
  }
  pheap_free(g_heap, p);
  return true;
}

int Check(const char* name, const char* config, uint64_t seed) {
  g_heap = pheap_open(name, config);
  if (g_heap == nullptr) {
    std::printf("open: %s\n", pheap_last_error());
    return 1;
  }
  g_state = static_cast<State*>(pheap_root(g_heap, "state"));
  const bool ok = CheckState(seed);
  if (ok) {
    std::printf("ops %llu epoch %lld\n", static_cast<unsigned long long>(g_state ? g_state->ops : 0),
                static_cast<long long>(pheap_epoch(g_heap)));
  }
  std::fflush(stdout);
  _exit(ok ? 0 : 1);  // no close: closing would commit a new epoch
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IONBF, 0);
  if (argc < 5) {
    std::fprintf(stderr, "usage: cluster_worker run|step|check NAME CONFIG SEED [ACK_FD]\n");
    return 2;
  }
  const std::string mode = argv[1];
  const uint64_t seed = std::strtoull(argv[4], nullptr, 0);
  if (mode == "check") return Check(argv[2], argv[3], seed);
  OpenOrCreate(argv[2], argv[3], seed);
  if (mode == "step") return Step();
  if (mode == "run" && argc == 6) Run(std::atoi(argv[5]));
  std::fprintf(stderr, "cluster_worker: unknown mode %s\n", argv[1]);
  return 2;
}
