#pragma once
// A minimal JSON writer for the scheduler's outputs (schedules, simulation results). Writes
// compact JSON; numbers use the shortest representation that reads back exactly.
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>

namespace duet::sched {

class JsonWriter {
 public:
  JsonWriter& begin_object() { value_prefix(); out_ += '{'; first_ = true; return *this; }
  JsonWriter& end_object() { out_ += '}'; first_ = false; return *this; }
  JsonWriter& begin_array() { value_prefix(); out_ += '['; first_ = true; return *this; }
  JsonWriter& end_array() { out_ += ']'; first_ = false; return *this; }
  JsonWriter& key(std::string_view k) {
    if (!first_) out_ += ", ";
    string_literal(k);
    out_ += ": ";
    after_key_ = true;
    return *this;
  }
  JsonWriter& value(std::string_view s) { value_prefix(); string_literal(s); return *this; }
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }
  JsonWriter& value(int v) { value_prefix(); out_ += std::to_string(v); return *this; }
  JsonWriter& value(bool v) { value_prefix(); out_ += v ? "true" : "false"; return *this; }
  JsonWriter& value(double v) {
    value_prefix();
    if (!std::isfinite(v)) { out_ += "null"; return *this; }
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out_.append(buf, r.ptr);
    return *this;
  }
  const std::string& str() const { return out_; }

 private:
  void value_prefix() {
    if (after_key_) after_key_ = false;
    else if (!first_) out_ += ", ";
    first_ = false;
  }
  void string_literal(std::string_view s) {
    out_ += '"';
    for (char c : s) {
      if (c == '"' || c == '\\') { out_ += '\\'; out_ += c; }
      else if (c == '\n') out_ += "\\n";
      else if (static_cast<unsigned char>(c) < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out_ += buf;
      } else out_ += c;
    }
    out_ += '"';
  }

  std::string out_;
  bool first_ = true;
  bool after_key_ = false;
};

}  // namespace duet::sched
