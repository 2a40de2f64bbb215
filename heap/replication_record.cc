#include "heap/replication_record.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "base/os.h"
#include "store/log_file.h"

namespace pheap {

namespace {

constexpr const char* kFirstLine = "pheap-replication 1";

bool ParseU32(const std::string& s, uint32_t* out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size() && *out != 0;
}

}  // namespace

Result<std::optional<ReplicationRecord>> ReadReplicationRecord(const std::string& heap_dir) {
  const std::string path = heap_dir + "/" + kReplicationFileName;
  int fd = os().open(path.c_str(), O_RDONLY | O_CLOEXEC, 0);
  if (fd == -ENOENT || fd == -ENOTDIR) return std::optional<ReplicationRecord>();
  if (fd < 0) return Status::FromErrno("reading " + path, -fd);
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ReadFull(fd, buf, sizeof(buf), text.size());
    if (n < 0) {
      os().close(fd);
      return Status::FromErrno("reading " + path, static_cast<int>(-n));
    }
    text.append(buf, static_cast<size_t>(n));
    if (static_cast<size_t>(n) < sizeof(buf) || text.size() > (uint64_t{1} << 20)) break;
  }
  os().close(fd);

  auto bad = [&](size_t line, const std::string& what) {
    return Status::Corruption(
        fmt::format("{} line {}: {}: fix the file, or remove it and open the heap with its peers", path, line, what));
  };
  ReplicationRecord r;
  size_t at = 0, line = 0;
  bool have_version = false;
  while (at < text.size()) {
    size_t nl = text.find('\n', at);
    if (nl == std::string::npos) return bad(line + 1, "the file ends inside a line");
    const std::string l = text.substr(at, nl - at);
    at = nl + 1;
    ++line;
    if (line == 1) {
      if (l != kFirstLine) return bad(line, fmt::format("'{}' is not '{}'", l, kFirstLine));
      have_version = true;
      continue;
    }
    const size_t eq = l.find('=');
    if (eq == std::string::npos) return bad(line, fmt::format("'{}' is not key=value", l));
    const std::string key = l.substr(0, eq), value = l.substr(eq + 1);
    if (key == "peers") r.replication.peers = SplitList(value);
    else if (key == "replicas" && ParseU32(value, &r.replication.replicas)) continue;
    else if (key == "quorum" && ParseU32(value, &r.replication.quorum)) continue;
    else if (key == "keys") r.keys_dir = value;
    else return bad(line, fmt::format("'{}' is not a known key with a valid value", l));
  }
  if (!have_version) return bad(1, "the file is empty");
  const auto& c = r.replication;
  if (c.peers.empty() || c.replicas == 0 || c.quorum == 0 || c.replicas > c.peers.size() || c.quorum > c.replicas)
    return bad(line, "peers, replicas and quorum are missing or do not fit together");
  return std::optional<ReplicationRecord>(std::move(r));
}

Status WriteReplicationRecord(const std::string& heap_dir, const ReplicationRecord& r) {
  const std::string path = heap_dir + "/" + kReplicationFileName, tmp = path + ".tmp";
  std::string peers;
  for (const auto& p : r.replication.peers) peers += (peers.empty() ? "" : ",") + p;
  std::string text = fmt::format("{}\npeers={}\nreplicas={}\nquorum={}\n", kFirstLine, peers, r.replication.replicas,
                                 r.replication.quorum);
  if (!r.keys_dir.empty()) text += fmt::format("keys={}\n", r.keys_dir);
  int fd = os().open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno("writing " + tmp, -fd);
  int e = WriteFull(fd, text.data(), text.size(), 0);
  if (e == 0) e = os().fsync(fd);
  os().close(fd);
  if (e == 0) e = os().rename(tmp.c_str(), path.c_str());
  if (e < 0) {
    os().unlink(tmp.c_str());
    return Status::FromErrno("writing " + path, -e);
  }
  return SyncDirectory(heap_dir);
}

Status RemoveReplicationRecord(const std::string& heap_dir) {
  const std::string path = heap_dir + "/" + kReplicationFileName;
  int e = os().unlink(path.c_str());
  if (e == -ENOENT) return Status::Ok();
  if (e < 0) return Status::FromErrno("removing " + path, -e);
  return SyncDirectory(heap_dir);
}

bool SameReplicaSet(const ReplicationConfig& a, const ReplicationConfig& b) {
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  return sorted(a.peers) == sorted(b.peers) && a.replicas == b.replicas && a.quorum == b.quorum;
}

std::string DescribeReplication(const ReplicationConfig& c) {
  if (c.peers.empty()) return "no peers";
  std::string peers;
  for (const auto& p : c.peers) peers += (peers.empty() ? "" : ",") + p;
  return fmt::format("peers={} replicas={} quorum={}", peers, c.replicas, c.quorum);
}

}  // namespace pheap
