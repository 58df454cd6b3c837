#pragma once
// A small JSON reader for checkpoint manifests. Its own (not yaml-cpp) so that the grammar it
// accepts is strict JSON, it never recurses deeper than kMaxDepth on hostile input
// (fuzz/fuzz_manifest.cpp), integers up to int64 are exact, and errors carry line:column.
// Manifests are written with core::json::Writer (Style::Indented).

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace duet::ckpt::json {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Member;

// One JSON value. Objects keep their keys in file order; a repeated key is a parse error.
struct Value {
  enum class Kind { null, boolean, integer, number, string, array, object };
  Kind kind = Kind::null;
  bool boolean = false;
  std::int64_t integer = 0;  // kind == integer: a number written without '.', 'e' that fits int64
  double number = 0;         // kind == number (and integer, converted)
  std::string string;
  std::vector<Value> items;    // array
  std::vector<Member> fields;  // object

  const Value* find(std::string_view key) const;  // object member or nullptr
};

struct Member {
  std::string key;
  Value value;
};

constexpr int kMaxDepth = 32;

// Parses one JSON document (surrounding whitespace allowed). Throws json::Error
// "line L, column C: <what is wrong>".
Value parse(std::string_view text);

const char* kind_name(Value::Kind k);

}  // namespace duet::ckpt::json
