// manifest.json and the per-shard sidecars: writing, parsing, validation.
#include "checkpoint/manifest.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <set>
#include <stdexcept>
#include <tuple>

#include "checkpoint/hash.h"
#include "checkpoint/json.h"
#include "core/json.h"

namespace duet::ckpt {
namespace {

constexpr int kMaxDims = 16;
constexpr int kMaxWorld = 1 << 20;
constexpr std::int64_t kMaxElements = std::int64_t{1} << 62;

using json::Value;

// ---- typed access to parsed JSON, with the JSON path in every error ------------------------

class Reader {
 public:
  explicit Reader(std::string_view origin) : origin_(origin) {}

  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw std::runtime_error(origin_ + ": " + (where.empty() ? "" : where + ": ") + what);
  }

  const Value& member(const Value& obj, const std::string& where, std::string_view key, Value::Kind kind) const {
    if (obj.kind != Value::Kind::object) fail(where, std::string("expected an object, found ") + json::kind_name(obj.kind));
    const Value* v = obj.find(key);
    const std::string at = where.empty() ? std::string(key) : where + "." + std::string(key);
    if (!v) fail(where, "missing \"" + std::string(key) + "\"");
    if (v->kind != kind) fail(at, std::string("expected ") + json::kind_name(kind) + ", found " + json::kind_name(v->kind));
    return *v;
  }

