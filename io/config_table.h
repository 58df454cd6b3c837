#pragma once
// Internal to io/config*: the key table behind RunConfig. Not for other modules; they use
// config_keys() from io/config.h.
//
// Each key is defined once (io/config_keys.cpp) with its type, range and help. From that one
// row come: parsing a YAML scalar, the range check, the text written by to_yaml, the allowed
// values quoted in errors and the CLI help.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "io/config.h"

namespace duet::io::detail {

enum class KeyKind { Int, UInt64, Float, Bool, String, Enum };

// Bounds of an Int or Float key. Int keys are also bounded by the range of `int`.
struct Range {
  bool has_lo = false, has_hi = false;
  bool lo_open = false, hi_open = false;  // open: the bound itself is not allowed
  double lo = 0, hi = 0;
};

// A key's value between YAML text and the struct member; an Enum holds its name.
using Value = std::variant<std::int64_t, std::uint64_t, double, bool, std::string>;

// A default that depends on other keys (train.min_lr = train.lr / 10), applied when the key
// is absent from the YAML and the overrides.
struct DerivedDefault {
  std::string text;                    // "train.lr / 10", shown in help
  void (*apply)(RunConfig&) = nullptr;
};

struct KeyDef {
  std::string path;  // "train.steps" — also the member path in RunConfig
  KeyKind kind = KeyKind::Int;
  std::string help;  // what the key means, one line
  Range range;
  std::vector<std::string> choices;  // Enum names, in enum order
  DerivedDefault derived;
  bool non_empty = false;  // String: "" is not allowed
  bool bytes = false;      // UInt64: also accepts a size with a unit (8GiB, 512MiB, 2.5G)
  std::function<Value(const RunConfig&)> get;
  std::function<void(RunConfig&, const Value&)> set;
};

// A scalar as found in YAML or in a --set override.
struct Scalar {
  std::string text;
  bool is_null = false;  // `key:` with nothing, `~` or `null`
  std::string where;     // error prefix: "tiny.yaml:12:10: " or "--set train.steps=x: "
};

const std::vector<KeyDef>& key_table();
const KeyDef* find_key(std::string_view path);

// "an integer ≥ 1", "a number with 0 < x ≤ 0.5", "one of 1f1b, zb1p, dualpipe, dualpipev".
std::string allowed_text(const KeyDef& key);

// Parses `s` as the key's type and checks its range. Throws ConfigError:
//   "<where>train.steps: expected an integer ≥ 1, got 'ten'".
Value parse_value(const KeyDef& key, const Scalar& s);

// Throws ConfigError when v is outside the key's range (for configs built in code).
void check_range(const KeyDef& key, const Value& v);

// The YAML scalar text of a value; parse_value(format_value(v)) == v.
std::string format_value(const KeyDef& key, const Value& v);

// The rules that join keys (d_model % heads, ep | dp, ...).
void check_cross_key_rules(const RunConfig& cfg);

}  // namespace duet::io::detail
