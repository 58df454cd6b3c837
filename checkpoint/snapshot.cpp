#include "checkpoint/snapshot.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <thread>
#include <tuple>

#include "checkpoint/hash.h"

namespace duet::ckpt {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'D', 'U', 'E', 'T', 'S', 'N', 'P', '1'};
constexpr std::size_t kHeader = kSnapshotHeaderBytes;  // magic, payload length, payload XXH64

// ---- a flat little-endian byte stream (x86 and ARM servers are little-endian) ----------
// With no buffer it only counts. With one, it hashes each piece from its source while it
// copies it, and copies large pieces with non-temporal stores: a snapshot streams the whole
// state once every step, and the compute running next to it keeps its caches (the
// destination is not read again until a restart).
void copy_out(std::byte* dst, const std::byte* src, std::size_t n) {
#if defined(__SSE2__)
  if (n >= 256) {
    while (((std::uintptr_t)dst & 15) != 0) *dst++ = *src++, --n;
    for (; n >= 64; n -= 64, dst += 64, src += 64)
      for (int k = 0; k < 4; ++k)
        _mm_stream_si128(reinterpret_cast<__m128i*>(dst) + k, _mm_loadu_si128(reinterpret_cast<const __m128i*>(src) + k));
  }
#endif
  std::memcpy(dst, src, n);
}

// Non-temporal stores are weakly ordered: fence them before the header that publishes them.
void order_stores() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
  std::atomic_thread_fence(std::memory_order_release);
}

struct Out {
  std::byte* b = nullptr;  // nullptr: count only
  std::size_t at = 0, cap = 0;
  Xxh64 h;
  void raw(const void* p, std::size_t n) {
    if (!b) {
      at += n;
      return;
    }
    if (n > cap - at) throw std::logic_error("snapshot: the buffer is smaller than the encoded size");
    const auto* s = static_cast<const std::byte*>(p);
    constexpr std::size_t kChunk = 64 << 10;  // hashed while still in cache
    for (std::size_t k; n; at += k, s += k, n -= k) {
      k = std::min(n, kChunk);
      copy_out(b + at, s, k);
      h.update(s, k);
    }
  }
  void u64(std::uint64_t x) { raw(&x, 8); }
  void i64(std::int64_t x) { raw(&x, 8); }
  void str(const std::string& s) { u64(s.size()), raw(s.data(), s.size()); }
  void shape(const std::vector<std::int64_t>& v) {
    for (auto x : v) i64(x);
  }
};

struct In {
  const std::vector<std::byte>& b;
  std::size_t at, end;
  void raw(void* p, std::size_t n) {
    if (n > end - at) throw std::runtime_error("truncated");
    std::memcpy(p, b.data() + at, n);
    at += n;
  }
  std::uint64_t u64() {
    std::uint64_t x;
    raw(&x, 8);
    return x;
  }
  std::int64_t i64() {
    std::int64_t x;
    raw(&x, 8);
    return x;
  }
  std::string str() {
    const std::uint64_t n = u64();
    if (n > end - at) throw std::runtime_error("truncated");
    std::string s((const char*)(b.data() + at), n);
    at += n;
    return s;
  }
  std::vector<std::int64_t> shape(std::uint64_t ndim) {
    if (ndim > 8) throw std::runtime_error("a tensor of more than 8 dimensions");
    std::vector<std::int64_t> v(ndim);
    for (auto& x : v) x = i64();
    return v;
  }
};

std::int64_t element_count(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (auto x : shape) n *= x;
  return n;
}

