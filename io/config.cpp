// RunConfig from YAML: walk the document against the key table, apply --set overrides,
// convert and validate. Every problem becomes a ConfigError naming the key and its location.
//
// The flow is: YAML text -> flat map (dotted path -> scalar, with where it came from)
// -> overrides replace entries -> each table row parses its entry -> cross-key rules.
// Flattening first is what lets unknown keys, duplicates and non-map sections be reported
// before any value is converted, and lets overrides go through the same checks as the file.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "io/config_table.h"
#include "io/fault_plan.h"
#include "io/read_limited.h"

namespace duet::io {

namespace detail {
// Defined in the file generated from configs/tiny.yaml (see io/CMakeLists.txt).
extern const char kDefaultConfigText[];
}  // namespace detail

namespace {

using detail::find_key;
using detail::key_table;
using detail::KeyDef;
using detail::Scalar;

// ---- the shape of the key tree, derived from the table ----------------------------------

struct Schema {
  std::map<std::string, std::vector<std::string>> children;  // section ("" = top) -> names, table order
  std::set<std::string> sections;                            // "model", "model.moe", ...
  std::vector<std::string> paths;                            // every key and section
};

std::string parent_of(std::string_view path) {
  auto dot = path.rfind('.');
  return dot == std::string_view::npos ? std::string() : std::string(path.substr(0, dot));
}

std::string leaf_of(std::string_view path) {
  auto dot = path.rfind('.');
  return std::string(dot == std::string_view::npos ? path : path.substr(dot + 1));
}

std::string join(const std::string& parent, const std::string& name) {
  return parent.empty() ? name : parent + "." + name;
}

const Schema& schema() {
  static const Schema s = [] {
    Schema s;
    auto add_child = [&](const std::string& parent, const std::string& name) {
      auto& list = s.children[parent];
      if (std::find(list.begin(), list.end(), name) == list.end()) list.push_back(name);
    };
    for (const auto& key : key_table()) {
      // Register every enclosing section ("model", then "model.moe") and then the key.
      std::string path = key.path;
      for (std::size_t dot = path.find('.'); dot != std::string::npos; dot = path.find('.', dot + 1)) {
        const std::string section = path.substr(0, dot);
        add_child(parent_of(section), leaf_of(section));
        if (s.sections.insert(section).second) s.paths.push_back(section);
      }
      add_child(parent_of(path), leaf_of(path));
      s.paths.push_back(path);
    }
    return s;
  }();
  return s;
}

std::string list_names(const std::vector<std::string>& names) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i];
  return out;
}

// ---- unknown keys: suggest the closest valid one ----------------------------------------

// Optimal-string-alignment distance: edits, with a swap of neighbours counted as one
// ("setps" -> "steps" is 1), which is the usual typo.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i)
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

// How far a typed name is from a valid one: the edit distance, except that a name inside the
// other ("warmup" in "warmup_steps", "vocab" in "vocab_size") or the same words in another
// order ("lr_min" for "min_lr") count as 1.
std::size_t name_distance(const std::string& typed, const std::string& valid) {
  std::size_t d = edit_distance(typed, valid);
  const std::string& shorter = typed.size() < valid.size() ? typed : valid;
  const std::string& longer = typed.size() < valid.size() ? valid : typed;
  if (shorter.size() >= 4 && longer.find(shorter) != std::string::npos) d = std::min<std::size_t>(d, 1);
  auto words = [](const std::string& s) {
    std::multiset<std::string> w;
    std::istringstream in(s);
    for (std::string part; std::getline(in, part, '_');) w.insert(part);
    return w;
  };
  if (typed.find('_') != std::string::npos && words(typed) == words(valid)) d = std::min<std::size_t>(d, 1);
  return d;
}

// The closest valid path to `path`, or "" when nothing is close. Siblings are tried first
// (a typo), then every path by its full name or by its last name (a key in the wrong
// section: train.experts -> model.moe.experts).
// The most edits a typed name may be from the name it was meant as: 1 up to 5 letters, then
// a quarter of its length (at least 2).
std::size_t typo_limit(const std::string& typed) {
  return typed.size() <= 5 ? 1 : std::max<std::size_t>(2, typed.size() / 4);
}

