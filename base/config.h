// Configuration as "key=value;key=value", each key also read from the
// environment as PHEAP_<KEY> (upper case). The string wins over the
// environment, which wins over the defaults a caller passes in (the preload
// library's, which differ from a program's). A list value (peers) is
// comma-separated. This is the only reader of PHEAP_* settings.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"

namespace pheap {

// Values by key, used where neither the string nor the environment sets one.
using ConfigDefaults = std::map<std::string, std::string>;

class Config {
 public:
  // Parses `text` (may be null or empty). Every key must be one of `known`;
  // an unknown key, an empty key or a pair without '=' is an error naming it.
  // REQUIRES: every key of `defaults` is one of `known`.
  static Result<Config> Parse(const char* text, const std::vector<std::string>& known,
                              const ConfigDefaults& defaults = {});

  // The value of `key` from the string, else from PHEAP_<KEY>, else nothing.
  std::optional<std::string> Get(const std::string& key) const;
  std::string GetOr(const std::string& key, const std::string& dflt) const;
  // Sizes accept a K, M, G or T suffix (powers of 1024).
  Result<uint64_t> GetSize(const std::string& key, uint64_t dflt) const;
  Result<uint64_t> GetU64(const std::string& key, uint64_t dflt) const;
  Result<bool> GetBool(const std::string& key, bool dflt) const;
  void Set(const std::string& key, const std::string& value) {
    values_[key] = value;
    from_env_.erase(key);
  }

 private:
  // How an error names the setting: as the user wrote it.
  std::string SettingName(const std::string& key) const;

  std::map<std::string, std::string> values_;
  std::set<std::string> from_env_;  // keys whose value is PHEAP_<KEY>'s
};

// The environment variable of config key `key`: PHEAP_<KEY>.
std::string EnvName(const std::string& key);

// The one reading of a boolean setting: 1, true, yes, on / 0, false, no,
// off. `name` names the setting in the error (a key, or PHEAP_<KEY>).
Result<bool> ParseBool(const std::string& name, const std::string& value);

// The PHEAP_* variables of the environment that name none of `known` (keys
// as in the config string) nor any of `other` (full variable names read
// elsewhere, e.g. PHEAP_LOG): each is most likely a misspelt key.
std::vector<std::string> UnknownEnvironment(const std::vector<std::string>& known,
                                            const std::vector<std::string>& other);

// Splits "a,b,c" into its non-empty parts.
std::vector<std::string> SplitList(const std::string& s);

}  // namespace pheap