  std::int64_t integer(const Value& obj, const std::string& where, std::string_view key, std::int64_t lo,
                       std::int64_t hi) const {
    const std::int64_t x = member(obj, where, key, Value::Kind::integer).integer;
    if (x < lo || x > hi)
      fail(where.empty() ? std::string(key) : where + "." + std::string(key),
           std::to_string(x) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return x;
  }

  std::string string(const Value& obj, const std::string& where, std::string_view key) const {
    return member(obj, where, key, Value::Kind::string).string;
  }

  std::vector<std::int64_t> ints(const Value& obj, const std::string& where, std::string_view key) const {
    const Value& arr = member(obj, where, key, Value::Kind::array);
    const std::string at = where + "." + std::string(key);
    if (arr.items.size() > kMaxDims) fail(at, "more than " + std::to_string(kMaxDims) + " dimensions");
    std::vector<std::int64_t> out;
    for (const Value& v : arr.items) {
      if (v.kind != Value::Kind::integer) fail(at, "expected integers");
      out.push_back(v.integer);
    }
    return out;
  }

  const std::string& origin() const { return origin_; }

 private:
  std::string origin_;
};

void check_format(const Reader& r, const Value& doc, std::string_view format) {
  if (r.string(doc, "", "format") != format)
    r.fail("format", "expected \"" + std::string(format) + "\" (is this a duet checkpoint file?)");
  const std::int64_t version = r.integer(doc, "", "version", 0, 1 << 30);
  if (version != 1) r.fail("version", std::to_string(version) + " is not supported (this duet reads version 1)");
}

CheckpointLayout parse_layout(const Reader& r, const Value& doc) {
  const Value& l = r.member(doc, "", "layout", Value::Kind::object);
  CheckpointLayout out;
  out.world = static_cast<int>(r.integer(l, "layout", "world", 1, kMaxWorld));
  out.pp = static_cast<int>(r.integer(l, "layout", "pp", 1, kMaxWorld));
  out.dp = static_cast<int>(r.integer(l, "layout", "dp", 1, kMaxWorld));
  out.ep = static_cast<int>(r.integer(l, "layout", "ep", 1, kMaxWorld));
  out.schedule = r.string(l, "layout", "schedule");
  out.config_hash = r.string(l, "layout", "config_hash");
  out.model_hash = r.string(l, "layout", "model_hash");
  if (l.find("lineage")) out.lineage = r.string(l, "layout", "lineage");  // absent before lineages
  return out;
}

void write_layout(core::json::Writer& w, const CheckpointLayout& l) {
  w.key("layout").begin_object();
  w.key("world").value(l.world).key("pp").value(l.pp).key("dp").value(l.dp).key("ep").value(l.ep);
  w.key("schedule").value(l.schedule).key("config_hash").value(l.config_hash).key("model_hash").value(l.model_hash);
  if (!l.lineage.empty()) w.key("lineage").value(l.lineage);
  w.end_object();
}

TensorInfo parse_tensor(const Reader& r, const Value& v, const std::string& where) {
  TensorInfo t;
  t.name = r.string(v, where, "name");
  t.dtype = r.string(v, where, "dtype");
  t.shape = r.ints(v, where, "shape");
  return t;
}

FileRecord parse_file_record(const Reader& r, const Value& doc, std::string_view key) {
  const std::string where(key);
  const Value& v = r.member(doc, "", key, Value::Kind::object);
  FileRecord f;
  f.file = r.string(v, where, "file");
  f.bytes = static_cast<std::uint64_t>(r.integer(v, where, "bytes", 0, kMaxElements));
  if (!parse_hex64(r.string(v, where, "xxh64"), f.xxh64)) r.fail(where + ".xxh64", "expected 16 hex digits");
  return f;
}

void write_file_record(core::json::Writer& w, std::string_view key, const FileRecord& f) {
  w.key(key).begin_object().key("file").value(f.file).key("bytes").value(static_cast<std::int64_t>(f.bytes));
  w.key("xxh64").value(format_hex64(f.xxh64)).end_object();
}

void write_tensor(core::json::Writer& w, const TensorInfo& t) {
  w.begin_object().key("name").value(t.name).key("dtype").value(t.dtype).key("shape").value(t.shape).end_object();
}

ShardRecord parse_shard(const Reader& r, const Value& v, const std::string& where) {
  ShardRecord s;
  s.rank = static_cast<int>(r.integer(v, where, "rank", 0, kMaxWorld - 1));
  s.file = r.string(v, where, "file");
  s.bytes = static_cast<std::uint64_t>(r.integer(v, where, "bytes", 0, kMaxElements));
  if (!parse_hex64(r.string(v, where, "xxh64"), s.xxh64)) r.fail(where + ".xxh64", "expected 16 hex digits");
  const Value& slices = r.member(v, where, "slices", Value::Kind::array);
  for (std::size_t k = 0; k < slices.items.size(); ++k) {
    const std::string at = where + ".slices[" + std::to_string(k) + "]";
    SliceRecord sl;
    sl.tensor = r.string(slices.items[k], at, "tensor");
    sl.offset = r.ints(slices.items[k], at, "offset");
    sl.shape = r.ints(slices.items[k], at, "shape");
    s.slices.push_back(std::move(sl));
  }
  return s;
}

void write_shard(core::json::Writer& w, const ShardRecord& s) {
  w.begin_object().key("rank").value(s.rank).key("file").value(s.file);
  w.key("bytes").value(static_cast<std::int64_t>(s.bytes)).key("xxh64").value(format_hex64(s.xxh64));
  w.key("slices").begin_array();
  for (const auto& sl : s.slices)
    w.begin_object().key("tensor").value(sl.tensor).key("offset").value(sl.offset).key("shape").value(sl.shape).end_object();
  w.end_array().end_object();
}

// ---- validation ------------------------------------------------------------------------------

void validate_tensor(const Reader& r, const TensorInfo& t, const std::string& where) {
  try {
    validate_tensor_name(t.name);
    if (t.shape.empty()) throw std::invalid_argument("a tensor needs at least one dimension");
    element_count(t.shape);
  } catch (const std::invalid_argument& e) {
    r.fail(where, "tensor '" + t.name + "': " + e.what());
  }
  if (t.dtype != "float32") r.fail(where, "tensor '" + t.name + "': dtype '" + t.dtype + "' (only float32 is supported)");
}

// Tensor names are HDF5 paths, so "a" and "a/b" cannot both exist ("a" would be a group).
void check_name_prefixes(const Reader& r, const std::vector<TensorInfo>& tensors) {
  std::set<std::string> names, groups;
  for (const auto& t : tensors) {
    if (!names.insert(t.name).second) r.fail("tensors", "tensor '" + t.name + "' is listed twice");
    for (std::size_t p = t.name.find('/'); p != std::string::npos; p = t.name.find('/', p + 1))
      groups.insert(t.name.substr(0, p));
  }
  for (const auto& g : groups)
    if (names.count(g)) r.fail("tensors", "'" + g + "' is both a tensor and a group of tensors ('" + g + "/…')");
}

void check_slice(const Reader& r, const SliceRecord& s, const TensorInfo& t, const std::string& where) {
  if (s.offset.size() != t.shape.size() || s.shape.size() != t.shape.size())
    r.fail(where, "tensor '" + t.name + "' has " + std::to_string(t.shape.size()) + " dimensions, the slice has offset " +
                      format_shape(s.offset) + " and shape " + format_shape(s.shape));
  for (std::size_t d = 0; d < t.shape.size(); ++d)
    if (s.offset[d] < 0 || s.shape[d] < 0 || s.offset[d] > t.shape[d] || s.shape[d] > t.shape[d] - s.offset[d])
      r.fail(where, "offset " + format_shape(s.offset) + " + shape " + format_shape(s.shape) + " does not fit tensor '" +
                        t.name + "' " + format_shape(t.shape));
}

struct Box {
  const std::vector<std::int64_t>* offset;
  const std::vector<std::int64_t>* shape;
  int rank;
};

bool overlap(const Box& a, const Box& b) {
  for (std::size_t d = 0; d < a.offset->size(); ++d) {
    const std::int64_t lo = std::max((*a.offset)[d], (*b.offset)[d]);
    const std::int64_t hi = std::min((*a.offset)[d] + (*a.shape)[d], (*b.offset)[d] + (*b.shape)[d]);
    if (lo >= hi) return false;
  }
  return true;
}

// Identical boxes are replicas; distinct boxes must be disjoint, and then full coverage is
// exactly "their volumes add up to the tensor's".
void check_coverage(const Reader& r, const TensorInfo& t, std::vector<Box>& boxes) {
  std::sort(boxes.begin(), boxes.end(), [](const Box& a, const Box& b) {
    return std::tie(*a.offset, *a.shape) < std::tie(*b.offset, *b.shape);
  });
  boxes.erase(std::unique(boxes.begin(), boxes.end(),
                          [](const Box& a, const Box& b) { return *a.offset == *b.offset && *a.shape == *b.shape; }),
              boxes.end());
  std::int64_t covered = 0;
  for (std::size_t i = 0; i < boxes.size(); ++i) {
    covered += element_count(*boxes[i].shape);
    // Sorted by offset[0]: only boxes starting before this one ends along dim 0 can overlap.
    for (std::size_t j = i + 1; j < boxes.size() && (*boxes[j].offset)[0] < (*boxes[i].offset)[0] + (*boxes[i].shape)[0]; ++j)
      if (element_count(*boxes[i].shape) && element_count(*boxes[j].shape) && overlap(boxes[i], boxes[j]))
        r.fail("shards", "tensor '" + t.name + "': the slice at " + format_shape(*boxes[i].offset) + " (rank " +
                             std::to_string(boxes[i].rank) + ") and the different slice at " +
                             format_shape(*boxes[j].offset) + " (rank " + std::to_string(boxes[j].rank) + ") overlap");
  }
  const std::int64_t total = element_count(t.shape);
  if (covered != total)
    r.fail("shards", "tensor '" + t.name + "' " + format_shape(t.shape) + ": the shards hold " + std::to_string(covered) +
                         " of its " + std::to_string(total) + " elements (a rank's slices are missing)");
}

// The "tensors" array of a manifest or sidecar, each entry named by its position.
std::vector<TensorInfo> parse_tensors(const Reader& r, const Value& doc) {
  const Value& tensors = r.member(doc, "", "tensors", Value::Kind::array);
  std::vector<TensorInfo> out;
  for (std::size_t k = 0; k < tensors.items.size(); ++k)
    out.push_back(parse_tensor(r, tensors.items[k], "tensors[" + std::to_string(k) + "]"));
  return out;
}

}  // namespace

const TensorInfo* Manifest::find_tensor(std::string_view name) const {
  auto it = std::lower_bound(tensors.begin(), tensors.end(), name,
                             [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  return it != tensors.end() && it->name == name ? &*it : nullptr;
}

std::string shard_file_name(int rank) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "shard-%05d.h5", rank);
  return buf;
}

std::string format_shape(std::span<const std::int64_t> shape) {
  std::string s = "[";
  for (std::size_t d = 0; d < shape.size(); ++d) s += (d ? ", " : "") + std::to_string(shape[d]);
  return s + "]";
}

std::int64_t element_count(std::span<const std::int64_t> shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0) throw std::invalid_argument("negative dimension in " + format_shape(shape));
    if (d && n > kMaxElements / d) throw std::invalid_argument("shape " + format_shape(shape) + " has more than 2^62 elements");
    n *= d;
  }
  return n;
}