std::string closest_path(const std::string& path) {
  const std::string parent = parent_of(path), name = leaf_of(path);
  const std::size_t limit = typo_limit(name);
  std::string best;
  std::size_t best_d = limit + 1;
  auto consider = [&](const std::string& candidate, std::size_t d) {
    if (d < best_d) best = candidate, best_d = d;
  };
  auto it = schema().children.find(parent);
  if (it != schema().children.end())
    for (const auto& sibling : it->second) consider(join(parent, sibling), name_distance(name, sibling));
  for (const auto& p : schema().paths)
    consider(p, std::min(edit_distance(path, p), name_distance(name, leaf_of(p))));
  return best;
}

std::string unknown_key_message(const std::string& path) {
  std::string msg = "unknown key '" + path + "'";
  if (std::string best = closest_path(path); !best.empty()) return msg + " (did you mean '" + best + "'?)";
  const std::string parent = parent_of(path);
  auto it = schema().children.find(parent);
  if (it == schema().children.end()) return msg;
  if (parent.empty()) return msg + " (valid sections: " + list_names(it->second) + ")";
  return msg + " (valid keys under '" + parent + "': " + list_names(it->second) + ")";
}

// ---- YAML document -> flat entries ------------------------------------------------------

using Entries = std::map<std::string, Scalar>;  // dotted key path -> its scalar

std::string location(std::string_view source, const YAML::Mark& mark) {
  std::string s(source);
  if (!mark.is_null()) s += ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
  return s + ": ";
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Null: return "an empty value";
    default: return "'" + node.Scalar() + "'";
  }
}

// Walks one map level. `section` is "" for the document itself.
void flatten(const YAML::Node& node, const std::string& section, std::string_view source, Entries& out) {
  if (node.IsNull()) return;  // `checkpoint:` with every key commented out: all defaults
  if (!node.IsMap()) {
    const std::string what = section.empty() ? "the document" : "'" + section + "'";
    throw ConfigError(location(source, node.Mark()) + "expected " + what + " to be a map of keys (" +
                      list_names(schema().children.at(section)) + "), got " + describe(node));
  }
  std::map<std::string, YAML::Mark> seen;
  for (const auto& kv : node) {
    const YAML::Node& k = kv.first;
    const YAML::Node& v = kv.second;
    const std::string where = location(source, k.Mark());
    if (!k.IsScalar())
      throw ConfigError(where + "keys must be plain names, got " + describe(k) +
                        (section.empty() ? "" : " in '" + section + "'"));
    const std::string path = join(section, k.Scalar());
    if (auto [it, fresh] = seen.emplace(k.Scalar(), k.Mark()); !fresh)
      throw ConfigError(where + "key '" + path + "' is given twice (first at line " +
                        std::to_string(it->second.line + 1) + ")");
    if (schema().sections.count(path)) {
      flatten(v, path, source, out);
    } else if (const KeyDef* key = find_key(path)) {
      if (!v.IsNull() && !v.IsScalar())
        throw ConfigError(where + path + ": expected " + detail::allowed_text(*key) + ", got " + describe(v));
      out[path] = Scalar{v.IsNull() ? std::string() : v.Scalar(), v.IsNull(),
                         location(source, v.Mark().is_null() ? k.Mark() : v.Mark())};
    } else {
      throw ConfigError(where + unknown_key_message(path));
    }
  }
}

Entries flatten_text(std::string_view text, std::string_view source) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(text));
  } catch (const YAML::ParserException& e) {
    throw ConfigError(location(source, e.mark) + "YAML syntax error: " + e.msg);
  }
  if (docs.size() > 1)
    throw ConfigError(std::string(source) + ": holds " + std::to_string(docs.size()) +
                      " YAML documents ('---'); expected one");
  Entries entries;
  if (!docs.empty()) flatten(docs.front(), "", source, entries);
  return entries;
}

