// ThreadSanitizer cannot see the synchronisation inside libzmq (built
// without TSan: its lock-free pipes hand messages between the caller's
// thread and ZeroMQ's I/O threads), so every message ZeroMQ passes looks
// like a race; CURVE's decryption (libsodium, called from those threads)
// likewise. Reports with either library in their stack are suppressed;
// races in pheap's own code are still reported.
extern "C" const char* __tsan_default_suppressions() {
  return "race:libzmq.so\n"
         "race:libsodium.so\n"
         "called_from_lib:libzmq.so\n"
         "called_from_lib:libsodium.so\n";
}
