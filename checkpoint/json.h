#pragma once
// A small JSON reader and writer for checkpoint manifests. Its own (not yaml-cpp) so that the
// grammar it accepts is strict JSON, it never recurses deeper than kMaxDepth on hostile input
// (fuzz/fuzz_manifest.cpp), integers up to int64 are exact, and errors carry line:column.

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

// Writes JSON text with two-space indentation; arrays of scalars stay on one line (shapes).
class Writer {
 public:
  Writer& begin_object();
  Writer& end_object();
  Writer& begin_array();
  Writer& end_array();
  Writer& key(std::string_view k);
  Writer& value(std::string_view s);
  Writer& value(const char* s) { return value(std::string_view(s)); }
  Writer& value(const std::string& s) { return value(std::string_view(s)); }
  Writer& value(std::int64_t x);
  Writer& value(int x) { return value(static_cast<std::int64_t>(x)); }
  Writer& value(bool b);
  Writer& value(const std::vector<std::int64_t>& xs);  // [1, 2, 3] on one line
  std::string str() const { return out_ + "\n"; }

 private:
  void before_value();
  void newline();
  std::string out_;
  std::vector<bool> first_;  // per open container: no element written yet
  bool after_key_ = false;
};

std::string quote(std::string_view s);

}  // namespace duet::ckpt::json
