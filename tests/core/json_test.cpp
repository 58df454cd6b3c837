// The one JSON writer: compact and indented output, escaping, numbers that read back.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/json.h"

using duet::core::json::Writer;

TEST(JsonWriter, CompactNestedDocument) {
  Writer j;
  j.begin_object().key("a").value(1).key("b").begin_array().value(1.5).value("x").end_array();
  j.key("c").begin_object().end_object().key("d").value(true).key("e").null().end_object();
  EXPECT_EQ(j.str(), R"({"a": 1, "b": [1.5, "x"], "c": {}, "d": true, "e": null})");
}

TEST(JsonWriter, IndentedKeepsScalarArraysOnOneLine) {
  Writer j(Writer::Style::Indented);
  j.begin_object().key("shape").value(std::vector<std::int64_t>{2, 3}).key("list").begin_array().value(1).end_array();
  j.end_object();
  EXPECT_EQ(j.str(), "{\n  \"shape\": [2, 3],\n  \"list\": [\n    1\n  ]\n}");
}

TEST(JsonWriter, EscapesAndNumbers) {
  EXPECT_EQ(duet::core::json::quote("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\u0001\"");
  EXPECT_EQ(duet::core::json::number(0.1), "0.1");
  EXPECT_EQ(duet::core::json::number(std::numeric_limits<double>::quiet_NaN()), "null");
  EXPECT_EQ(duet::core::json::number(-INFINITY), "null");
  const double x = 1.0 / 3.0;
  EXPECT_EQ(std::stod(duet::core::json::number(x)), x);  // shortest text that reads back exactly
}
