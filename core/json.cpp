#include "core/json.h"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace duet::core::json {

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (ch < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", ch);
          out += buf;
        } else {
          out += static_cast<char>(ch);
        }
    }
  }
  return out + "\"";
}

std::string number(double x) {
  if (!std::isfinite(x)) return "null";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, r.ptr);
}

void Writer::newline() {
  out_ += '\n';
  out_.append(2 * first_.size(), ' ');
}

void Writer::before_value() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (first_.empty()) return;
  if (!first_.back()) out_ += style_ == Style::Compact ? ", " : ",";
  first_.back() = false;
  if (style_ == Style::Indented) newline();
}

Writer& Writer::begin_object() {
  before_value();
  out_ += '{';
  first_.push_back(true);
  return *this;
}

Writer& Writer::end_object() {
  const bool empty = first_.back();
  first_.pop_back();
  if (!empty && style_ == Style::Indented) newline();
  out_ += '}';
  return *this;
}

Writer& Writer::begin_array() {
  before_value();
  out_ += '[';
  first_.push_back(true);
  return *this;
}

Writer& Writer::end_array() {
  const bool empty = first_.back();
  first_.pop_back();
  if (!empty && style_ == Style::Indented) newline();
  out_ += ']';
  return *this;
}

Writer& Writer::key(std::string_view k) {
  before_value();
  out_ += quote(k);
  out_ += ": ";
  after_key_ = true;
  return *this;
}

Writer& Writer::value(std::string_view s) {
  before_value();
  out_ += quote(s);
  return *this;
}

Writer& Writer::value(std::int64_t x) {
  before_value();
  out_ += std::to_string(x);
  return *this;
}

Writer& Writer::value(double x) {
  before_value();
  out_ += number(x);
  return *this;
}

Writer& Writer::value(bool b) {
  before_value();
  out_ += b ? "true" : "false";
  return *this;
}

Writer& Writer::value(const std::vector<std::int64_t>& xs) {
  before_value();
  out_ += '[';
  for (std::size_t k = 0; k < xs.size(); ++k) out_ += (k ? ", " : "") + std::to_string(xs[k]);
  out_ += ']';
  return *this;
}

Writer& Writer::null() {
  before_value();
  out_ += "null";
  return *this;
}

Writer& Writer::raw(std::string_view json) {
  before_value();
  out_ += json;
  return *this;
}

}  // namespace duet::core::json