// The payload (everything after the header) into o.
void emit(Out& o, const SnapshotMeta& meta, std::span<const TensorSlice> slices, const ShardState& state) {
  o.str(meta.lineage), o.i64(meta.step), o.i64(meta.generation), o.i64(meta.rank), o.str(meta.node);
  const CheckpointLayout& l = meta.layout;
  o.i64(l.world), o.i64(l.pp), o.i64(l.dp), o.i64(l.ep), o.str(l.schedule), o.str(l.model_hash);
  o.i64(state.data_position);
  o.str(std::string((const char*)state.rng_state.data(), state.rng_state.size()));
  o.u64(state.attributes.size());
  for (const auto& [k, v] : state.attributes) o.str(k), o.str(v);
  o.u64(slices.size());
  for (const TensorSlice& s : slices) {
    if (s.global_shape.size() != s.shape.size() || s.offset.size() != s.shape.size() ||
        (std::int64_t)s.data.size() != element_count(s.shape))
      throw std::invalid_argument("snapshot: slice " + s.name + " has inconsistent shapes");
    o.str(s.name), o.u64(s.shape.size()), o.shape(s.global_shape), o.shape(s.offset), o.shape(s.shape);
    o.u64(s.data.size());
    o.raw(s.data.data(), s.data.size_bytes());
  }
}

}  // namespace

std::size_t encoded_snapshot_size(const SnapshotMeta& meta, std::span<const TensorSlice> slices,
                                  const ShardState& state) {
  Out o;
  emit(o, meta, slices, state);
  return kSnapshotHeaderBytes + o.at;
}

SnapshotHeader encode_snapshot_payload(std::span<std::byte> file, const SnapshotMeta& meta,
                                       std::span<const TensorSlice> slices, const ShardState& state) {
  if (file.size() < kSnapshotHeaderBytes) throw std::logic_error("snapshot: no room for the header");
  Out o;
  o.b = file.data() + kSnapshotHeaderBytes, o.cap = file.size() - kSnapshotHeaderBytes;
  emit(o, meta, slices, state);
  order_stores();
  return {o.at, o.h.digest()};
}

void put_snapshot_header(std::span<std::byte> file, const SnapshotHeader& h) {
  std::memcpy(file.data() + 8, &h.payload, 8);
  std::memcpy(file.data() + 16, &h.xxh64, 8);
  // The magic last: a reader (another process, after this one died) that sees it sees the
  // length and checksum too (x86 and ARM order plain stores to one page as written, given
  // this fence).
  std::atomic_thread_fence(std::memory_order_release);
  std::memcpy(file.data(), kMagic, 8);
}

std::vector<std::byte> encode_snapshot(const SnapshotMeta& meta, std::span<const TensorSlice> slices,
                                       const ShardState& state) {
  std::vector<std::byte> b(encoded_snapshot_size(meta, slices, state));
  put_snapshot_header(b, encode_snapshot_payload(b, meta, slices, state));
  return b;
}

std::optional<SnapshotFile> decode_snapshot(std::vector<std::byte> bytes, std::string* why) {
  auto fail = [&](const std::string& w) -> std::optional<SnapshotFile> {
    if (why) *why = w;
    return std::nullopt;
  };
  if (bytes.size() < kHeader || std::memcmp(bytes.data(), kMagic, 8) != 0) return fail("not a snapshot");
  std::uint64_t payload = 0, sum = 0;
  std::memcpy(&payload, bytes.data() + 8, 8);
  std::memcpy(&sum, bytes.data() + 16, 8);
  // A slot file may be longer than its snapshot (it is reused for the next one, which may be
  // a little larger); shorter is a truncated file.
  if (payload > bytes.size() - kHeader)
    return fail("length " + std::to_string(bytes.size()) + " bytes, the header says " + std::to_string(payload + kHeader));
  if (xxh64(bytes.data() + kHeader, (std::size_t)payload) != sum) return fail("checksum mismatch");
  SnapshotFile f;
  try {
    In in{bytes, kHeader, kHeader + (std::size_t)payload};
    SnapshotMeta& m = f.meta;
    m.lineage = in.str(), m.step = in.i64(), m.generation = in.i64(), m.rank = (int)in.i64(), m.node = in.str();
    m.layout.world = (int)in.i64(), m.layout.pp = (int)in.i64(), m.layout.dp = (int)in.i64(),
    m.layout.ep = (int)in.i64();
    m.layout.schedule = in.str(), m.layout.model_hash = in.str(), m.layout.lineage = m.lineage;
    f.state.data_position = in.i64();
    const std::string rng = in.str();
    f.state.rng_state.assign((const std::uint8_t*)rng.data(), (const std::uint8_t*)rng.data() + rng.size());
    const std::uint64_t attrs = in.u64();
    for (std::uint64_t i = 0; i < attrs; ++i) {
      std::string k = in.str();
      f.state.attributes[k] = in.str();
    }
    const std::uint64_t n = in.u64();
    for (std::uint64_t i = 0; i < n; ++i) {
      SnapshotSlice s;
      s.name = in.str();
      const std::uint64_t ndim = in.u64();
      s.global_shape = in.shape(ndim), s.offset = in.shape(ndim), s.shape = in.shape(ndim);
      s.count = (std::int64_t)in.u64();
      if (s.count != element_count(s.shape)) throw std::runtime_error("slice " + s.name + ": wrong element count");
      if ((std::uint64_t)s.count > (in.end - in.at) / 4) throw std::runtime_error("truncated");
      s.data = in.at;
      in.at += (std::size_t)s.count * 4;
      f.slices.push_back(std::move(s));
    }
    if (in.at != in.end) throw std::runtime_error("trailing bytes");
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  f.bytes = std::move(bytes);
  return f;
}

std::optional<SnapshotFile> read_snapshot(const std::string& path, std::string* why) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (why) *why = "cannot open";
    return std::nullopt;
  }
  in.seekg(0, std::ios::end);
  const auto size = (std::size_t)in.tellg();
  in.seekg(0);
  std::vector<std::byte> bytes(size);
  if (!in.read((char*)bytes.data(), (std::streamsize)size)) {
    if (why) *why = "cannot read";
    return std::nullopt;
  }
  return decode_snapshot(std::move(bytes), why);
}

