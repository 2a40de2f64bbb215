#!/usr/bin/env bash
# A program outside the project compiles against include/ with the system's
# C compiler, links libpheap.so, and its counter persists across runs.
# usage: outside_build_test.sh SOURCE_ROOT LIBPHEAP_DIR SANITIZERS
set -euo pipefail
src=$1 libdir=$2
if [ "${3:-none}" != none ]; then
  # A sanitizer-built libpheap.so needs its runtime loaded first, which an
  # outside program built with plain cc does not do: this is for release builds.
  echo "skipped: libpheap.so is built with -fsanitize=$3"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -std=c11 -Wall -Werror -I "$src/include" "$src/examples/counter.c" \
   -L "$libdir" -lpheap -Wl,-rpath,"$libdir" -o "$work/counter"
cd "$work"
for want in 1 2 3; do
  out=$(PHEAP_DIR="$work/store" PHEAP_SIZE=64M ./counter)
  echo "$out"
  case "$out" in "count = $want "*) ;; *) echo "expected count = $want"; exit 1 ;; esac
done
echo "1 passed, 0 failed"
