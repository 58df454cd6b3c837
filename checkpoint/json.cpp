// Strict JSON (RFC 8259) reader, for manifest.json.
#include "checkpoint/json.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace duet::ckpt::json {
namespace {

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  Value document() {
    skip_ws();
    Value v = value(0);
    skip_ws();
    if (i_ != s_.size()) fail("unexpected text after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    int line = 1, col = 1;
    for (std::size_t k = 0; k < i_ && k < s_.size(); ++k) {
      if (s_[k] == '\n') ++line, col = 1;
      else ++col;
    }
    throw Error("line " + std::to_string(line) + ", column " + std::to_string(col) + ": " + what);
  }

  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }

  bool eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }

  void expect_word(std::string_view w) {
    if (s_.substr(i_, w.size()) != w) fail("invalid literal (expected '" + std::string(w) + "')");
    i_ += w.size();
  }

  Value value(int depth) {
    if (depth >= kMaxDepth) fail("nested deeper than " + std::to_string(kMaxDepth) + " levels");
    if (i_ >= s_.size()) fail("unexpected end of text (expected a value)");
    Value v;
    switch (s_[i_]) {
      case '{': object(v, depth); break;
      case '[': array(v, depth); break;
      case '"':
        v.kind = Value::Kind::string;
        v.string = string();
        break;
      case 't': expect_word("true"), v.kind = Value::Kind::boolean, v.boolean = true; break;
      case 'f': expect_word("false"), v.kind = Value::Kind::boolean; break;
      case 'n': expect_word("null"); break;
      default: number(v);
    }
    return v;
  }

  void object(Value& v, int depth) {
    v.kind = Value::Kind::object;
    ++i_;
    skip_ws();
    if (eat('}')) return;
    for (;;) {
      skip_ws();
      if (i_ >= s_.size() || s_[i_] != '"') fail("expected a string key");
      std::string k = string();
      if (v.find(k)) fail("duplicate key \"" + k + "\"");
      skip_ws();
      if (!eat(':')) fail("expected ':' after key \"" + k + "\"");
      skip_ws();
      Value item = value(depth + 1);
      v.fields.push_back(Member{std::move(k), std::move(item)});
      skip_ws();
      if (eat('}')) return;
      if (!eat(',')) fail("expected ',' or '}' in object");
    }
  }

  void array(Value& v, int depth) {
    v.kind = Value::Kind::array;
    ++i_;
    skip_ws();
    if (eat(']')) return;
    for (;;) {
      skip_ws();
      v.items.push_back(value(depth + 1));
      skip_ws();
      if (eat(']')) return;
      if (!eat(',')) fail("expected ',' or ']' in array");
    }
  }

  unsigned hex4() {
    if (i_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned x = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      x <<= 4;
      if (c >= '0' && c <= '9') x |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') x |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') x |= unsigned(c - 'A' + 10);
      else fail("invalid hex digit in \\u escape");
    }
    return x;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  std::string string() {
    ++i_;  // opening quote
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) fail("unterminated string");
      const char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated string");
      switch (s_[i_++]) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {  // a surrogate pair must follow
            if (!(eat('\\') && eat('u'))) fail("unpaired surrogate in \\u escape");
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) fail("unpaired surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            fail("unpaired surrogate in \\u escape");
          }
          append_utf8(out, cp);
          break;
        }
        default: fail("invalid escape in string");
      }
    }
  }

  void number(Value& v) {
    const std::size_t start = i_;
    eat('-');
    if (i_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[i_]))) fail("invalid value");
    if (s_[i_] == '0') ++i_;
    else
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    bool integral = true;
    if (eat('.')) {
      integral = false;
      if (i_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[i_]))) fail("digit expected after '.'");
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      integral = false;
      ++i_;
      if (!eat('+')) eat('-');
      if (i_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[i_]))) fail("digit expected in exponent");
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    const char* b = s_.data() + start;
    const char* e = s_.data() + i_;
    if (integral) {
      auto [p, ec] = std::from_chars(b, e, v.integer);
      if (ec == std::errc() && p == e) {
        v.kind = Value::Kind::integer;
        v.number = static_cast<double>(v.integer);
        return;
      }
    }
    auto [p, ec] = std::from_chars(b, e, v.number);
    if (p != e || (ec != std::errc() && ec != std::errc::result_out_of_range)) fail("invalid number");
    v.kind = Value::Kind::number;
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

}  // namespace

const Value* Value::find(std::string_view key) const {
  for (const auto& [k, v] : fields)
    if (k == key) return &v;
  return nullptr;
}

Value parse(std::string_view text) { return Parser(text).document(); }

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::null: return "null";
    case Value::Kind::boolean: return "a boolean";
    case Value::Kind::integer: return "an integer";
    case Value::Kind::number: return "a number";
    case Value::Kind::string: return "a string";
    case Value::Kind::array: return "an array";
    case Value::Kind::object: return "an object";
  }
  return "?";
}

}  // namespace duet::ckpt::json