std::string snapshot_run_dir(const std::string& memory_dir, const std::string& lineage) {
  return (fs::path(memory_dir) / ("duet-" + lineage)).string();
}

std::string snapshot_file_name(int rank, int slot) {
  char b[48];
  std::snprintf(b, sizeof b, "rank-%05d.slot%d.snap", rank, slot);
  return b;
}

int snapshot_slot(std::int64_t step, int every) { return (int)((step / std::max(every, 1)) % 2); }

SnapshotSlot::~SnapshotSlot() { close(); }

void SnapshotSlot::close() {
  if (map_) ::munmap(map_, cap_);
  if (fd_ >= 0) ::close(fd_);
  map_ = nullptr, cap_ = 0, fd_ = -1;
}

std::size_t snapshot_slot_bytes(std::size_t bytes) {
  const std::size_t page = (std::size_t)::sysconf(_SC_PAGESIZE);
  // Room to grow a little (the attributes' text varies) without remapping.
  return (bytes + bytes / 64 + 4096 + page - 1) / page * page;
}

std::span<std::byte> SnapshotSlot::open_for(std::size_t bytes, const Fence& fence) {
  auto fail = [&](const char* what, int err) {
    throw std::runtime_error("snapshot: cannot " + std::string(what) + " " + path_ + ": " + std::strerror(err));
  };
  if (fd_ < 0) {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) fail("create", errno);
  }
  if (bytes > cap_) {
    if (map_) ::munmap(map_, cap_), map_ = nullptr, cap_ = 0;
    const std::size_t want = snapshot_slot_bytes(bytes);
    struct stat st {};
    if (::fstat(fd_, &st) != 0) fail("stat", errno);
    const std::size_t size = std::max(want, (std::size_t)st.st_size);
    // Reserve every page now: a store into a mapping of a full tmpfs would be a SIGBUS; this is
    // an error we can report.
    if (const int err = ::posix_fallocate(fd_, 0, (off_t)size); err != 0) fail("reserve memory for", err);
    void* m = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (m == MAP_FAILED) fail("map", errno);
    map_ = static_cast<std::byte*>(m), cap_ = size;
  }
  {
    // A superseded attempt must not even unpublish what the current one may be reading.
    std::optional<FenceGuard> guard;
    if (fence.generation > 0) guard.emplace(fence);  // throws "fenced: …"
    std::memset(map_, 0, 8);  // no magic: not a snapshot until publish()
  }
  std::atomic_thread_fence(std::memory_order_release);
  return {map_, cap_};
}

