#include "heap/engine.h"

#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include <cstring>

#include "base/cgroup.h"
#include "base/log.h"
#include "base/os.h"
#include "heap/replication_record.h"
#include "replication/curve_auth.h"
#include "replication/replica_client.h"
#include "replication/replica_composite.h"
#include "store/compactor.h"

namespace pheap {

const std::vector<std::string>& Engine::ConfigKeys() {
  static const std::vector<std::string> kKeys = [] {
    std::vector<std::string> k = {"dir",           "size",          "base",          "tracking",
                                  "fault_threads", "prefetch_max",  "staging_max",   "staging_wait_ms",
                                  "staging_keep",  "salvage",       "log_file_size", "direct_write",
                                  "compact",       "compact_ratio", "keys",          "replica_timeout_ms",
                                  "restore",       "create",        "retain",        "direct_read"};
    k.push_back("replica_open_timeout_ms");  // the open's wait for k - W + 1 replicas (replica_timeout_ms: a commit's)
    for (const auto& r : ReplicationConfigKeys()) k.push_back(r);
    k.push_back("replication");  // keep or change the recorded replication (heap/replication_record.h)
    k.push_back("memory_max");   // the budget of resident heap pages (pager/evictor.h)
    k.push_back("memory_early_commit");  // commit early when the budget cannot be met otherwise
    return k;
  }();
  return kKeys;
}

Result<std::pair<uint64_t, uint64_t>> Engine::ParseRetain(const std::string& value) {
  auto bad = [&value] {
    return Status::InvalidArgument("config retain='" + value +
                                   "' is neither a count of epochs (retain=10) nor a time (retain=30s, 15m, 2h, 1d)");
  };
  size_t digits = 0;
  while (digits < value.size() && value[digits] >= '0' && value[digits] <= '9') ++digits;
  if (digits == 0 || digits > 12) return bad();
  const uint64_t n = std::stoull(value.substr(0, digits));
  const std::string unit = value.substr(digits);
  if (n == 0) return bad();
  if (unit.empty()) return std::pair<uint64_t, uint64_t>{n, 0};
  uint64_t seconds = 0;
  if (unit == "s") seconds = n;
  else if (unit == "m") seconds = n * 60;
  else if (unit == "h") seconds = n * 3600;
  else if (unit == "d") seconds = n * 86400;
  else return bad();
  return std::pair<uint64_t, uint64_t>{0, seconds * 1000000000};
}

Result<EngineOptions> Engine::OptionsFromConfig(const Config& config) {
  EngineOptions o;
  o.dir = config.GetOr("dir", o.dir);
  if (o.dir.empty()) return Status::InvalidArgument("config dir is empty: name a directory");
  auto size = config.GetSize("size", 0);
  if (!size.ok()) return size.status();
  o.size = *size;
  if (config.Get("size") && o.size == 0)
    return Status::InvalidArgument("config size=0: a heap needs at least one page (e.g. size=1G)");
  auto base = config.GetU64("base", 0);
  if (!base.ok()) return base.status();
  o.base = *base;
  if (auto t = config.Get("tracking")) {
    if (!ParseTrackingMode(t->c_str(), &o.pager.mode))
      return Status::InvalidArgument("config tracking='" + *t +
                                     "' is not one of auto, async-wp, sync-wp, mprotect, async-wp-user, hybrid-wp");
  }
  auto threads = config.GetU64("fault_threads", 2);
  if (!threads.ok()) return threads.status();
  if (*threads < 1 || *threads > 64)
    return Status::InvalidArgument("config fault_threads must be between 1 and 64");
  o.pager.fault_threads = static_cast<int>(*threads);
  auto prefetch = config.GetSize("prefetch_max", o.pager.prefetch_max);
  if (!prefetch.ok()) return prefetch.status();
  o.pager.prefetch_max = *prefetch;
  auto staging = config.GetSize("staging_max", o.pager.staging_max);
  if (!staging.ok()) return staging.status();
  o.pager.staging_max = *staging;
  auto staging_wait = config.GetU64("staging_wait_ms", o.pager.staging_wait_ms);
  if (!staging_wait.ok()) return staging_wait.status();
  o.pager.staging_wait_ms = *staging_wait;
  auto staging_keep = config.GetSize("staging_keep", o.pager.staging_keep);
  if (!staging_keep.ok()) return staging_keep.status();
  o.pager.staging_keep = *staging_keep;
  // A third of the cgroup's limit by default. The budget counts a commit's
  // staging copy, but a written set no fault saw (async write-protect
  // resolves writes in the kernel) may be every resident page: the heap's
  // pages and that copy may take two thirds, and the program's own memory
  // and the store's page cache keep the rest.
  auto memory_max = config.GetSize("memory_max", MemoryCgroupLimit() / 3);
  if (!memory_max.ok()) return memory_max.status();
  if (*memory_max != 0 && *memory_max < (uint64_t{1} << 20))
    return Status::InvalidArgument("config memory_max is below 1M: give a budget of at least 1M, or 0 for none");
  o.pager.memory_max = *memory_max;
  auto early = config.GetBool("memory_early_commit", o.pager.memory_early_commit);
  if (!early.ok()) return early.status();
  o.pager.memory_early_commit = *early;
  auto salvage = config.GetBool("salvage", false);
  if (!salvage.ok()) return salvage.status();
  o.salvage = *salvage;
  auto log_size = config.GetSize("log_file_size", o.store.log_file_bytes);
  if (!log_size.ok()) return log_size.status();
  o.store.log_file_bytes = *log_size;
  auto direct = config.GetSize("direct_write", o.store.direct_write_bytes);
  if (!direct.ok()) return direct.status();
  o.store.direct_write_bytes = *direct;
  auto direct_read = config.GetSize("direct_read", o.store.direct_read_bytes);
  if (!direct_read.ok()) return direct_read.status();
  o.store.direct_read_bytes = *direct_read;
  auto compact = config.GetBool("compact", o.compact);
  if (!compact.ok()) return compact.status();
  o.compact = *compact;
  if (auto r = config.Get("compact_ratio")) {
    char* end = nullptr;
    const double ratio = std::strtod(r->c_str(), &end);
    if (r->empty() || *end != '\0' || !(ratio >= 1.25 && ratio <= 100))
      return Status::InvalidArgument("config compact_ratio='" + *r +
                                     "' is not a number from 1.25 to 100 (log files per byte of live image, e.g. 2)");
    o.store.compact_live_ratio = 1 / ratio;
  }
  if (auto r = config.Get("retain")) {
    auto retain = ParseRetain(*r);
    if (!retain.ok()) return retain.status();
    o.store.retain_epochs = retain->first;
    o.store.retain_ns = retain->second;
  }
  auto replication = ReplicationFromConfig(config);
  if (!replication.ok()) return replication.status();
  o.replication = std::move(*replication);
  o.keys_dir = config.GetOr("keys", "");
  const std::string change = config.GetOr("replication", "keep");
  if (change != "keep" && change != "change")
    return Status::InvalidArgument("config replication='" + change +
                                   "' is not one of keep (the recorded peers), change (replace them with peers=)");
  o.replication_change = change == "change";
  auto timeout = config.GetU64("replica_timeout_ms", o.replica_timeout_ms);
  if (!timeout.ok()) return timeout.status();
  if (*timeout == 0) return Status::InvalidArgument("config replica_timeout_ms=0: give a timeout in milliseconds");
  o.replica_timeout_ms = *timeout;
  if (config.Get("replica_open_timeout_ms")) {
    auto open_timeout = config.GetU64("replica_open_timeout_ms", 0);
    if (!open_timeout.ok()) return open_timeout.status();
    if (*open_timeout == 0)
      return Status::InvalidArgument("config replica_open_timeout_ms=0: give a timeout in milliseconds");
    o.replica_open_timeout_ms = *open_timeout;
  }
  auto restore = config.GetBool("restore", true);
  if (!restore.ok()) return restore.status();
  o.restore = *restore;
  if (auto c = config.Get("create")) {
    if (*c == "only") {
      o.create = EngineOptions::Create::kOnly;
    } else {
      auto may = ParseBool("config create", *c);
      if (!may.ok())
        return Status::InvalidArgument("config create='" + *c +
                                       "' is not one of 1 (open or create), 0 (open only), only (create only)");
      o.create = *may ? EngineOptions::Create::kMaybe : EngineOptions::Create::kNever;
    }
  }
  return o;
}

uint64_t Engine::DefaultBase(const std::string& name) {
  HeapId id = XXH3_64bits(name.data(), name.size());
  return kDefaultBase + (id % kDefaultSlots) * kDefaultSlotSize;
}

namespace {

Status CheckRegion(const std::string& name, uint64_t base, uint64_t size) {
  if (size == 0)
    return Status::InvalidArgument(fmt::format("heap '{}': size 0; give size=N (e.g. size=1G)", name));
  if (size > kMaxRegionSize || base >= kUserAddressLimit || size > kUserAddressLimit - base)
    return Status::InvalidArgument(fmt::format(
        "heap '{}': region [{:#x}, +{:#x}) does not fit the {}-bit user address space; "
        "choose a smaller size or another base",
        name, base, size, 47));
  if (base % kPageSize != 0)
    return Status::InvalidArgument(fmt::format("heap '{}': base {:#x} is not page aligned", name, base));
  // Peers refuse such regions too (base/types.h).
  if (size < kMinRegionSize)
    return Status::InvalidArgument(fmt::format("heap '{}': size {:#x} is below the smallest heap, {} KiB; give a larger size",
                                               name, size, kMinRegionSize >> 10));
  if (base < kMinRegionBase)
    return Status::InvalidArgument(fmt::format("heap '{}': base {:#x} lies below {:#x}, where Linux maps nothing; "
                                               "choose another base or drop the setting",
                                               name, base, kMinRegionBase));
  return Status::Ok();
}

// Settles what `given` replicates on against what heap_dir records, into
// `out` (a copy of `given`).
Status ChooseReplication(const std::string& name, const std::string& heap_dir, const EngineOptions& given,
                         EngineOptions* out) {
  auto read = ReadReplicationRecord(heap_dir);
  if (!read.ok()) return read.status().Annotate(fmt::format("opening heap '{}'", name));
  const std::optional<ReplicationRecord>& rec = *read;
  const ReplicationConfig& want = given.replication;
  if (!rec) return Status::Ok();
  if (given.replication_change) {
    if (!SameReplicaSet(rec->replication, want))
      PHEAP_LOG_WARN("heap '{}': replication=change: moving from {} to {}", name, DescribeReplication(rec->replication),
                     DescribeReplication(want));
    return Status::Ok();
  }
  if (want.peers.empty()) {
    PHEAP_LOG_INFO("heap '{}': replicated on its recorded {}", name, DescribeReplication(rec->replication));
    out->replication = rec->replication;
    if (out->keys_dir.empty()) out->keys_dir = rec->keys_dir;
    return Status::Ok();
  }
  if (!SameReplicaSet(rec->replication, want))
    return Status::InvalidArgument(fmt::format(
        "heap '{}' is replicated on {} (recorded in {}/{}), not on the configured {}: open it with the recorded "
        "peers or none, or give replication=change to move it to the configured ones",
        name, DescribeReplication(rec->replication), heap_dir, kReplicationFileName, DescribeReplication(want)));
  if (out->keys_dir.empty()) out->keys_dir = rec->keys_dir;
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Engine>> Engine::Open(const std::string& name, const EngineOptions& given) {
  PHEAP_RETURN_IF_ERROR(PageStore::ValidateHeapName(name));
  EngineOptions options = given;
  PHEAP_RETURN_IF_ERROR(ChooseReplication(name, given.dir + "/" + name, given, &options));
  // Round the size up to whole pages before anything records it.
  uint64_t size = options.size == 0 ? 0 : (options.size + kPageSize - 1) & ~(kPageSize - 1);
  uint64_t base = options.base != 0 ? options.base : DefaultBase(name);
  if (options.size != 0 || options.base != 0) {
    PHEAP_RETURN_IF_ERROR(CheckRegion(name, base, size != 0 ? size : kDefaultRegionSize));
  }

  PageStoreOptions so = options.store;
  so.salvage = options.salvage;
  // Without peers the directory alone says whether the heap exists; with
  // them, an empty one may be the replicas' heap, restored below.
  using Create = EngineOptions::Create;
  if (options.create == Create::kNever && options.replication.peers.empty()) so.create_if_missing = false;
  so.base = base;
  so.size = size != 0 ? size : kDefaultRegionSize;
  auto wakeup = std::make_shared<Compactor::Wakeup>();
  if (options.compact) so.on_log_file_sealed = Compactor::Wakeup::Hook(wakeup);
  auto store = PageStore::Open(options.dir, name, so);
  if (!store.ok() && store.status().code() == Status::Code::kCorruption && !options.replication.peers.empty() &&
      !options.salvage) {
    // Every acknowledged epoch is on the replicas: the damaged local store
    // is set aside (never deleted) and the heap restored from them.
    const std::string path = options.dir + "/" + name;
    const std::string aside = PageStore::SetAsideName(path, PageStore::kDamagedMark, "");
    if (int r = os().rename(path.c_str(), aside.c_str()); r < 0)
      return store.status().Annotate(fmt::format("opening heap '{}' (setting it aside as {} failed: {})", name, aside,
                                                 std::strerror(-r)));
    PHEAP_LOG_WARN("heap '{}': {}; set the local store aside as {} and restoring the heap from its replicas", name,
                   store.status().message(), aside);
    store = PageStore::Open(options.dir, name, so);
  }
  if (!store.ok()) return store.status().Annotate(fmt::format("opening heap '{}'", name));
  if (options.create == Create::kOnly && !(*store)->created())
    return Status::InvalidArgument(
        fmt::format("heap '{}' exists ({}) and create=only: remove it (pheap rm) or open it", name, (*store)->path()),
        EEXIST);

  std::unique_ptr<Engine> e(new Engine());
  e->name_ = name;
  e->store_ = std::move(*store);
  // Every failure from here on leaves no directory this open created.
  auto fail = [&e](Status s) {
    e->remove_if_created_ = true;
    return s;
  };

  // A heap keeps the region it was created with, so its pointers stay valid.
  // A larger configured size grows it; an explicit base must match.
  ImageInfo image = e->store_->image();
  if (options.base != 0 && image.base != options.base && image.epoch > 0)
    return fail(Status::InvalidArgument(
        fmt::format("heap '{}' lives at {:#x}, not at the configured base {:#x}: its pointers depend on it; "
                    "drop the base setting",
                    name, image.base, options.base)));
  if (size > image.size) image.size = size;
  if (Status s = CheckRegion(name, image.base, image.size); !s.ok()) return fail(s);

  PageSource* source = e->store_.get();
  EpochSink* sink = e->store_.get();
  if (!options.replication.peers.empty()) {
    if (Status s = e->OpenReplicas(name, options, so); !s.ok()) return fail(s);
    source = e->pages_.get();
    sink = e->pages_.get();
    image = e->pages_->image();
    if (size > image.size) image.size = size;
    // Every epoch this writer seals is of its own term.
    image.term = e->client_->term();
    const bool on_replicas = e->client_->image().epoch > 0;
    if (options.create == Create::kOnly && on_replicas)
      return fail(Status::InvalidArgument(
          fmt::format("heap '{}' exists on its replicas and create=only: remove it (pheap rm --on-replicas) or open it",
                      name),
          EEXIST));
    if (options.create == Create::kNever && e->store_->created() && !on_replicas)
      return fail(Status::NotFound(
          fmt::format("heap '{}' exists neither in {} nor on its replicas, and create=0: check the dir and the name",
                      name, options.dir)));
  }
  auto pager = Pager::Open(image, source, sink, options.pager);
  if (!pager.ok()) return fail(pager.status().Annotate(fmt::format("opening heap '{}'", name)));
  e->pager_ = std::move(*pager);
  if (Status s = e->RecordReplication(options); !s.ok())
    return fail(s.Annotate(fmt::format("opening heap '{}': recording its replication", name)));
  if (e->pages_ && !e->pages_->local_in_use() && options.restore) {
    const bool show = options.restore_progress && ::isatty(2) == 1;
    const std::string heap = name;
    e->pages_->StartRestore([show, heap](uint64_t done, uint64_t total) {
      if (show)
        fmt::print(stderr, "\rpheap: restoring heap '{}' from its replicas: {} of {} MiB{}", heap,
                   done * kPageSize >> 20, total * kPageSize >> 20, done == total ? "\n" : "");
    });
    PHEAP_LOG_INFO("heap '{}': restoring the local store from the replicas in the background", name);
  }
  if (options.compact) {
    // Not owned: the compactor goes before the store (~Engine).
    std::shared_ptr<PageStore> own(std::shared_ptr<void>(), e->store_.get());
    // Its thread never writes the region: commits need not pause it (nor
    // wait for it, holding the store's lock, to write an epoch in place).
    e->compactor_ =
        std::make_unique<Compactor>([own] { return std::vector{own}; }, wakeup, Compactor::kDefaultPoll,
                                    Compactor::ThreadHooks{&Pager::ExemptCurrentThread, &Pager::UnexemptCurrentThread});
    // A store left due by an earlier process is compacted now, not after
    // the first poll: a process that runs for less than that (a short
    // program under the preload library, run again and again) would
    // otherwise add a log file each time and never compact one.
    if (e->store_->CompactionDue()) wakeup->Notify();
  }
  e->StartLive();
  PHEAP_LOG_INFO("heap '{}' open at {:#x} size {:#x}, epoch {}, tracking {}", name, image.base,
                 image.size, image.epoch, TrackingModeName(e->pager_->mode()));
  return e;
}

Status Engine::OpenReplicas(const std::string& name, const EngineOptions& options, const PageStoreOptions& so) {
  ReplicaClientOptions ro;
  ro.replication = options.replication;
  ro.timeout = std::chrono::milliseconds(options.replica_timeout_ms);
  if (options.replica_open_timeout_ms != 0)
    ro.open_timeout = std::chrono::milliseconds(options.replica_open_timeout_ms);
  if (!options.keys_dir.empty()) {
    auto keys = LoadClientKeys(options.keys_dir);
    if (!keys.ok()) return keys.status().Annotate(fmt::format("heap '{}': reading the CURVE keys", name));
    ro.keys = std::move(*keys);
  } else {
    for (const auto& ep : options.replication.peers)
      if (!IsLoopbackEndpoint(ep))
        return Status::InvalidArgument(fmt::format(
            "heap '{}': peer {} is not on loopback and no keys are configured: its pages would travel in the "
            "clear; give keys=DIR (made by pheap keygen)",
            name, ep));
  }
  auto client = ReplicaClient::Open(name, ro);
  if (!client.ok()) return client.status().Annotate(fmt::format("opening heap '{}' on its replicas", name));
  client_ = std::move(*client);

  // The heap's lineage is the newest image by (term, epoch) among the local
  // store and the replicas that answered (NewerImage). A local store whose
  // image is older is not in it, or only a prefix of it: it cannot take the
  // replicas' epochs one by one, and its own later epochs (if any) never
  // became durable, so it is set aside (never deleted, it is named in the
  // log) and the image restored into an empty one. Installing it over the
  // replicas instead would destroy epochs they acknowledged.
  const ImageInfo here = store_->image(), there = client_->image();
  if (here.epoch != 0 && NewerImage(there, here)) {
    const std::string path = store_->path();
    const std::string aside =
        PageStore::SetAsideName(path, PageStore::kStaleEpochMark, fmt::format("{}-term-{}", here.epoch, here.term));
    store_.reset();
    if (int r = os().rename(path.c_str(), aside.c_str()); r < 0)
      return Status::FromErrno(fmt::format("heap '{}': setting the stale local store {} aside as {}", name, path,
                                           aside),
                               -r);
    PHEAP_LOG_WARN("heap '{}': the local store held epoch {} of term {}, not in the replicas' lineage (epoch {} of "
                   "term {}): set it aside as {}",
                   name, here.epoch, here.term, there.epoch, there.term, aside);
    auto fresh = PageStore::Open(options.dir, name, so);
    if (!fresh.ok()) return fresh.status().Annotate(fmt::format("opening heap '{}'", name));
    store_ = std::move(*fresh);
  }
  pages_ = std::make_unique<ReplicatedPages>(store_.get(), client_.get());
  return Status::Ok();
}

Status Engine::RecordReplication(const EngineOptions& options) {
  const std::string& dir = store_->path();
  auto rec = ReadReplicationRecord(dir);
  if (options.replication.peers.empty()) {
    // Only replication=change gets here with a record: the heap goes local.
    if (rec.ok() && !*rec) return Status::Ok();
    return RemoveReplicationRecord(dir);
  }
  std::string keys = options.keys_dir;
  if (!keys.empty()) {
    std::error_code ec;
    auto abs = std::filesystem::absolute(keys, ec);
    if (!ec) keys = abs.lexically_normal().string();
  }
  if (rec.ok() && *rec && SameReplicaSet((*rec)->replication, options.replication) && (*rec)->keys_dir == keys)
    return Status::Ok();
  return WriteReplicationRecord(dir, ReplicationRecord{options.replication, keys});
}

namespace {

// How often the live statistics are refreshed. Each refresh reads counters
// the pager and the replicas keep anyway and writes one page of memory.
constexpr uint64_t kLivePeriodMs = 250;

uint64_t UnixNs() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000 + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

void Engine::StartLive() {
  auto file = LiveStatsFile::Create(store_->path() + "/" + kLiveFileName);
  if (!file.ok()) {
    PHEAP_LOG_WARN("heap '{}': no live statistics for pheap top: {}", name_, file.status().ToString());
    return;
  }
  live_ = std::move(*file);
  live_owner_ = ::getpid();
  LiveStats& s = live_stats_;
  s.pid = static_cast<uint64_t>(live_owner_);
  s.opened_unix_ns = UnixNs();
  CopyLiveString(s.heap, sizeof(s.heap), name_);
  std::error_code ec;
  CopyLiveString(s.exe, sizeof(s.exe), std::filesystem::read_symlink("/proc/self/exe", ec).string());
  CopyLiveString(s.tracking, sizeof(s.tracking), TrackingModeName(pager_->mode()));
  s.base = reinterpret_cast<uintptr_t>(pager_->base());
  s.size = pager_->size();
  PublishLive(kLiveOpen);
  live_loop_ = std::make_unique<CommitLoop>(kLivePeriodMs, [this] { PublishLive(kLiveOpen); });
  if (!live_loop_->Start()) {
    PHEAP_LOG_WARN("heap '{}': no thread for live statistics; pheap top shows the heap as it was at open", name_);
    live_loop_.reset();
  }
}

void Engine::PublishLive(uint64_t state) {
  LiveStats& s = live_stats_;
  const PagerStats ps = pager_->stats();
  const PauseSummary pauses = pager_->pauses();
  s.state = state;
  s.updated_unix_ns = UnixNs();
  ++s.snapshots;
  s.durable_epoch = ps.durable_epoch;
  s.commits = ps.commits;
  s.pause_cuts = pauses.cuts;
  s.pause_last_ns = ps.last_pause_ns;
  s.pause_p50_ns = pauses.p50_ns;
  s.pause_p99_ns = pauses.p99_ns;
  s.pause_max_ns = pauses.max_ns;
  s.last_dirty_pages = ps.last_dirty_pages;
  s.dirty_pages = state == kLiveOpen ? pager_->WrittenSinceCut() : kLiveUnknown;
  s.paused_threads = ps.paused_threads;
  s.faults = ps.faults;
  s.pages_fetched = ps.pages_fetched;
  s.pages_mapped = ps.pages_mapped;
  s.pages_from_replicas = pages_ ? pages_->pages_from_replicas() : 0;
  s.memory_max = ps.memory_max;
  s.resident_pages = ps.memory_max != 0 ? ps.resident_pages : kLiveUnknown;
  s.evictions = ps.evictions;
  s.refetches = ps.refetches;
  s.replica_count = 0;
  if (client_) {
    for (const ReplicaState& r : client_->state()) {
      if (s.replica_count == kLiveReplicas) break;
      LiveReplica& out = s.replica[s.replica_count++];
      CopyLiveString(out.endpoint, sizeof(out.endpoint), r.endpoint);
      out.durable_epoch = r.durable;
      out.flags = (r.answered ? kLiveAnswered : 0) | (r.installing ? kLiveInstalling : 0);
    }
  }
  live_->Publish(s);
}

void Engine::StopLive() {
  if (!live_) return;
  if (::getpid() != live_owner_) {
    // A child of fork: the thread and the heap are its parent's.
    if (live_loop_) live_loop_->ForgetAfterFork();
    live_loop_.reset();
    live_.reset();
    return;
  }
  live_loop_.reset();
  // Readers that still map the file see the heap closed; a later one finds
  // no file. The store's lock is still held, so no new holder's file goes.
  PublishLive(kLiveClosed);
  ::unlink(live_->path().c_str());
  live_.reset();
}

Engine::~Engine() {
  StopLive();
  compactor_.reset();
  pager_.reset();
  pages_.reset();
  client_.reset();
  if (remove_if_created_ && store_ != nullptr) {
    auto r = store_->RemoveIfCreated();
    if (!r.ok()) PHEAP_LOG_WARN("heap '{}': {}", name_, r.status().ToString());
  }
  store_.reset();
}

}  // namespace pheap
