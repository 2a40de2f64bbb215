#include "base/config.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include <unistd.h>

namespace pheap {
namespace {

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\n");
  return s.substr(b, e - b + 1);
}

}  // namespace

std::string EnvName(const std::string& key) {
  std::string n = "PHEAP_";
  for (char c : key) n += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return n;
}

Result<Config> Config::Parse(const char* text, const std::vector<std::string>& known, const ConfigDefaults& defaults) {
  Config c;
  c.values_ = defaults;
  // Environment values are validated like string values, so a typo in
  // PHEAP_SIZE fails as loudly as one in the config string.
  for (const auto& k : known) {
    if (const char* v = std::getenv(EnvName(k).c_str())) {
      c.values_[k] = v;
      c.from_env_.insert(k);
    }
  }
  if (text == nullptr) return c;
  std::string s(text);
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = s.find(';', pos);
    if (end == std::string::npos) end = s.size();
    std::string item = Trim(s.substr(pos, end - pos));
    pos = end + 1;
    if (item.empty()) continue;
    size_t eq = item.find('=');
    if (eq == std::string::npos)
      return Status::InvalidArgument("config item '" + item + "' has no '=': write key=value");
    std::string key = Trim(item.substr(0, eq));
    if (key.empty()) return Status::InvalidArgument("config item '" + item + "' has an empty key");
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      return Status::InvalidArgument("unknown config key '" + key + "' (known: " + list + ")");
    }
    c.values_[key] = Trim(item.substr(eq + 1));
    c.from_env_.erase(key);
  }
  return c;
}

std::string Config::SettingName(const std::string& key) const {
  return from_env_.count(key) != 0 ? EnvName(key) : "config " + key;
}

std::optional<std::string> Config::Get(const std::string& key) const {
  auto it = values_.find(key);
  if (it != values_.end()) return it->second;
  return std::nullopt;
}

std::string Config::GetOr(const std::string& key, const std::string& dflt) const {
  auto v = Get(key);
  return v ? *v : dflt;
}

Result<uint64_t> Config::GetU64(const std::string& key, uint64_t dflt) const {
  auto v = Get(key);
  if (!v) return dflt;
  char* end = nullptr;
  errno = 0;
  unsigned long long n = std::strtoull(v->c_str(), &end, 0);
  if (v->empty() || *end != '\0' || errno != 0 || (*v)[0] == '-')
    return Status::InvalidArgument(SettingName(key) + "='" + *v + "' is not a non-negative integer");
  return static_cast<uint64_t>(n);
}

Result<uint64_t> Config::GetSize(const std::string& key, uint64_t dflt) const {
  auto v = Get(key);
  if (!v) return dflt;
  char* end = nullptr;
  errno = 0;
  unsigned long long n = std::strtoull(v->c_str(), &end, 0);
  if (v->empty() || end == v->c_str() || errno != 0 || (*v)[0] == '-')
    return Status::InvalidArgument(SettingName(key) + "='" + *v + "' is not a size (e.g. 4096, 64M, 8G)");
  unsigned shift = 0;
  std::string suffix(end);
  if (suffix == "K" || suffix == "k" || suffix == "KiB") shift = 10;
  else if (suffix == "M" || suffix == "m" || suffix == "MiB") shift = 20;
  else if (suffix == "G" || suffix == "g" || suffix == "GiB") shift = 30;
  else if (suffix == "T" || suffix == "t" || suffix == "TiB") shift = 40;
  else if (!suffix.empty())
    return Status::InvalidArgument(SettingName(key) + "='" + *v + "' has an unknown suffix (use K, M, G or T)");
  if (shift > 0 && n > (~0ull >> shift))
    return Status::InvalidArgument(SettingName(key) + "='" + *v + "' is larger than 64 bits");
  return static_cast<uint64_t>(n) << shift;
}

Result<bool> ParseBool(const std::string& name, const std::string& v) {
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return false;
  return Status::InvalidArgument(name + "='" + v + "' is not a boolean (use 1 or 0)");
}

Result<bool> Config::GetBool(const std::string& key, bool dflt) const {
  auto v = Get(key);
  if (!v) return dflt;
  return ParseBool(SettingName(key), *v);
}

std::vector<std::string> UnknownEnvironment(const std::vector<std::string>& known,
                                            const std::vector<std::string>& other) {
  std::vector<std::string> unknown;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string var(*e);
    var = var.substr(0, var.find('='));
    if (!var.starts_with("PHEAP_")) continue;
    const bool is_key = std::any_of(known.begin(), known.end(), [&](const std::string& k) { return EnvName(k) == var; });
    if (!is_key && std::find(other.begin(), other.end(), var) == other.end()) unknown.push_back(var);
  }
  return unknown;
}

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    std::string item = Trim(s.substr(pos, end - pos));
    if (!item.empty()) out.push_back(item);
    pos = end + 1;
  }
  return out;
}

}  // namespace pheap
