// Stores and uses code pointers in a heap, as a program would.
//   code_pointer_worker create DIR   stable addresses; a polymorphic object
//                                    and a function pointer become roots
//   code_pointer_worker use DIR      stable addresses; calls both: exit 0 if
//                                    they answer as stored
//   code_pointer_worker open DIR     no re-exec; opens with code_check=error
//                                    and prints the error: exit 10 if refused
//   code_pointer_worker plain DIR    no re-exec; a heap of plain data only
//   code_pointer_worker declared DIR no re-exec; plain data, and the C
//                                    interface declares code pointers
// Built twice (OTHER_BUILD changes the code, hence the build id).
#include <pheap/heap.hpp>

#include <cstdio>
#include <cstring>
#include <string>

namespace {

struct Shape {
  virtual ~Shape() = default;
  virtual long area() const = 0;
};
struct Square : Shape {
  explicit Square(long s) : side(s) {}
  long area() const override {
#ifdef OTHER_BUILD
    return side * side + 1;
#else
    return side * side;
#endif
  }
  long side;
};
long Triple(long x) { return 3 * x; }
struct Callback {
  long (*fn)(long);
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  std::string mode = argv[1], cfg = std::string("dir=") + argv[2] + ";size=64M;code_check=error";
  try {
    const bool stable = mode == "create" || mode == "use";
    if (stable) pheap::exec_with_stable_addresses(argv);
    pheap::Heap heap("code", cfg);
    if (mode == "plain" || mode == "declared") {
      heap.set_root("n", heap.make<long>(42));
      if (mode == "declared" && pheap_holds_code(heap.c_handle()) != 0) return 6;
      heap.commit();
      return 0;
    }
    if (mode == "create") {
      heap.set_root<Shape>("shape", heap.make<Square>(7));
      heap.set_root("callback", heap.make<Callback>(Callback{&Triple}));
      heap.commit();
      return 0;
    }
    Shape* s = heap.root<Shape>("shape");
    Callback* c = heap.root<Callback>("callback");
    if (s == nullptr || c == nullptr) return 4;
    long a = s->area(), t = c->fn(5);
    std::printf("area %ld, callback %ld\n", a, t);
    return a == 49 && t == 15 ? 0 : 5;
  } catch (const pheap::error& e) {
    std::printf("%s\n", e.what());
    return mode == "open" && std::strstr(e.what(), "code pointers") != nullptr ? 10 : 1;
  }
}