void apply_override(const std::string& text, Entries& entries, std::map<std::string, std::string>& given) {
  const auto [path, value] = split_override(text);
  const std::string where = "--set " + text + ": ";
  const KeyDef* key = find_key(path);
  if (!key) {
    if (schema().sections.count(path))
      throw ConfigError(where + "'" + path + "' is a section; set one of its keys (" +
                        list_names(schema().children.at(path)) + ")");
    throw ConfigError(where + unknown_key_message(path));
  }
  if (auto [it, fresh] = given.emplace(path, text); !fresh)
    throw ConfigError(where + path + " is set twice (also by --set " + it->second + ")");
  YAML::Node node;
  try {
    node = YAML::Load(value);
  } catch (const YAML::ParserException& e) {
    if (key->kind != detail::KeyKind::String)
      throw ConfigError(where + path + ": cannot read '" + value + "' as a YAML value: " + e.msg);
    node = YAML::Node(value);
  }
  if (!node.IsNull() && !node.IsScalar()) {
    // A string key takes the text as typed: a path like "/data/a: b" is not meant as YAML.
    if (key->kind != detail::KeyKind::String)
      throw ConfigError(where + path + ": expected " + detail::allowed_text(*key) + ", got " + describe(node));
    node = YAML::Node(value);
  }
  entries[path] = Scalar{node.IsNull() ? std::string() : node.Scalar(), node.IsNull(), where};
}

// ---- the rules that join keys -----------------------------------------------------------

[[noreturn]] void fail(const std::string& msg) { throw ConfigError(msg); }

std::string num(int x) { return std::to_string(x); }
std::string num(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}

}  // namespace

std::string closest_key(const std::string& path) { return closest_path(path); }

std::string closest_name(const std::string& typed, const std::vector<std::string>& names) {
  std::string best;
  std::size_t best_d = typo_limit(typed) + 1;
  for (const auto& n : names)
    if (const std::size_t d = name_distance(typed, n); d < best_d) best = n, best_d = d;
  return best;
}

std::pair<std::string, std::string> split_override(std::string_view text) {
  const auto eq = text.find('=');
  std::string key(text.substr(0, eq == std::string_view::npos ? text.size() : eq));
  const auto is_space = [](unsigned char c) { return std::isspace(c); };
  key.erase(key.begin(), std::find_if_not(key.begin(), key.end(), is_space));
  key.erase(std::find_if_not(key.rbegin(), key.rend(), is_space).base(), key.end());
  if (eq == std::string_view::npos || key.empty())
    throw ConfigError("--set " + std::string(text) + ": expected key=value, e.g. train.steps=10");
  return {key, std::string(text.substr(eq + 1))};
}