void validate_tensor_name(std::string_view name) {
  auto bad = [&](const std::string& why) { throw std::invalid_argument("bad tensor name '" + std::string(name) + "': " + why); };
  if (name.empty()) bad("empty");
  if (name.size() > 1024) bad("longer than 1024 characters");
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || std::string_view("._+:=@-/").find(c) != std::string_view::npos))
      bad(std::string("character '") + c + "' (allowed: letters, digits, . _ + : = @ - and /)");
  if (name.front() == '/' || name.back() == '/') bad("leading or trailing '/'");
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = name.find('/', start);
    const std::string_view part = name.substr(start, end == std::string_view::npos ? end : end - start);
    if (part.empty() || part == "." || part == "..") bad("empty, '.' or '..' path component");
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  if (name.substr(0, 5) == "_duet") bad("names starting with '_duet' are reserved");
}

void validate_manifest(const Manifest& m, std::string_view origin) {
  const Reader r(origin);
  if (m.version != 1) r.fail("version", std::to_string(m.version) + " is not supported");
  if (m.step < 0) r.fail("step", "negative");
  const CheckpointLayout& l = m.layout;
  if (l.world < 1 || l.pp < 1 || l.dp < 1 || l.ep < 1 || l.world > kMaxWorld) r.fail("layout", "world, pp, dp and ep must be >= 1");
  if (m.index.file != "index.h5") r.fail("index", "file '" + m.index.file + "', expected 'index.h5'");
  for (std::size_t k = 0; k < m.tensors.size(); ++k) {
    validate_tensor(r, m.tensors[k], "tensors[" + std::to_string(k) + "]");
    if (k && !(m.tensors[k - 1].name < m.tensors[k].name))
      r.fail("tensors", "not sorted by name, or '" + m.tensors[k].name + "' is listed twice");
  }
  check_name_prefixes(r, m.tensors);
  if (m.shards.size() != static_cast<std::size_t>(l.world))
    r.fail("shards", std::to_string(m.shards.size()) + " shards listed for a world of " + std::to_string(l.world));
  std::vector<std::vector<Box>> boxes(m.tensors.size());
  for (std::size_t s = 0; s < m.shards.size(); ++s) {
    const ShardRecord& sh = m.shards[s];
    const std::string where = "shards[" + std::to_string(s) + "]";
    if (sh.rank != static_cast<int>(s)) r.fail(where, "rank " + std::to_string(sh.rank) + " listed in position " + std::to_string(s));
    if (sh.file != shard_file_name(sh.rank)) r.fail(where, "file '" + sh.file + "', expected '" + shard_file_name(sh.rank) + "'");
    std::set<std::string_view> seen;
    for (std::size_t k = 0; k < sh.slices.size(); ++k) {
      const SliceRecord& sl = sh.slices[k];
      const std::string at = where + ".slices[" + std::to_string(k) + "]";
      const TensorInfo* t = m.find_tensor(sl.tensor);
      if (!t) r.fail(at, "tensor '" + sl.tensor + "' is not in the tensor list");
      if (!seen.insert(sl.tensor).second) r.fail(at, "tensor '" + sl.tensor + "' appears twice in one shard");
      check_slice(r, sl, *t, at);
      boxes[static_cast<std::size_t>(t - m.tensors.data())].push_back({&sl.offset, &sl.shape, sh.rank});
    }
  }
  for (std::size_t k = 0; k < m.tensors.size(); ++k) check_coverage(r, m.tensors[k], boxes[k]);
}

