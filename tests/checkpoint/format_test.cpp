// checkpoint/ formats without HDF5: XXH64, the JSON reader/writer, manifest.json and the
// per-shard sidecars (parse, round trip, and every validation rule a reader relies on).
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <random>
#include <vector>
#include <string>

#include "checkpoint/hash.h"
#include "checkpoint/json.h"
#include "checkpoint/manifest.h"
#include "core/json.h"

namespace duet::ckpt {
namespace {

// ---- XXH64 -----------------------------------------------------------------------------------

TEST(CheckpointHash, MatchesTheXxh64ReferenceVectors) {
  EXPECT_EQ(xxh64("", 0), 0xEF46DB3751D8E999ULL);
  EXPECT_EQ(xxh64("a"), 0xD24EC4F1A98C6E5BULL);
  EXPECT_EQ(xxh64("abc"), 0x44BC2CF5AD770999ULL);
  EXPECT_EQ(xxh64("Call me Ishmael."), 0x6D04390FC9D61A90ULL);
  EXPECT_EQ(xxh64("Nobody inspects the spammish repetition"), 0xFBCEA83C8A378BF1ULL);  // > one 32-byte stripe
}

TEST(CheckpointHash, StreamingEqualsOneShotForEverySplit) {
  std::string text;
  for (int i = 0; i < 300; ++i) text += char('a' + i * 7 % 26);
  const std::uint64_t whole = xxh64(text);
  for (std::size_t a = 0; a <= text.size(); a += 13)
    for (std::size_t b = a; b <= text.size(); b += 29) {
      Xxh64 h;
      h.update(text.data(), a);
      h.update(text.data() + a, b - a);
      h.update(text.data() + b, text.size() - b);
      ASSERT_EQ(h.digest(), whole) << "split at " << a << ", " << b;
    }
}

TEST(CheckpointHash, HexRoundTripsAndRejectsJunk) {
  std::uint64_t x = 0;
  EXPECT_EQ(format_hex64(0x0123456789abcdefULL), "0123456789abcdef");
  ASSERT_TRUE(parse_hex64("0123456789ABCDEF", x));
  EXPECT_EQ(x, 0x0123456789abcdefULL);
  EXPECT_FALSE(parse_hex64("0123456789abcde", x));
  EXPECT_FALSE(parse_hex64("0123456789abcdeg", x));
  EXPECT_FALSE(parse_hex64("", x));
}

// ---- JSON ------------------------------------------------------------------------------------

TEST(CheckpointJson, ParsesValuesExactly) {
  const json::Value v = json::parse(R"( {"a": [1, -2, 9007199254740993, 1.5e3, true, null, "x\n\u00e9\ud83d\ude00"]} )");
  const json::Value* a = v.find("a");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->items.size(), 7u);
  EXPECT_EQ(a->items[0].integer, 1);
  EXPECT_EQ(a->items[1].integer, -2);
  EXPECT_EQ(a->items[2].integer, 9007199254740993LL);  // beyond double precision, kept exact
  EXPECT_EQ(a->items[3].kind, json::Value::Kind::number);
  EXPECT_EQ(a->items[3].number, 1500.0);
  EXPECT_TRUE(a->items[4].boolean);
  EXPECT_EQ(a->items[5].kind, json::Value::Kind::null);
  EXPECT_EQ(a->items[6].string, "x\n\xc3\xa9\xf0\x9f\x98\x80");
}

TEST(CheckpointJson, RejectsMalformedTextWithLineAndColumn) {
  const char* bad[] = {"", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "01", "1.", "-", "\"abc", "\"\\x\"", "tru",
                       "{\"a\":1,\"a\":2}", "[1] 2", "\"\\ud800\"", "\"a\tb\"", "{1:2}"};
  for (const char* text : bad) EXPECT_THROW(json::parse(text), json::Error) << "accepted: " << text;
  try {
    json::parse("{\n  \"a\": [1, 2,\n  ]\n}");
    FAIL() << "accepted a trailing comma";
  } catch (const json::Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 3, column 3"), std::string::npos) << e.what();
  }
}

TEST(CheckpointJson, RefusesDeepNestingInsteadOfRecursingForever) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  try {
    json::parse(deep);
    FAIL() << "accepted 100000 nested arrays";
  } catch (const json::Error& e) {
    EXPECT_NE(std::string(e.what()).find("nested deeper"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(json::parse(std::string(json::kMaxDepth - 1, '[') + std::string(json::kMaxDepth - 1, ']')));
}

TEST(CheckpointJson, WriterOutputParsesBack) {
  core::json::Writer w(core::json::Writer::Style::Indented);
  w.begin_object().key("s").value("q\"uote\\\x01").key("n").value(std::int64_t{-7}).key("shape");
  w.value(std::vector<std::int64_t>{1, 2}).key("empty").begin_array().end_array().key("o").begin_object().end_object();
  w.end_object();
  const json::Value v = json::parse(w.str());
  EXPECT_EQ(v.find("s")->string, "q\"uote\\\x01");
  EXPECT_EQ(v.find("n")->integer, -7);
  EXPECT_EQ(v.find("shape")->items.size(), 2u);
  EXPECT_TRUE(v.find("empty")->items.empty());
  EXPECT_EQ(v.find("o")->kind, json::Value::Kind::object);
}

// ---- manifest --------------------------------------------------------------------------------

// Two ranks: "w" [4, 2] cut in rows, "b" [3] replicated on both.
Manifest small_manifest() {
  Manifest m;
  m.step = 42;
  m.layout.world = 2;
  m.layout.pp = 2;
  m.layout.schedule = "dualpipe";
  m.layout.config_hash = "c0ffee";
  m.layout.model_hash = "m1";
  m.index = {"index.h5", 4096, 0x0123456789abcdefULL};
  m.tensors = {{"b", "float32", {3}}, {"w", "float32", {4, 2}}};
  for (int r = 0; r < 2; ++r) {
    ShardRecord s;
    s.rank = r;
    s.file = shard_file_name(r);
    s.bytes = 1000u + static_cast<unsigned>(r);
    s.xxh64 = 0xfedcba9876543210ULL + static_cast<unsigned>(r);
    s.slices = {{"w", {2 * r, 0}, {2, 2}}, {"b", {0}, {3}}};
    m.shards.push_back(s);
  }
  return m;
}

std::string validation_error(const Manifest& m) {
  try {
    validate_manifest(m, "/ckpt/manifest.json");
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(CheckpointManifest, RoundTripsThroughJson) {
  const Manifest m = small_manifest();
  const std::string text = manifest_to_json(m);
  EXPECT_EQ(parse_manifest(text, "m.json"), m);
  EXPECT_NE(text.find("\"shape\": [4, 2]"), std::string::npos) << "shapes on one line:\n" << text;
  EXPECT_NE(text.find("\"xxh64\": \"fedcba9876543210\""), std::string::npos) << text;
}

TEST(CheckpointManifest, ValidationNamesWhatIsWrong) {
  EXPECT_EQ(validation_error(small_manifest()), "");
  struct Case {
    const char* expect;
    std::function<void(Manifest&)> edit;
  };
  const Case cases[] = {
      {"the shards hold 4 of its 8 elements", [](Manifest& m) { m.shards[1].slices.erase(m.shards[1].slices.begin()); }},
      {"overlap", [](Manifest& m) { m.shards[1].slices[0] = {"w", {1, 0}, {2, 2}}; }},
      {"does not fit tensor 'w'", [](Manifest& m) { m.shards[1].slices[0] = {"w", {3, 0}, {2, 2}}; }},
      {"has 2 dimensions", [](Manifest& m) { m.shards[1].slices[0] = {"w", {2}, {2}}; }},
      {"not in the tensor list", [](Manifest& m) { m.shards[0].slices[1].tensor = "nope"; }},
      {"appears twice in one shard", [](Manifest& m) { m.shards[0].slices.push_back(m.shards[0].slices[0]); }},
      {"1 shards listed for a world of 2", [](Manifest& m) { m.shards.pop_back(); }},
      {"rank 1 listed in position 0", [](Manifest& m) { std::swap(m.shards[0], m.shards[1]); }},
      {"expected 'shard-00001.h5'", [](Manifest& m) { m.shards[1].file = "../etc/passwd"; }},
      {"only float32", [](Manifest& m) { m.tensors[0].dtype = "float16"; }},
      {"index: file '../x.h5', expected 'index.h5'", [](Manifest& m) { m.index.file = "../x.h5"; }},
      {"not sorted", [](Manifest& m) { std::swap(m.tensors[0], m.tensors[1]); }},
      {"bad tensor name", [](Manifest& m) { m.tensors[0].name = "../b"; }},
      {"negative dimension", [](Manifest& m) { m.tensors[0].shape = {-3}; }},
      {"more than 2^62", [](Manifest& m) { m.tensors[0].shape = {1LL << 40, 1LL << 40}; }},
      {"both a tensor and a group", [](Manifest& m) {
         m.tensors = {{"b", "float32", {3}}, {"b/x", "float32", {1}}, {"w", "float32", {4, 2}}};
       }},
  };
  for (const Case& c : cases) {
    Manifest m = small_manifest();
    c.edit(m);
    const std::string err = validation_error(m);
    EXPECT_NE(err.find(c.expect), std::string::npos) << "expected '" << c.expect << "', got: '" << err << "'";
    EXPECT_EQ(err.rfind("/ckpt/manifest.json: ", 0), 0u) << err;
  }
}

TEST(CheckpointManifest, ParseErrorsNameTheFileAndTheField) {
  auto error_of = [](const std::string& text) {
    try {
      parse_manifest(text, "/x/manifest.json");
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  std::string text = manifest_to_json(small_manifest());
  EXPECT_NE(error_of(text.substr(0, text.size() / 2)).find("/x/manifest.json: not valid JSON: line"), std::string::npos);
  std::string t2 = text;
  t2.replace(t2.find("\"bytes\": 1000"), 13, "\"bytes\": \"1000\"");
  EXPECT_NE(error_of(t2).find("shards[0].bytes: expected an integer, found a string"), std::string::npos) << error_of(t2);
  std::string t3 = text;
  t3.replace(t3.find("duet-checkpoint"), 15, "something-else!");
  EXPECT_NE(error_of(t3).find("is this a duet checkpoint file?"), std::string::npos) << error_of(t3);
  EXPECT_NE(error_of("[]").find("expected a JSON object"), std::string::npos);
  std::string t4 = text;
  t4.replace(t4.find("\"version\": 1"), 12, "\"version\": 7");
  EXPECT_NE(error_of(t4).find("version: 7 is not supported"), std::string::npos) << error_of(t4);
}

TEST(CheckpointManifest, SidecarRoundTripsAndChecksItsSlices) {
  ShardSidecar s;
  s.step = 7;
  s.layout = small_manifest().layout;
  s.tensors = {{"w", "float32", {4, 2}}};
  s.shard = {1, "shard-00001.h5", 55, 0x1234, {{"w", {2, 0}, {2, 2}}}};
  EXPECT_EQ(parse_sidecar(sidecar_to_json(s), "side.json"), s);
  s.shard.slices[0].offset = {3, 0};
  EXPECT_THROW(parse_sidecar(sidecar_to_json(s), "side.json"), std::runtime_error);
}

TEST(CheckpointManifest, TensorNames) {
  for (const char* ok : {"embed", "layers.3.moe.experts.5.w13", "opt.m/layers.3.attn.wqkv", "a-b_c:d+e=f@g"})
    EXPECT_NO_THROW(validate_tensor_name(ok)) << ok;
  for (const char* bad : {"", "/a", "a/", "a//b", "a/./b", "../a", "a b", "_duet", "_duet_state/x", "é"})
    EXPECT_THROW(validate_tensor_name(bad), std::invalid_argument) << bad;
}

}  // namespace
}  // namespace duet::ckpt

namespace duet::ckpt {
namespace {

// HDF5 1.10's H5_checksum_fletcher32, transcribed: the reference the fast version must match
// bit for bit (or HDF5 would reject every chunk the shard writer stores).
std::uint32_t hdf5_fletcher32(const void* _data, std::size_t _len) {
  const auto* data = static_cast<const std::uint8_t*>(_data);
  std::size_t len = _len / 2;
  std::uint32_t sum1 = 0, sum2 = 0;
  while (len) {
    std::size_t tlen = len > 360 ? 360 : len;
    len -= tlen;
    do {
      sum1 += static_cast<std::uint32_t>((std::uint16_t{data[0]} << 8) | std::uint16_t{data[1]});
      data += 2;
      sum2 += sum1;
    } while (--tlen);
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  }
  if (_len % 2) {
    sum1 += static_cast<std::uint32_t>(std::uint16_t{*data} << 8);
    sum2 += sum1;
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  }
  sum1 = (sum1 & 0xffff) + (sum1 >> 16);
  sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  return (sum2 << 16) | sum1;
}

TEST(CheckpointHash, Fletcher32MatchesHdf5BitForBit) {
  std::mt19937 gen(7);
  for (std::size_t len : {0, 1, 2, 3, 511, 512, 513, 1000, 4096, 4097, 70001, 1 << 20}) {
    std::vector<unsigned char> buf(len);
    for (auto& b : buf) b = static_cast<unsigned char>(gen());
    EXPECT_EQ(fletcher32(buf.data(), len), hdf5_fletcher32(buf.data(), len)) << "random, " << len << " bytes";
    std::fill(buf.begin(), buf.end(), 0xff);  // every sum a multiple of 65535: the 0 vs 65535 case
    EXPECT_EQ(fletcher32(buf.data(), len), hdf5_fletcher32(buf.data(), len)) << "0xff, " << len << " bytes";
    std::fill(buf.begin(), buf.end(), 0);
    EXPECT_EQ(fletcher32(buf.data(), len), hdf5_fletcher32(buf.data(), len)) << "zeros, " << len << " bytes";
    if (len > 600) {
      buf[len - 600] = 1;  // mostly zero, one word set
      EXPECT_EQ(fletcher32(buf.data(), len), hdf5_fletcher32(buf.data(), len)) << "sparse, " << len << " bytes";
    }
  }
}

}  // namespace
}  // namespace duet::ckpt
