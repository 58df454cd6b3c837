#include "report/jsonl.h"

#include <cctype>
#include <charconv>
#include <stdexcept>

namespace duet::report {
namespace {

class Parser {
 public:
  explicit Parser(const std::string& s) : s_(s) {}

  JsonObject object() {
    JsonObject out;
    expect('{');
    skip();
    if (peek() == '}') return ++i_, end(out);
    for (;;) {
      skip();
      std::string key = string();
      skip();
      expect(':');
      skip();
      out[key] = value();
      skip();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      expect('}');
      return end(out);
    }
  }

 private:
  JsonObject& end(JsonObject& o) {
    skip();
    if (i_ != s_.size()) fail("text after the object");
    return o;
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw std::invalid_argument(what + " at character " + std::to_string(i_ + 1));
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  bool word(const char* w) {
    const std::string t(w);
    if (s_.compare(i_, t.size(), t) != 0) return false;
    i_ += t.size();
    return true;
  }
  double number() {
    const char* b = s_.data() + i_;
    double x = 0;
    auto r = std::from_chars(b, s_.data() + s_.size(), x);
    if (r.ec != std::errc() || r.ptr == b) fail("expected a number");
    i_ += r.ptr - b;
    return x;
  }
  std::string string() {
    expect('"');
    std::string out;
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (c == '\\') {
        if (i_ >= s_.size()) break;
        const char e = s_[i_++];
        switch (e) {
          case 'n': out += '\n'; break;
          case 't': out += '\t'; break;
          case 'r': out += '\r'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'u': {  // kept as written: reports only print these strings
            out += "\\u";
            break;
          }
          default: out += e;
        }
      } else {
        out += c;
      }
    }
    expect('"');
    return out;
  }
  JsonValue value() {
    JsonValue v;
    const char c = peek();
    if (c == '"') {
      v.kind = JsonValue::Kind::String, v.text = string();
    } else if (c == '[') {
      ++i_;
      v.kind = JsonValue::Kind::Array;
      skip();
      if (peek() == ']') return ++i_, v;
      for (;;) {
        skip();
        v.array.push_back(number());
        skip();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect(']');
        return v;
      }
    } else if (c == '{') {
      fail("nested objects are not expected here");
    } else if (word("true")) {
      v.kind = JsonValue::Kind::Bool, v.number = 1;
    } else if (word("false")) {
      v.kind = JsonValue::Kind::Bool, v.number = 0;
    } else if (word("null")) {
      v.kind = JsonValue::Kind::Null;
    } else {
      v.kind = JsonValue::Kind::Number, v.number = number();
    }
    return v;
  }

  const std::string& s_;
  size_t i_ = 0;
};

}  // namespace

JsonObject parse_json_line(const std::string& line) {
  Parser p(line);
  return p.object();
}

std::optional<double> json_number(const JsonObject& o, const std::string& key) {
  const auto it = o.find(key);
  if (it == o.end() || it->second.kind != JsonValue::Kind::Number) return std::nullopt;
  return it->second.number;
}

std::string json_text(const JsonObject& o, const std::string& key, const std::string& fallback) {
  const auto it = o.find(key);
  return it == o.end() || it->second.kind != JsonValue::Kind::String ? fallback : it->second.text;
}

}  // namespace duet::report
