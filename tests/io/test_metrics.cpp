// io/metrics: JSON lines that parse back, the log file, the run directory, progress text.
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <variant>

#include <gtest/gtest.h>

#include "io/metrics.h"
#include "tests/io/io_test_util.h"

namespace duet::io {
namespace {
namespace fs = std::filesystem;

// ---- a small reader for flat JSON objects, to check what MetricsWriter wrote -----------------

using JsonValue = std::variant<std::nullptr_t, bool, double, std::string>;

struct FlatJson {
  std::vector<std::string> keys;  // in file order
  std::map<std::string, JsonValue> values;
};

class FlatJsonReader {
 public:
  explicit FlatJsonReader(std::string_view s) : s_(s) {}

  FlatJson object() {
    FlatJson out;
    expect('{');
    if (peek() == '}') return ++i_, done(out);
    for (;;) {
      std::string key = string();
      expect(':');
      out.keys.push_back(key);
      out.values[key] = value();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      expect('}');
      return done(out);
    }
  }

 private:
  FlatJson done(FlatJson& out) {
    if (i_ != s_.size()) throw std::runtime_error("trailing text");
    return out;
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void expect(char c) {
    if (peek() != c) throw std::runtime_error(std::string("expected ") + c + " at " + std::to_string(i_));
    ++i_;
  }
  std::string string() {
    expect('"');
    std::string out;
    while (peek() != '"') {
      if (i_ >= s_.size()) throw std::runtime_error("unterminated string");
      char c = s_[i_++];
      if (static_cast<unsigned char>(c) < 0x20) throw std::runtime_error("raw control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      c = s_[i_++];
      switch (c) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'u': out += static_cast<char>(std::stoi(std::string(s_.substr(i_, 4)), nullptr, 16)), i_ += 4; break;
        default: out += c;
      }
    }
    ++i_;
    return out;
  }
  JsonValue value() {
    if (peek() == '"') return string();
    for (const char* word : {"null", "true", "false"})
      if (s_.substr(i_, std::strlen(word)) == word) {
        i_ += std::strlen(word);
        if (word[0] == 'n') return nullptr;
        return word[0] == 't';
      }
    const std::size_t start = i_;
    while (i_ < s_.size() && std::strchr("+-0123456789.eE", s_[i_])) ++i_;
    if (start == i_) throw std::runtime_error("bad value at " + std::to_string(i_));
    return std::strtod(std::string(s_.substr(start, i_ - start)).c_str(), nullptr);
  }
  std::string_view s_;
  std::size_t i_ = 0;
};

std::vector<std::string> read_lines(const fs::path& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

class RunFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("duet_test_metrics_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

// ---- JSON lines --------------------------------------------------------------------------

TEST(JsonLine, KeysInInsertionOrderAndSpecialValues) {
  JsonLine line;
  line.add("step", 3).add("loss", 2.5).add("name", "a\"b\\c\nd\x01").add("ok", true).add("nan", NAN);
  line.add("inf", -INFINITY).add("tokens", std::uint64_t{18446744073709551615ull}).add("neg", -7L);
  EXPECT_EQ(line.str(),
            "{\"step\":3,\"loss\":2.5,\"name\":\"a\\\"b\\\\c\\nd\\u0001\",\"ok\":true,\"nan\":null,\"inf\":null,"
            "\"tokens\":18446744073709551615,\"neg\":-7}");
  line.add("loss", 1.25);  // replaced in place
  EXPECT_NE(line.str().find("\"step\":3,\"loss\":1.25,\"name\""), std::string::npos);
}

TEST(JsonLine, NumbersRoundTrip) {
  for (double x : {0.1, 1.0 / 3.0, 2.0 / 3.0 * 1e-300, 5e-324, 1.7976931348623157e308, -123456.789, 0.0, 1e22,
                   3.0, 2.9e-3}) {
    const std::string text = JsonLine::number(x);
    EXPECT_EQ(std::strtod(text.c_str(), nullptr), x) << text;
    EXPECT_EQ(text.find_first_not_of("+-0123456789.e"), std::string::npos) << text;  // JSON number syntax
  }
  EXPECT_EQ(JsonLine::number(NAN), "null");
  EXPECT_EQ(JsonLine::number(INFINITY), "null");
}

TEST_F(RunFiles, MetricsLinesParseBackAndAppend) {
  const fs::path path = dir_ / "metrics.jsonl";
  {
    MetricsWriter w(path.string());
    for (int step = 1; step <= 3; ++step)
      w.write(JsonLine().add("step", step).add("loss", 5.5 / step).add("lr", 3e-3).add("grad_norm", NAN).add(
          "note", step == 2 ? "tab\there" : "plain"));
    // Flushed per line: readable while the writer is still open.
    EXPECT_EQ(read_lines(path).size(), 3u);
  }
  MetricsWriter(path.string()).write(JsonLine().add("step", 4));
  const auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 4u);
  for (int i = 0; i < 3; ++i) {
    const FlatJson obj = FlatJsonReader(lines[i]).object();
    EXPECT_EQ(obj.keys, (std::vector<std::string>{"step", "loss", "lr", "grad_norm", "note"}));
    EXPECT_EQ(std::get<double>(obj.values.at("step")), i + 1);
    EXPECT_EQ(std::get<double>(obj.values.at("loss")), 5.5 / (i + 1));  // exact: round-trip text
    EXPECT_EQ(std::get<double>(obj.values.at("lr")), 3e-3);
    EXPECT_TRUE(std::holds_alternative<std::nullptr_t>(obj.values.at("grad_norm")));
  }
  EXPECT_EQ(std::get<std::string>(FlatJsonReader(lines[1]).object().values.at("note")), "tab\there");
  EXPECT_EQ(std::get<double>(FlatJsonReader(lines[3]).object().values.at("step")), 4);
}

TEST_F(RunFiles, MetricsWriterNamesAPathItCannotOpen) {
  try {
    MetricsWriter w((dir_ / "no" / "such" / "metrics.jsonl").string());
    ADD_FAILURE() << "opened a file in a missing folder";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no/such/metrics.jsonl"), std::string::npos) << e.what();
  }
}

// ---- train.log ---------------------------------------------------------------------------

TEST_F(RunFiles, LogLinesAreTimestampedInTheFile) {
  const fs::path path = dir_ / "train.log";
  RunLog log(path.string(), /*echo=*/false);
  log.print("first line");
  log.print("two\nlines\n");
  const auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 3u);
  const std::regex stamped(R"(^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}  (.*)$)");
  const char* texts[] = {"first line", "two", "lines"};
  for (int i = 0; i < 3; ++i) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(lines[i], m, stamped)) << lines[i];
    EXPECT_EQ(m[1], texts[i]);
  }
}

// ---- run directory -----------------------------------------------------------------------

TEST_F(RunFiles, MakeRunDirWritesReloadableConfig) {
  RunConfig cfg;
  cfg.run.dir = (dir_ / "runs").string();
  cfg.run.name = "exp1";
  cfg.train.steps = 42;
  const std::string run = make_run_dir(cfg);
  EXPECT_EQ(fs::path(run), dir_ / "runs" / "exp1");
  EXPECT_EQ(load_config(run + "/config.yaml", {}), cfg);
  EXPECT_FALSE(fs::exists(run + "/config.yaml.tmp"));
  EXPECT_EQ(make_run_dir(cfg), run);  // a named run directory is reused (resume)
  EXPECT_EQ(checkpoint_dir(cfg, run), run + "/checkpoints");
  cfg.checkpoint.dir = "/elsewhere";
  EXPECT_EQ(checkpoint_dir(cfg, run), "/elsewhere");
}

TEST_F(RunFiles, UnnamedRunsGetDistinctTimestamps) {
  RunConfig cfg;
  cfg.run.dir = dir_.string();
  cfg.run.name = "";
  const fs::path a = make_run_dir(cfg), b = make_run_dir(cfg);
  EXPECT_NE(a, b);
  const std::regex stamp(R"(^\d{8}-\d{6}(-\d+)?$)");
  for (const fs::path& p : {a, b}) {
    EXPECT_TRUE(std::regex_match(p.filename().string(), stamp)) << p;
    // config.yaml records the name that was chosen, so the run can be found and repeated.
    EXPECT_EQ(load_config((p / "config.yaml").string(), {}).run.name, p.filename().string());
  }
}

TEST_F(RunFiles, MakeRunDirNamesThePathItCannotCreate) {
  std::ofstream(dir_ / "taken") << "a file, not a folder";
  RunConfig cfg;
  cfg.run.dir = dir_.string();
  cfg.run.name = "taken";
  try {
    make_run_dir(cfg);
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find((dir_ / "taken").string()), std::string::npos) << e.what();
  }
}