std::string manifest_to_json(const Manifest& m) {
  core::json::Writer w(core::json::Writer::Style::Indented);
  w.begin_object().key("format").value("duet-checkpoint").key("version").value(m.version).key("step").value(m.step);
  write_layout(w, m.layout);
  write_file_record(w, "index", m.index);
  w.key("tensors").begin_array();
  for (const auto& t : m.tensors) write_tensor(w, t);
  w.end_array().key("shards").begin_array();
  for (const auto& s : m.shards) write_shard(w, s);
  w.end_array().end_object();
  return w.str() + "\n";  // a text file: ends with a newline
}

// The JSON object of a manifest or sidecar, with its "format" checked.
static Value parse_document(const Reader& r, std::string_view text, const char* format) {
  Value doc;
  try {
    doc = json::parse(text);
  } catch (const json::Error& e) {
    r.fail("", std::string("not valid JSON: ") + e.what());
  }
  if (doc.kind != Value::Kind::object) r.fail("", "expected a JSON object");
  check_format(r, doc, format);
  return doc;
}

Manifest parse_manifest(std::string_view text, std::string_view origin) {
  const Reader r(origin);
  const Value doc = parse_document(r, text, "duet-checkpoint");
  Manifest m;
  m.step = r.integer(doc, "", "step", 0, kMaxElements);
  m.layout = parse_layout(r, doc);
  m.index = parse_file_record(r, doc, "index");
  m.tensors = parse_tensors(r, doc);
  const Value& shards = r.member(doc, "", "shards", Value::Kind::array);
  if (shards.items.size() > kMaxWorld) r.fail("shards", "too many shards");
  for (std::size_t k = 0; k < shards.items.size(); ++k)
    m.shards.push_back(parse_shard(r, shards.items[k], "shards[" + std::to_string(k) + "]"));
  validate_manifest(m, origin);
  return m;
}

