#pragma once
// The one JSON writer: metrics lines, schedules, simulation results, checkpoint manifests and
// reports all write through it. Numbers use the shortest text that reads back to the same
// double; NaN and ±inf, which JSON cannot express, are written as null. Strings are escaped
// (UTF-8 passes through).
//
//   json::Writer w;                      // compact: {"a": 1, "b": [1, 2]}
//   w.begin_object().key("a").value(1).key("b").begin_array().value(1).value(2).end_array().end_object();
//   json::Writer pretty(json::Writer::Style::Indented);  // two spaces a level, scalar arrays
//                                                        // from value(vector) on one line

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace duet::core::json {

std::string quote(std::string_view s);  // a JSON string literal, quotes included
std::string number(double x);           // shortest round-trip text, or null

class Writer {
 public:
  enum class Style { Compact, Indented };
  explicit Writer(Style style = Style::Compact) : style_(style) {}

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
  Writer& value(double x);
  Writer& value(bool b);
  Writer& value(const std::vector<std::int64_t>& xs);  // [1, 2, 3] on one line
  Writer& null();
  // Text that is already JSON (a nested document written by another Writer).
  Writer& raw(std::string_view json);

  const std::string& str() const { return out_; }

 private:
  void before_value();
  void newline();
  Style style_;
  std::string out_;
  std::vector<bool> first_;  // per open container: no element written yet
  bool after_key_ = false;
};

}  // namespace duet::core::json