TEST(RunTimestamp, Format) {
  ::setenv("TZ", "UTC", 1);
  ::tzset();
  EXPECT_EQ(run_timestamp(0), "19700101-000000");
  EXPECT_EQ(run_timestamp(1700000000), "20231114-221320");
}

// ---- progress line -----------------------------------------------------------------------

TEST(Progress, Line) {
  Progress p;
  p.step = 20;
  p.steps = 300;
  p.loss = 3.4123;
  p.lr = 2.9e-3;
  p.tokens_per_s = 12345;
  p.eta_s = 102;
  EXPECT_EQ(format_progress(p), "step  20/300  loss 3.412  lr 2.9e-03  12.3k tok/s  eta 1m42s");
  p.extra = "val 2.310";
  p.eta_s = NAN;
  EXPECT_EQ(format_progress(p), "step  20/300  loss 3.412  lr 2.9e-03  12.3k tok/s  eta ?  val 2.310");
}

TEST(Progress, DurationsAndRates) {
  EXPECT_EQ(format_duration(0), "0s");
  EXPECT_EQ(format_duration(59.4), "59s");
  EXPECT_EQ(format_duration(102), "1m42s");
  EXPECT_EQ(format_duration(3600), "1h00m");
  EXPECT_EQ(format_duration(90000), "1d01h");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(format_rate(950), "950");
  EXPECT_EQ(format_rate(12345), "12.3k");
  EXPECT_EQ(format_rate(4.56e6), "4.56M");
  EXPECT_EQ(format_rate(2e9), "2.00G");
  EXPECT_EQ(format_rate(INFINITY), "?");
}

}  // namespace
}  // namespace duet::io