std::string sidecar_to_json(const ShardSidecar& s) {
  core::json::Writer w(core::json::Writer::Style::Indented);
  w.begin_object().key("format").value("duet-checkpoint-shard").key("version").value(1).key("step").value(s.step);
  write_layout(w, s.layout);
  w.key("tensors").begin_array();
  for (const auto& t : s.tensors) write_tensor(w, t);
  w.end_array().key("shard");
  write_shard(w, s.shard);
  w.end_object();
  return w.str() + "\n";  // a text file: ends with a newline
}

ShardSidecar parse_sidecar(std::string_view text, std::string_view origin) {
  const Reader r(origin);
  const Value doc = parse_document(r, text, "duet-checkpoint-shard");
  ShardSidecar s;
  s.step = r.integer(doc, "", "step", 0, kMaxElements);
  s.layout = parse_layout(r, doc);
  s.tensors = parse_tensors(r, doc);
  for (std::size_t k = 0; k < s.tensors.size(); ++k) validate_tensor(r, s.tensors[k], "tensors[" + std::to_string(k) + "]");
  s.shard = parse_shard(r, r.member(doc, "", "shard", Value::Kind::object), "shard");
  for (std::size_t k = 0; k < s.shard.slices.size(); ++k) {
    const SliceRecord& sl = s.shard.slices[k];
    auto it = std::find_if(s.tensors.begin(), s.tensors.end(), [&](const TensorInfo& t) { return t.name == sl.tensor; });
    if (it == s.tensors.end()) r.fail("shard.slices[" + std::to_string(k) + "]", "tensor '" + sl.tensor + "' is not listed");
    check_slice(r, sl, *it, "shard.slices[" + std::to_string(k) + "]");
  }
  return s;
}

}  // namespace duet::ckpt