void SnapshotSlot::publish(const SnapshotHeader& header, const Fence& fence) {
  if (!map_) throw std::logic_error("SnapshotSlot::publish before open_for");
  std::optional<FenceGuard> guard;
  if (fence.generation > 0) guard.emplace(fence);  // throws "fenced: …" for a superseded attempt
  put_snapshot_header({map_, cap_}, header);
}

std::vector<SnapshotCandidate> scan_snapshot_folder(const std::string& node_dir, int holder,
                                                    const SnapshotSearch& search, const LogFn& log) {
  auto say = [&](const std::string& line) {
    if (log) log(line);
  };
  std::vector<SnapshotCandidate> out;
  std::error_code ec;
  std::vector<fs::path> files;
  for (const auto& f : fs::directory_iterator(node_dir, ec)) {
    const std::string name = f.path().filename().string();
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".snap") == 0 && name[0] != '.') files.push_back(f.path());
  }
  std::sort(files.begin(), files.end());
  const std::string folder = fs::path(node_dir).filename().string();
  for (const auto& p : files) {
    std::string why;
    const auto f = read_snapshot(p.string(), &why);
    if (!f) {
      say("snapshot: " + p.string() + " skipped: " + why);
      continue;
    }
    const SnapshotMeta& m = f->meta;
    if (m.lineage != search.lineage) {
      say("snapshot: " + p.string() + " skipped: run " + m.lineage + ", not this run (" + search.lineage + ")");
      continue;
    }
    if (search.below_generation > 0 && m.generation >= search.below_generation) {
      say("snapshot: " + p.string() + " skipped: written by attempt generation " + std::to_string(m.generation) +
          ", not older than this attempt's " + std::to_string(search.below_generation));
      continue;
    }
    if (!search.model_hash.empty() && m.layout.model_hash != search.model_hash) {
      say("snapshot: " + p.string() + " skipped: another model");
      continue;
    }
    if (m.rank < 0 || m.rank >= m.layout.world) continue;
    out.push_back({p.string(), holder, folder == m.node, m});
  }
  return out;
}

SnapshotSet choose_snapshot_set(std::vector<SnapshotCandidate> candidates) {
  // (step, generation, layout) → writer rank → candidate; own copies preferred over replicas,
  // then the smallest path (so the order of the candidates does not matter).
  struct Key {
    std::int64_t step, generation;
    int world, pp, dp, ep;
    std::string schedule;
    auto tie() const { return std::tie(step, generation, world, pp, dp, ep, schedule); }
    bool operator<(const Key& o) const { return tie() < o.tie(); }
  };
  std::sort(candidates.begin(), candidates.end(),
            [](const SnapshotCandidate& a, const SnapshotCandidate& b) { return std::tie(a.path, a.holder) < std::tie(b.path, b.holder); });
  std::map<Key, std::map<int, const SnapshotCandidate*>> sets;
  for (const SnapshotCandidate& c : candidates) {
    const SnapshotMeta& m = c.meta;
    const Key k{m.step, m.generation, m.layout.world, m.layout.pp, m.layout.dp, m.layout.ep, m.layout.schedule};
    const SnapshotCandidate*& best = sets[k][m.rank];
    if (!best || (c.own && !best->own)) best = &c;
  }
  // The newest step whose set is complete; among equal steps, the newest generation.
  for (auto it = sets.rbegin(); it != sets.rend(); ++it) {
    const Key& k = it->first;
    if ((int)it->second.size() != k.world) continue;
    SnapshotSet s;
    s.step = k.step, s.generation = k.generation, s.layout = it->second.begin()->second->meta.layout;
    for (const auto& [rank, c] : it->second) {
      s.paths.push_back(c->path);
      s.holders.push_back(c->holder);
      (c->own ? s.own_copies : s.replicas) += 1;
    }
    return s;
  }
  return {};
}