namespace detail {

void check_cross_key_rules(const RunConfig& c) {
  const auto& m = c.model;
  if (m.d_model % m.heads != 0)
    fail("model.d_model (" + num(m.d_model) + ") must be divisible by model.heads (" + num(m.heads) + ")");
  if ((m.d_model / m.heads) % 2 != 0)
    fail("model.d_model / model.heads (" + num(m.d_model) + " / " + num(m.heads) + " = " + num(m.d_model / m.heads) +
         ") must be even: RoPE rotates pairs of dimensions in each head");
  if (m.dense_layers > m.layers)
    fail("model.dense_layers (" + num(m.dense_layers) + ") must be ≤ model.layers (" + num(m.layers) + ")");
  if (m.moe.top_k > m.moe.experts)
    fail("model.moe.top_k (" + num(m.moe.top_k) + ") must be ≤ model.moe.experts (" + num(m.moe.experts) + ")");
  if (m.moe.experts % m.moe.groups != 0)
    fail("model.moe.groups (" + num(m.moe.groups) + ") must divide model.moe.experts (" + num(m.moe.experts) + ")");
  if (m.moe.group_limit > m.moe.groups)
    fail("model.moe.group_limit (" + num(m.moe.group_limit) + ") must be ≤ model.moe.groups (" + num(m.moe.groups) + ")");
  // Routing picks top_k experts among the allowed groups, so those must hold enough experts.
  if (static_cast<long long>(m.moe.group_limit) * (m.moe.experts / m.moe.groups) < m.moe.top_k)
    fail("model.moe.top_k (" + num(m.moe.top_k) + ") must be ≤ model.moe.group_limit × experts per group (" +
         num(m.moe.group_limit) + " × " + num(m.moe.experts / m.moe.groups) + ")");
  if (m.attention == AttentionKind::kMLA) {
    const std::pair<const char*, int> dims[] = {{"model.mla.kv_lora_rank", m.mla.kv_lora_rank},
                                                {"model.mla.qk_nope_head_dim", m.mla.qk_nope_head_dim},
                                                {"model.mla.qk_rope_head_dim", m.mla.qk_rope_head_dim},
                                                {"model.mla.v_head_dim", m.mla.v_head_dim}};
    for (const auto& [key, value] : dims)
      if (value < 1) fail(std::string(key) + " must be ≥ 1 when model.attention is mla, got " + num(value));
    if (m.mla.qk_rope_head_dim % 2 != 0)
      fail("model.mla.qk_rope_head_dim (" + num(m.mla.qk_rope_head_dim) +
           ") must be even: RoPE rotates pairs of dimensions");
  }

  const auto& t = c.train;
  if (t.global_batch % t.micro_batch_size != 0)
    fail("train.micro_batch_size (" + num(t.micro_batch_size) + ") must divide train.global_batch (" +
         num(t.global_batch) + ")");
  // The layout rules (ep | dp, ep | experts, whole micro-batches per replica, the schedule's
  // micro-batch rule) are the ones every layout check uses: core/layout.h.
  const auto& p = c.parallel;
  const std::string layout = core::layout_violation(p.pp * p.dp, configured_layout(c), layout_rules(c));
  if (!layout.empty()) fail(layout);
  if (c.cluster.comm_sms >= c.cluster.sms)
    fail("cluster.comm_sms (" + num(c.cluster.comm_sms) + ") must be < cluster.sms (" + num(c.cluster.sms) +
         "): compute needs at least one SM");
  if (t.min_lr > t.lr) fail("train.min_lr (" + num(t.min_lr) + ") must be ≤ train.lr (" + num(t.lr) + ")");

  if (!c.runtime.fail_plan.empty()) parse_fault_plan(c.runtime.fail_plan);  // throws naming the key

  // run.name names one folder under run.dir.
  const std::string& name = c.run.name;
  if (name.find('/') != std::string::npos || name == "." || name == "..")
    fail("run.name: expected a folder name without '/' (not '.' or '..'), got '" + name + "'");
  // run.id becomes part of file names (a checkpoint of a run that shares checkpoint.dir is
  // step-N.<id>; its listing splits names at '.'): letters, digits, '-' and '_' only.
  const std::string& id = c.run.id;
  const bool id_ok = id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
  });
  if (!id_ok)
    fail("run.id: expected \"\" or up to 64 letters, digits, '-' and '_' (a new run gets 16 hex digits), got '" + id +
         "'");
}

}  // namespace detail

void require_trainable(const RunConfig& cfg) {
  const auto& m = cfg.model;
  const std::string why = " (`duet simulate` models it; the CPU trainer does not run it)";
  if (m.attention != AttentionKind::kMHA)
    fail("model.attention: duet train runs only mha, got mla" + why);
  if (m.mtp_depth != 0) fail("model.mtp_depth: duet train runs only 0 (no multi-token prediction), got " + num(m.mtp_depth) + why);
  if (m.precision == Precision::kFP8)
    fail("model.precision: duet train runs fp32, or bf16 with runtime.device: cuda; got fp8" + why);
  if (m.precision == Precision::kBF16 && cfg.runtime.device != Device::Cuda)
    fail("model.precision: bf16 GEMMs run on runtime.device: cuda (the CPU's are FP32); allowed here: fp32");
  if (m.moe.group_limit < m.moe.groups)
    fail("model.moe.group_limit: duet train runs only plain top-k routing (group_limit = groups), got " +
         num(m.moe.group_limit) + " of " + num(m.moe.groups) + " groups" + why);
}

