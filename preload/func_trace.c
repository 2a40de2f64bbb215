// Function-entry recorder for preload/gen_resident_text, preloaded after a
// libpheap_preload.so built with -finstrument-functions. From the return
// of the function at offset TRACE_ARM_AT (hex, in the library that holds
// it) on, it notes each function entered once, and at exit writes their
// offsets, one per line, to TRACE_OUT. Not part of any build.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define NO_TRACE __attribute__((no_instrument_function))
enum { kMax = 16384 };
static void* seen[kMax];
static int nseen, armed;

NO_TRACE static uintptr_t Offset(void* fn) {
  Dl_info d;
  return dladdr(fn, &d) != 0 ? (uintptr_t)fn - (uintptr_t)d.dli_fbase : 0;
}

NO_TRACE void __cyg_profile_func_enter(void* fn, void* site) {
  (void)site;
  if (!armed) return;
  for (int i = 0; i < nseen; ++i)
    if (seen[i] == fn) return;
  if (nseen < kMax) seen[nseen++] = fn;
}

NO_TRACE void __cyg_profile_func_exit(void* fn, void* site) {
  (void)site;
  static uintptr_t arm_at;
  if (armed) return;
  if (arm_at == 0) arm_at = strtoull(getenv("TRACE_ARM_AT") ? getenv("TRACE_ARM_AT") : "0", NULL, 16);
  if (Offset(fn) == arm_at) armed = 1;
}

NO_TRACE __attribute__((destructor)) static void Dump(void) {
  const char* path = getenv("TRACE_OUT");
  FILE* f = path != NULL ? fopen(path, "a") : NULL;
  if (f == NULL) return;
  for (int i = 0; i < nseen; ++i) fprintf(f, "%016lx\n", (unsigned long)Offset(seen[i]));
  fclose(f);
}