std::string format_snapshot_candidates(const std::vector<SnapshotCandidate>& candidates) {
  std::string out;
  for (const auto& c : candidates) {
    const SnapshotMeta& m = c.meta;
    const CheckpointLayout& l = m.layout;
    for (const std::string* f : {&c.path, &m.lineage, &m.node, &l.schedule, &l.model_hash})
      if (f->find_first_of("\t\n") != std::string::npos) throw std::invalid_argument("snapshot: a tab or newline in " + *f);
    out += c.path + "\t" + std::to_string(c.holder) + "\t" + (c.own ? "1" : "0") + "\t" + m.lineage + "\t" +
           std::to_string(m.step) + "\t" + std::to_string(m.generation) + "\t" + std::to_string(m.rank) + "\t" +
           m.node + "\t" + std::to_string(l.world) + "\t" + std::to_string(l.pp) + "\t" + std::to_string(l.dp) +
           "\t" + std::to_string(l.ep) + "\t" + l.schedule + "\t" + l.model_hash + "\n";
  }
  return out;
}

std::vector<SnapshotCandidate> parse_snapshot_candidates(const std::string& text) {
  std::vector<SnapshotCandidate> out;
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t end = std::min(text.find('\n', at), text.size());
    std::vector<std::string> f;
    for (std::size_t b = at;;) {
      const std::size_t t = text.find('\t', b);
      if (t == std::string::npos || t > end) {
        f.push_back(text.substr(b, end - b));
        break;
      }
      f.push_back(text.substr(b, t - b));
      b = t + 1;
    }
    at = end + 1;
    if (f.size() != 14) throw std::invalid_argument("snapshot: a candidate line with " + std::to_string(f.size()) + " fields");
    SnapshotCandidate c;
    SnapshotMeta& m = c.meta;
    CheckpointLayout& l = m.layout;
    c.path = f[0], c.holder = std::stoi(f[1]), c.own = f[2] == "1", m.lineage = f[3], m.step = std::stoll(f[4]);
    m.generation = std::stoll(f[5]), m.rank = std::stoi(f[6]), m.node = f[7], l.world = std::stoi(f[8]);
    l.pp = std::stoi(f[9]), l.dp = std::stoi(f[10]), l.ep = std::stoi(f[11]), l.schedule = f[12], l.model_hash = f[13];
    l.lineage = m.lineage;
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<std::string> discard_snapshots_after(const std::vector<SnapshotCandidate>& candidates, std::int64_t step) {
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& c : candidates)
    if (c.meta.step > step && fs::remove(c.path, ec)) removed.push_back(c.path);
  return removed;
}

std::vector<std::string> discard_snapshots_after(const std::string& node_dir, const SnapshotSearch& search,
                                                 std::int64_t step) {
  return discard_snapshots_after(scan_snapshot_folder(node_dir, 0, search), step);
}

SnapshotSet find_snapshot_set(const std::string& run_dir, const SnapshotSearch& search, const LogFn& log) {
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec)) return {};
  std::vector<fs::path> nodes;
  for (const auto& node : fs::directory_iterator(run_dir, ec))
    if (node.is_directory(ec)) nodes.push_back(node.path());
  std::sort(nodes.begin(), nodes.end());
  std::vector<SnapshotCandidate> all;
  for (const auto& n : nodes) {
    auto some = scan_snapshot_folder(n.string(), 0, search, log);
    all.insert(all.end(), std::make_move_iterator(some.begin()), std::make_move_iterator(some.end()));
  }
  return choose_snapshot_set(std::move(all));
}

SnapshotReader::SnapshotReader(const SnapshotSet& set) {
  for (const auto& p : set.paths) {
    std::string why;
    auto f = read_snapshot(p, &why);
    if (!f) throw std::runtime_error("snapshot " + p + ": " + why + " (it verified a moment ago)");
    files_.push_back(std::move(*f));
  }
  index();
}

SnapshotReader::SnapshotReader(std::vector<SnapshotFile> files) : files_(std::move(files)) {
  if (files_.empty()) throw std::invalid_argument("SnapshotReader: no snapshot to read");
  index();
}

void SnapshotReader::index() {
  for (int i = 0; i < (int)files_.size(); ++i)
    for (int j = 0; j < (int)files_[i].slices.size(); ++j) where_[files_[i].slices[j].name].push_back({i, j});
}

