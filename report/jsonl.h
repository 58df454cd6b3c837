#pragma once
// A reader for the flat JSON objects of the run's .jsonl files (metrics.jsonl, events.jsonl):
// one object a line whose values are numbers, strings, booleans, null or arrays of numbers.
// report/ may not use io/ (which writes them), so it reads them itself; nested objects are
// refused rather than guessed at.

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace duet::report {

struct JsonValue {
  enum class Kind { Null, Number, String, Bool, Array };
  Kind kind = Kind::Null;
  double number = 0;           // Number; Bool as 0 or 1
  std::string text;            // String
  std::vector<double> array;   // Array (of numbers)
};

using JsonObject = std::map<std::string, JsonValue>;

// Parses one line. Throws std::invalid_argument saying what is wrong and at which character.
JsonObject parse_json_line(const std::string& line);

// The number at `key`, if the object has one there.
std::optional<double> json_number(const JsonObject& o, const std::string& key);
// The string at `key`, or `fallback`.
std::string json_text(const JsonObject& o, const std::string& key, const std::string& fallback = "");

}  // namespace duet::report
