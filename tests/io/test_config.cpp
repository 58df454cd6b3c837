// io/config: parsing, overrides, every class of error (with its message), round trip.
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "io/config.h"
#include "tests/io/io_test_util.h"

namespace duet::io {
namespace {

// Runs fn, which must throw ConfigError; every piece must appear in the message.
void expect_config_error(const std::function<void()>& fn, const std::vector<std::string>& pieces) {
  try {
    fn();
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    for (const auto& p : pieces) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    return;
  }
  ADD_FAILURE() << "no ConfigError thrown; expected one mentioning '" << pieces.front() << "'";
}

void expect_yaml_error(const std::string& yaml, const std::vector<std::string>& pieces) {
  expect_config_error([&] { parse_config(yaml, {}, "test.yaml"); }, pieces);
}

void expect_set_error(const std::string& override_text, const std::vector<std::string>& pieces) {
  expect_config_error([&] { parse_config(default_config_text(), {override_text}, "tiny"); }, pieces);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A config in which every key differs from its default, with awkward strings.
RunConfig all_keys_changed() {
  RunConfig c;
  c.run = {"run: \"quoted\" #1\n\\tab\t", "/tmp/some dir"};
  c.model.vocab = 300;
  c.model.d_model = 96;
  c.model.layers = 6;
  c.model.heads = 6;
  c.model.dense_layers = 2;
  c.model.d_ff = 250;
  c.model.rope_theta = 500000.5;
  c.model.norm_eps = 1.0 / 3.0 * 1e-6;
  c.model.moe = {12, 3, 0, 77, 0.1 + 0.2};
  c.parallel = {4, 6, 3, ScheduleKind::ZB1P};
  c.train.steps = 12345;
  c.train.seed = 18446744073709551615ull;
  c.train.seq_len = 257;
  c.train.global_batch = 36;
  c.train.micro_batch_size = 2;
  c.train.lr = 1.0 / 3.0;
  c.train.min_lr = 0.0;
  c.train.warmup_steps = 0;
  c.train.weight_decay = 0.0;
  c.train.beta1 = 0.0;
  c.train.beta2 = 0.999999;
  c.train.eps = 1e-300;
  c.train.grad_clip = 0.0;
  c.train.log_every = 1;
  c.train.eval_every = 0;
  c.train.eval_batches = 1;
  c.train.stop_at = 17;
  c.data = {"data with: colon", 0.5};
  c.checkpoint = {"ckpt/dir", 5, 1, false, false};
  c.runtime = {false, 3, false, 250};
  c.runtime.memory_limit = 3ull << 30;
  c.cluster = {16, 4};
  return c;
}

// ---- the default config ----------------------------------------------------------------

TEST(Config, DefaultTextIsTinyYaml) {
  EXPECT_EQ(default_config_text(), read_text(DUET_SOURCE_DIR "/configs/tiny.yaml"));
}

TEST(Config, DefaultTextParsesToTinyValues) {
  const RunConfig c = parse_config(default_config_text(), {}, "tiny.yaml");
  EXPECT_EQ(c.run.name, "tiny");
  EXPECT_EQ(c.model.vocab, 256);
  EXPECT_EQ(c.model.d_model, 128);
  EXPECT_EQ(c.model.moe.experts, 8);
  EXPECT_EQ(c.model.moe.top_k, 2);
  EXPECT_EQ(c.parallel.schedule, ScheduleKind::DualPipe);
  EXPECT_EQ(c.train.steps, 300);
  EXPECT_EQ(c.train.seed, 1234u);
  EXPECT_DOUBLE_EQ(c.train.lr, 3e-3);
  EXPECT_DOUBLE_EQ(c.train.min_lr, 3e-4);
  EXPECT_EQ(c.data.path, "/usr/share/games/fortunes");
  EXPECT_EQ(c.checkpoint.every, 0);
  EXPECT_NO_THROW(validate(c));
}

TEST(Config, LoadConfigReadsTheFile) {
  const RunConfig c = load_config(DUET_SOURCE_DIR "/configs/tiny.yaml", {"train.steps=7"});
  EXPECT_EQ(c.train.steps, 7);
  EXPECT_EQ(c.model.layers, 4);
}

TEST(Config, EmptyDocumentAndEmptySectionsGiveDefaults) {
  EXPECT_EQ(parse_config("", {}, "empty"), RunConfig{});
  EXPECT_EQ(parse_config("# only a comment\n", {}, "c"), RunConfig{});
  EXPECT_EQ(parse_config("checkpoint:\nruntime:\n", {}, "c"), RunConfig{});
}

// ---- round trip --------------------------------------------------------------------------

TEST(Config, RoundTripOfDefaults) {
  const RunConfig c = parse_config(default_config_text(), {}, "tiny");
  EXPECT_EQ(parse_config(to_yaml(c), {}, "resolved"), c);
}

TEST(Config, RoundTripWithEveryKeyChanged) {
  const RunConfig c = all_keys_changed();
  ASSERT_NO_THROW(validate(c));
  const std::string text = to_yaml(c);
  const RunConfig back = parse_config(text, {}, "resolved");
  EXPECT_EQ(back, c) << text;
  EXPECT_EQ(to_yaml(back), text);
}

TEST(Config, ToYamlWritesEveryKey) {
  const YAML::Node doc = YAML::Load(to_yaml(RunConfig{}));
  for (const auto& key : config_keys()) {
    YAML::Node node = YAML::Clone(doc);
    std::string rest = key.path;
    for (std::size_t dot; (dot = rest.find('.')) != std::string::npos; rest = rest.substr(dot + 1))
      node = node[rest.substr(0, dot)];
    EXPECT_TRUE(node[rest].IsDefined()) << key.path << " missing from to_yaml";
  }
}

TEST(Config, HashIsStableHexAndFollowsValues) {
  RunConfig a;
  const std::string h = config_hash(a);
  EXPECT_EQ(h.size(), 16u);
  EXPECT_EQ(h.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(config_hash(RunConfig{}), h);
  a.train.lr *= 2;
  EXPECT_NE(config_hash(a), h);
}

// ---- overrides ---------------------------------------------------------------------------

TEST(Config, OverridesReplaceFileValues) {
  const RunConfig c = parse_config(default_config_text(),
                                   {"train.steps=5", "train.seed=7", "parallel.schedule=1f1b", "run.name=",
                                    "runtime.overlap=false", "train.lr=1e-2", " model.moe.top_k = 3",
                                    "data.path=/a b/c: d"},
                                   "tiny");
  EXPECT_EQ(c.train.steps, 5);
  EXPECT_EQ(c.train.seed, 7u);
  EXPECT_EQ(c.parallel.schedule, ScheduleKind::OneFOneB);
  EXPECT_EQ(c.run.name, "");
  EXPECT_FALSE(c.runtime.overlap);
  EXPECT_DOUBLE_EQ(c.train.lr, 1e-2);
  EXPECT_EQ(c.model.moe.top_k, 3);
  EXPECT_DOUBLE_EQ(c.train.min_lr, 3e-4);  // given in tiny.yaml, so not derived from lr
}

TEST(Config, SplitOverride) {
  EXPECT_EQ(split_override("a.b=c=d"), (std::pair<std::string, std::string>{"a.b", "c=d"}));
  expect_config_error([] { split_override("train.steps"); }, {"expected key=value"});
  expect_config_error([] { split_override("=5"); }, {"expected key=value"});
}

TEST(Config, MinLrDefaultsToTenthOfLr) {
  const RunConfig c = parse_config("train:\n  lr: 0.02\n", {}, "t");
  EXPECT_DOUBLE_EQ(c.train.min_lr, 0.002);
  EXPECT_DOUBLE_EQ(parse_config("", {"train.lr=0.5"}, "t").train.min_lr, 0.05);
  EXPECT_DOUBLE_EQ(parse_config("", {"train.lr=0.5", "train.min_lr=0.01"}, "t").train.min_lr, 0.01);
}

TEST(Config, EveryKeyAcceptsItsDefaultAsOverride) {
  // The CLI turns `--<path> VALUE` into `--set <path>=VALUE`; the table's default text must
  // read back as that same default.
  for (const auto& key : config_keys()) {
    if (key.default_value.find(' ') != std::string::npos) continue;  // derived: "train.lr / 10"
    EXPECT_EQ(parse_config("", {key.path + "=" + key.default_value}, "t"), RunConfig{}) << key.path;
  }
}

TEST(Config, OverrideErrors) {
  expect_set_error("train.setps=5", {"--set train.setps=5", "unknown key 'train.setps'", "did you mean 'train.steps'?"});
  expect_set_error("train.steps=ten", {"--set train.steps=ten", "train.steps: expected an integer ≥ 1, got 'ten'"});
  expect_set_error("train.steps=[1, 2]", {"train.steps", "got a list"});
  expect_set_error("model=3", {"'model' is a section", "vocab"});
  expect_set_error("parallel.schedule=gpipe", {"parallel.schedule", "one of 1f1b, zb1p, dualpipe, dualpipev", "'gpipe'"});
  expect_set_error("checkpoint.memory=yes", {"checkpoint.memory", "one of auto, on, off", "'yes'"});
  expect_set_error("checkpoint.memory_every=0", {"checkpoint.memory_every: expected an integer ≥ 1, got '0'"});
  expect_set_error("checkpoint.memory_limit=lots", {"checkpoint.memory_limit", "'lots'"});
  expect_config_error([] { parse_config("", {"train.steps=5", "train.steps=6"}, "t"); },
                      {"train.steps is set twice", "train.steps=5"});
}

// ---- unknown keys ------------------------------------------------------------------------

TEST(Config, UnknownKeySuggestsSibling) {
  expect_yaml_error("train:\n  steps: 5\n  setps: 5\n",
                    {"test.yaml:3:3: ", "unknown key 'train.setps' (did you mean 'train.steps'?)"});
  expect_yaml_error("model:\n  moe:\n    topk: 2\n", {"unknown key 'model.moe.topk' (did you mean 'model.moe.top_k'?)"});
}

TEST(Config, UnknownKeySuggestsOtherSection) {
  expect_yaml_error("train:\n  experts: 4\n", {"unknown key 'train.experts' (did you mean 'model.moe.experts'?)"});
  expect_yaml_error("modle:\n  vocab: 256\n", {"unknown key 'modle' (did you mean 'model'?)"});
}

TEST(Config, UnknownKeyWithoutCloseMatchListsValidKeys) {
  expect_yaml_error("train:\n  zzzzzzzz: 1\n", {"unknown key 'train.zzzzzzzz'", "valid keys under 'train': steps, seed"});
  expect_yaml_error("qqqqqqqq: 1\n", {"unknown key 'qqqqqqqq'", "valid sections: run, model, parallel"});
}

// ---- wrong types and ranges --------------------------------------------------------------

TEST(Config, WrongTypesNameKeyValueAndAllowed) {
  expect_yaml_error("train:\n  steps: ten\n", {"test.yaml:2:10: ", "train.steps: expected an integer ≥ 1, got 'ten'"});
  expect_yaml_error("train:\n  steps: 2.5\n", {"train.steps: expected an integer ≥ 1, got '2.5'"});
  expect_yaml_error("train:\n  lr: fast\n", {"train.lr: expected a number > 0, got 'fast'"});
  expect_yaml_error("train:\n  lr: .nan\n", {"train.lr: expected a number > 0"});
  expect_yaml_error("train:\n  lr: inf\n", {"train.lr: expected a number > 0"});
  expect_yaml_error("runtime:\n  overlap: maybe\n", {"runtime.overlap: expected true or false, got 'maybe'"});
  expect_yaml_error("train:\n  seed: -1\n", {"train.seed: expected an integer between 0 and 18446744073709551615"});
  expect_yaml_error("train:\n  steps: 99999999999\n", {"train.steps", "2147483647", "'99999999999'"});
  expect_yaml_error("train:\n  steps:\n", {"train.steps: expected an integer ≥ 1, got an empty value"});
  expect_yaml_error("train:\n  steps: {a: 1}\n", {"train.steps: expected an integer ≥ 1, got a map"});
  expect_yaml_error("data:\n  path:\n", {"data.path: expected a non-empty string, got an empty value"});
}

TEST(Config, OutOfRangeValues) {
  expect_yaml_error("train:\n  steps: 0\n", {"train.steps: expected an integer ≥ 1, got '0'"});
  expect_yaml_error("data:\n  val_fraction: 0.6\n", {"data.val_fraction: expected a number with 0 < x ≤ 0.5, got '0.6'"});
  expect_yaml_error("data:\n  val_fraction: 0\n", {"data.val_fraction", "got '0'"});
  expect_yaml_error("train:\n  beta2: 1\n", {"train.beta2: expected a number with 0 ≤ x < 1, got '1'"});
  expect_yaml_error("model:\n  moe:\n    shared_experts: 9\n",
                    {"model.moe.shared_experts: expected an integer between 0 and 8, got '9'"});
  expect_yaml_error("parallel:\n  schedule: gpipe\n",
                    {"parallel.schedule: expected one of 1f1b, zb1p, dualpipe, dualpipev, got 'gpipe'"});
}

TEST(Config, NullStringIsEmpty) {
  EXPECT_EQ(parse_config("run:\n  name:\n", {}, "t").run.name, "");
  EXPECT_EQ(parse_config("run:\n  name: 123\n", {}, "t").run.name, "123");
}

// ---- rules between keys --------------------------------------------------------------------

TEST(Config, CrossKeyRulesNameBothKeys) {
  auto expect_rule = [](std::vector<std::string> sets, std::vector<std::string> pieces) {
    expect_config_error([&] { parse_config(default_config_text(), sets, "tiny"); }, pieces);
  };
  expect_rule({"model.d_model=100", "model.heads=3"}, {"model.d_model (100) must be divisible by model.heads (3)"});
  expect_rule({"model.d_model=12", "model.heads=4"}, {"model.d_model / model.heads", "= 3", "must be even"});
  expect_rule({"model.dense_layers=5"}, {"model.dense_layers (5) must be ≤ model.layers (4)"});
  expect_rule({"model.moe.top_k=9"}, {"model.moe.top_k (9) must be ≤ model.moe.experts (8)"});
  expect_rule({"parallel.ep=2"}, {"parallel.ep (2) must divide parallel.dp (1)"});
  expect_rule({"parallel.ep=3", "parallel.dp=3", "train.global_batch=3"},
              {"parallel.ep (3) must divide model.moe.experts (8)"});
  expect_rule({"train.micro_batch_size=3"}, {"train.micro_batch_size (3) must divide train.global_batch (16)"});
  expect_rule({"parallel.dp=3"}, {"train.global_batch (16)", "parallel.dp × train.micro_batch_size (3 × 1)"});
  expect_rule({"train.min_lr=0.01"}, {"train.min_lr (0.01) must be ≤ train.lr (0.003)"});
  expect_rule({"run.name=a/b"}, {"run.name", "'a/b'"});
}

TEST(Config, ValidateChecksConfigsBuiltInCode) {
  RunConfig c;
  EXPECT_NO_THROW(validate(c));
  c.train.steps = 0;
  expect_config_error([&] { validate(c); }, {"train.steps: expected an integer ≥ 1, got '0'"});
  c = RunConfig{};
  c.train.lr = -1;
  expect_config_error([&] { validate(c); }, {"train.lr"});
  c = RunConfig{};
  c.model.heads = 5;
  expect_config_error([&] { validate(c); }, {"model.heads (5)"});
}

// ---- structure -------------------------------------------------------------------------------

TEST(Config, NothingIsSilentlyIgnored) {
  expect_yaml_error("train:\n  steps: 5\n  steps: 6\n", {"test.yaml:3:3: ", "key 'train.steps' is given twice (first at line 2)"});
  expect_yaml_error("train:\n  steps: 5\ntrain:\n  seed: 1\n", {"key 'train' is given twice"});
  expect_yaml_error("train: 5\n", {"expected 'train' to be a map of keys (steps, seed", "got '5'"});
  expect_yaml_error("model:\n  moe: [1, 2]\n", {"expected 'model.moe' to be a map", "got a list"});
  expect_yaml_error("- 1\n- 2\n", {"expected the document to be a map", "run, model"});
  expect_yaml_error("train:\n  steps: 5\n---\ntrain:\n  steps: 6\n", {"2 YAML documents"});
  expect_yaml_error("train: [1,\n", {"test.yaml:", "YAML syntax error"});
  expect_yaml_error("? [a, b]\n: 1\n", {"keys must be plain names"});
}

TEST(Config, MissingFileNamesThePath) {
  expect_config_error([] { load_config("/nonexistent/dir/run.yaml", {}); },
                      {"cannot read config file '/nonexistent/dir/run.yaml'", "No such file"});
  expect_config_error([] { load_config(DUET_SOURCE_DIR "/configs", {}); }, {"it is a directory"});
}

// ---- the key table, as the CLI sees it -------------------------------------------------------

TEST(Config, KeyTableListsTheIssueKeysOnce) {
  std::set<std::string> paths;
  for (const auto& k : config_keys()) {
    EXPECT_TRUE(paths.insert(k.path).second) << "duplicate " << k.path;
    EXPECT_FALSE(k.type.empty()) << k.path;
    EXPECT_NE(k.help.find("default"), std::string::npos) << k.path;
    EXPECT_NE(k.help.find(k.allowed), std::string::npos) << k.path;
  }
  for (const char* p :
       {"run.name", "run.dir", "model.vocab", "model.d_model", "model.layers", "model.heads", "model.dense_layers",
        "model.d_ff", "model.moe.experts", "model.moe.top_k", "model.moe.shared_experts", "model.moe.d_expert",
        "parallel.pp", "parallel.dp", "parallel.ep", "parallel.schedule", "train.steps", "train.seed", "train.seq_len",
        "train.global_batch", "train.micro_batch_size", "train.lr", "data.path", "checkpoint.dir", "checkpoint.every",
        "checkpoint.keep", "checkpoint.async", "runtime.overlap", "cluster.gpus"})
    EXPECT_TRUE(paths.count(p)) << p;
}

TEST(Config, KeyTableTypesAndHelp) {
  auto find = [](const std::string& path) {
    for (const auto& k : config_keys())
      if (k.path == path) return k;
    return ConfigKey{};
  };
  EXPECT_EQ(find("train.steps").type, "int");
  EXPECT_EQ(find("train.steps").help, "optimizer steps; an integer ≥ 1 (default 300)");
  EXPECT_EQ(find("train.seed").type, "uint64");
  EXPECT_EQ(find("train.lr").type, "float");
  EXPECT_EQ(find("runtime.overlap").type, "bool");
  EXPECT_EQ(find("data.path").type, "string");
  EXPECT_EQ(find("parallel.schedule").type, "1f1b|zb1p|dualpipe|dualpipev");
  EXPECT_EQ(find("train.min_lr").default_value, "train.lr / 10");
  EXPECT_EQ(duet::core::format_schedule_kind(ScheduleKind::DualPipeV), "dualpipev");
}

}  // namespace
}  // namespace duet::io