core::LayoutRules layout_rules(const RunConfig& cfg) {
  core::LayoutRules r;
  r.schedule = cfg.parallel.schedule;
  r.global_batch = cfg.train.global_batch, r.micro_batch_size = cfg.train.micro_batch_size;
  r.experts = cfg.model.moe.experts;
  return r;
}

core::Layout configured_layout(const RunConfig& cfg) { return {cfg.parallel.pp, cfg.parallel.dp, cfg.parallel.ep}; }

void validate(const RunConfig& cfg) {
  for (const auto& key : key_table()) detail::check_range(key, key.get(cfg));
  detail::check_cross_key_rules(cfg);
}

RunConfig parse_config(std::string_view yaml_text, const std::vector<std::string>& overrides,
                       std::string_view source_name) {
  Entries entries = flatten_text(yaml_text, source_name);
  std::map<std::string, std::string> given;
  for (const auto& o : overrides) apply_override(o, entries, given);

  RunConfig cfg;  // the defaults, then every key that was given
  for (const auto& key : key_table())
    if (auto it = entries.find(key.path); it != entries.end()) key.set(cfg, detail::parse_value(key, it->second));
  for (const auto& key : key_table())
    if (key.derived.apply && !entries.count(key.path)) key.derived.apply(cfg);
  validate(cfg);
  return cfg;
}

RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::string text;
  try {
    text = read_file_limited(path, kMaxConfigFileBytes, "config file");
  } catch (const std::runtime_error& e) {  // FileTooLargeError included: a config error either way
    throw ConfigError(e.what());
  }
  return parse_config(text, overrides, path);
}

std::string default_config_text() { return detail::kDefaultConfigText; }

std::string to_yaml(const RunConfig& cfg) {
  std::string out = "# duet run configuration: every key, resolved. Load it with --config.\n";
  std::vector<std::string> open;  // the sections we are inside, outermost first
  for (const auto& key : key_table()) {
    std::vector<std::string> want;  // the key's sections
    for (std::string s = parent_of(key.path); !s.empty(); s = parent_of(s)) want.insert(want.begin(), leaf_of(s));
    std::size_t common = 0;
    while (common < open.size() && common < want.size() && open[common] == want[common]) ++common;
    open.resize(common);
    for (std::size_t i = common; i < want.size(); ++i) {
      if (i == 0) out += "\n";
      out += std::string(2 * i, ' ') + want[i] + ":\n";
      open.push_back(want[i]);
    }
    out += std::string(2 * open.size(), ' ') + leaf_of(key.path) + ": " + detail::format_value(key, key.get(cfg)) +
           "\n";
  }
  return out;
}

std::string config_hash(const RunConfig& cfg) {
  std::uint64_t h = 14695981039346656037ull;  // FNV-1a 64
  for (unsigned char ch : to_yaml(cfg)) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

const std::vector<ConfigKey>& config_keys() {
  static const std::vector<ConfigKey> keys = [] {
    const RunConfig defaults;
    std::vector<ConfigKey> out;
    for (const auto& key : key_table()) {
      ConfigKey k;
      k.path = key.path;
      switch (key.kind) {
        case detail::KeyKind::Int: k.type = "int"; break;
        case detail::KeyKind::UInt64: k.type = "uint64"; break;
        case detail::KeyKind::Float: k.type = "float"; break;
        case detail::KeyKind::Bool: k.type = "bool"; break;
        case detail::KeyKind::String: k.type = "string"; break;
        case detail::KeyKind::Enum:
          for (std::size_t i = 0; i < key.choices.size(); ++i) k.type += (i ? "|" : "") + key.choices[i];
          break;
      }
      k.allowed = detail::allowed_text(key);
      k.default_value = key.derived.apply ? key.derived.text : detail::format_value(key, key.get(defaults));
      k.help = key.help + "; " + k.allowed + " (default " + k.default_value + ")";
      out.push_back(std::move(k));
    }
    return out;
  }();
  return keys;
}

}  // namespace duet::io
