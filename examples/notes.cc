// notes: a persistent notebook. Its std::map lives in a pheap heap, so the
// notes are simply there the next time the program runs, even after kill -9.
//
//   notes add "buy milk"     notes list     notes del 3     notes fill 100000
//
// PHEAP_DIR chooses where the heap is stored (default ./.pheap).
#include <pheap/allocator.hpp>
#include <pheap/heap.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

using String = std::basic_string<char, std::char_traits<char>, pheap::allocator<char>>;
using NoteMap = std::map<uint64_t, String, std::less<uint64_t>,
                         pheap::allocator<std::pair<const uint64_t, String>>>;

// The one root: everything else hangs off it.
struct Notebook {
  explicit Notebook(const pheap::allocator<char>& a) : notes(a) {}
  uint64_t next_id = 1;
  NoteMap notes;
};

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: notes add TEXT | list | del ID | fill N\n");
    return 2;
  }
  try {
    pheap::Heap heap("notes");
    pheap::allocator<char> alloc(heap);
    Notebook* book = heap.find_or_make<Notebook>("notebook", alloc);
    std::string cmd = argv[1];
    if (cmd == "add" && argc == 3) {
      uint64_t id = book->next_id++;
      book->notes.emplace(id, String(argv[2], alloc));
      int64_t epoch = heap.commit();
      std::printf("note %llu saved (epoch %lld)\n", static_cast<unsigned long long>(id),
                  static_cast<long long>(epoch));
    } else if (cmd == "list") {
      for (const auto& [id, text] : book->notes)
        std::printf("%4llu  %s\n", static_cast<unsigned long long>(id), text.c_str());
      std::printf("(%zu notes, epoch %lld)\n", book->notes.size(),
                  static_cast<long long>(heap.durable_epoch()));
    } else if (cmd == "del" && argc == 3) {
      size_t n = book->notes.erase(std::strtoull(argv[2], nullptr, 10));
      heap.commit();
      std::printf("%s\n", n ? "deleted" : "no such note");
    } else if (cmd == "fill" && argc == 3) {
      // Many notes, committed every 1000: kill -9 at any moment keeps a
      // prefix that ends at a multiple of 1000 after the starting count.
      uint64_t n = std::strtoull(argv[2], nullptr, 10);
      for (uint64_t i = 0; i < n; ++i) {
        uint64_t id = book->next_id++;
        book->notes.emplace(id, String(("note number " + std::to_string(id)).c_str(), alloc));
        if ((i + 1) % 1000 == 0) heap.commit();
      }
      heap.commit();
      std::printf("%zu notes\n", book->notes.size());
    } else {
      std::fprintf(stderr, "usage: notes add TEXT | list | del ID | fill N\n");
      return 2;
    }
  } catch (const pheap::error& e) {
    std::fprintf(stderr, "notes: %s\n", e.what());
    return 1;
  }
  return 0;
}
