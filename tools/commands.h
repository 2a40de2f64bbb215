// The subcommands of the `pheap` tool, one function each.
#pragma once

#include <string>

namespace pheap::tools {

// Shows persistence and recovery; 0 when every check held.
int RunDemo(const std::string& dir, bool keep);
// Prints what the store of heap `name` under `dir` holds.
int RunInspect(const std::string& dir, const std::string& name, bool json, bool verify);

}  // namespace pheap::tools
