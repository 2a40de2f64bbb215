// The code identity of this process (main executable's build id and load
// bias) and the check against the one a heap recorded. Code pointers stored
// in a heap (vtables, function pointers) are valid only when both match.
#pragma once

#include <string>

#include "base/status.h"
#include "heap/superblock.h"

namespace pheap {

enum class CodeCheck { kOff, kWarn, kError };

// This process's identity (computed once).
const CodeIdentity& CurrentCodeIdentity();

// Compares `recorded` (zeroed: never recorded) with this process. A
// different build or load bias is an error or a warning per `mode`; the
// message says which differs and how to get stable addresses.
Status CheckCodeIdentity(const std::string& heap, const CodeIdentity& recorded, CodeCheck mode);

// Re-executes the program with ADDR_NO_RANDOMIZE unless it already runs so,
// so code addresses repeat from run to run of the same build. Returns only if
// already stable (0) or on failure (-1, errno set). argv as given to main.
int ExecWithStableAddresses(char** argv);

}  // namespace pheap