std::vector<float> SnapshotReader::read(const std::string& name) const {
  const auto it = where_.find(name);
  if (it == where_.end()) throw std::runtime_error("snapshot: no rank holds tensor " + name);
  const SnapshotSlice& first = files_[it->second[0].first].slices[it->second[0].second];
  for (const auto& [fi, si] : it->second) {  // a rank that holds it whole
    const SnapshotSlice& s = files_[fi].slices[si];
    if (s.shape == s.global_shape) {
      std::vector<float> v((std::size_t)s.count);
      std::memcpy(v.data(), files_[fi].bytes.data() + s.data, v.size() * 4);
      return v;
    }
  }
  std::vector<float> v((std::size_t)element_count(first.global_shape));
  read_range(name, 0, v);
  return v;
}

void SnapshotReader::read_range(const std::string& name, std::int64_t offset, std::span<float> out) const {
  const auto it = where_.find(name);
  if (it == where_.end()) throw std::runtime_error("snapshot: no rank holds tensor " + name);
  const std::int64_t end = offset + (std::int64_t)out.size();
  std::int64_t covered = 0;
  std::vector<std::pair<std::int64_t, std::int64_t>> pieces;  // copied [b, e) of the tensor
  for (const auto& [fi, si] : it->second) {
    const SnapshotSlice& s = files_[fi].slices[si];
    // The flattened view: a whole tensor, or a 1-D slice of the flattened tensor.
    std::int64_t b = 0;
    if (s.shape != s.global_shape) {
      if (s.shape.size() != 1) throw std::runtime_error("snapshot: tensor " + name + " is cut in more than one dimension");
      b = s.offset[0];
    }
    const std::int64_t e = b + s.count, lo = std::max(b, offset), hi = std::min(e, end);
    if (lo >= hi) continue;
    std::memcpy(out.data() + (lo - offset), files_[fi].bytes.data() + s.data + (std::size_t)(lo - b) * 4,
                (std::size_t)(hi - lo) * 4);
    pieces.push_back({lo, hi});
  }
  std::sort(pieces.begin(), pieces.end());
  std::int64_t at = offset;
  for (const auto& [b, e] : pieces) {
    if (b > at) break;
    at = std::max(at, e);
  }
  covered = at;
  if (covered < end)
    throw std::runtime_error("snapshot: elements [" + std::to_string(covered) + ", " + std::to_string(end) + ") of " +
                             name + " are in no rank's snapshot");
}

SnapshotOwnerLock::SnapshotOwnerLock(const std::string& run_dir) {
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  const std::string path = run_dir + "/owner.lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) throw std::runtime_error("snapshot: cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd_, LOCK_SH) != 0) {
    const int err = errno;
    ::close(fd_);
    throw std::runtime_error("snapshot: cannot lock " + path + ": " + std::strerror(err));
  }
}

SnapshotOwnerLock::~SnapshotOwnerLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

std::vector<std::string> reclaim_dead_snapshots(const std::string& memory_dir, const std::string& keep_lineage) {
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(memory_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("duet-", 0) != 0 || !e.is_directory(ec) || name == "duet-" + keep_lineage) continue;
    const std::string lock = e.path().string() + "/owner.lock";
    const int fd = ::open(lock.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      // No lock file: a run between creating its folder and its lock, or a damaged folder.
      // Only one older than a minute is taken for dead.
      struct stat st {};
      if (::stat(e.path().c_str(), &st) != 0 || ::time(nullptr) - st.st_mtime < 60) continue;
    } else {
      const bool free = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
      if (!free) {
        ::close(fd);
        continue;
      }
      ::close(fd);
    }
    fs::remove_all(e.path(), ec);
    if (!ec) removed.push_back(e.path().string());
  }
  return removed;
}

std::uint64_t folder_bytes(const std::string& dir) {
  std::uint64_t n = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec))
    if (it->is_regular_file(ec)) n += it->file_size(ec);
  return n;
}

}  // namespace duet::ckpt
