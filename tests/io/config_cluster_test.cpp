// The keys `duet simulate` added (cluster, MLA, MTP, precision, group-limited routing): the
// shipped DeepSeek-V3 config, their errors, and require_trainable.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "io/config.h"

namespace duet::io {
namespace {

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

const std::string kDeepSeek = DUET_SOURCE_DIR "/configs/deepseek-v3-2048xh800.yaml";

TEST(ConfigCluster, ShippedDeepSeekV3Config) {
  const RunConfig c = load_config(kDeepSeek);
  EXPECT_EQ(c.model.attention, AttentionKind::kMLA);
  EXPECT_EQ(c.model.mla.kv_lora_rank, 512);
  EXPECT_EQ(c.model.mla.q_lora_rank, 1536);
  EXPECT_EQ(c.model.mtp_depth, 1);
  EXPECT_EQ(c.model.precision, Precision::kFP8);
  EXPECT_EQ(c.model.moe.groups, 8);
  EXPECT_EQ(c.model.moe.group_limit, 4);
  EXPECT_EQ(c.parallel.pp * c.parallel.dp, c.cluster.gpus);
  EXPECT_EQ(c.cluster.gpus, 2048);
  EXPECT_EQ(c.cluster.comm_sms, 20);
  EXPECT_DOUBLE_EQ(c.cluster.fp8_tflops, 1979);
  EXPECT_EQ(c.train.global_batch / (c.parallel.dp * c.train.micro_batch_size), 120);
  EXPECT_EQ(parse_config(to_yaml(c), {}, "resolved"), c);  // round trip with every new key
}

TEST(ConfigCluster, TinyKeepsTheTrainerDefaults) {
  const RunConfig c = parse_config(default_config_text(), {}, "tiny");
  EXPECT_EQ(c.model.attention, AttentionKind::kMHA);
  EXPECT_EQ(c.model.mtp_depth, 0);
  EXPECT_EQ(c.model.precision, Precision::kFP32);
  EXPECT_EQ(c.model.moe.groups, c.model.moe.group_limit);
  EXPECT_NO_THROW(require_trainable(c));
}

TEST(ConfigCluster, RequireTrainableNamesTheKey) {
  EXPECT_NE(error_of([] { require_trainable(load_config(kDeepSeek)); }).find("model.attention"), std::string::npos);
  auto with = [](const std::string& set) { return parse_config(default_config_text(), {set}, "tiny"); };
  EXPECT_NE(error_of([&] { require_trainable(with("model.mtp_depth=1")); }).find("model.mtp_depth"), std::string::npos);
  EXPECT_NE(error_of([&] { require_trainable(with("model.precision=fp8")); })
                .find("model.precision: duet train runs fp32, or bf16 with runtime.device: cuda; got fp8"),
            std::string::npos);
  EXPECT_NE(error_of([&] { require_trainable(with("model.precision=bf16")); })
                .find("model.precision: bf16 GEMMs run on runtime.device: cuda (the CPU's are FP32); allowed here: fp32"),
            std::string::npos);
  const RunConfig bf16_gpu = parse_config(default_config_text(), {"model.precision=bf16", "runtime.device=cuda"}, "t");
  EXPECT_NO_THROW(require_trainable(bf16_gpu));
  const RunConfig grouped = parse_config(default_config_text(), {"model.moe.groups=4", "model.moe.group_limit=2"}, "t");
  EXPECT_NE(error_of([&] { require_trainable(grouped); }).find("model.moe.group_limit"), std::string::npos);
}

TEST(ConfigCluster, ErrorsNameKeysAndRanges) {
  auto set_error = [](const std::vector<std::string>& sets) {
    return error_of([&] { parse_config(default_config_text(), sets, "tiny"); });
  };
  EXPECT_NE(set_error({"cluster.ib_gbs=40"}).find("did you mean 'cluster.ib_gbps'"), std::string::npos)
      << set_error({"cluster.ib_gbs=40"});
  EXPECT_NE(set_error({"cluster.gemm_efficiency=1.5"}).find("cluster.gemm_efficiency: expected a number with 0 < x ≤ 1"),
            std::string::npos);
  EXPECT_NE(set_error({"model.attention=gqa"}).find("expected one of mha, mla"), std::string::npos);
  EXPECT_NE(set_error({"model.precision=fp16"}).find("one of fp32, bf16, fp8"), std::string::npos);
  EXPECT_NE(set_error({"model.attention=mla"}).find("model.mla.kv_lora_rank must be ≥ 1 when model.attention is mla"),
            std::string::npos);
  EXPECT_NE(set_error({"model.moe.groups=3"}).find("model.moe.groups (3) must divide model.moe.experts (8)"),
            std::string::npos);
  EXPECT_NE(set_error({"model.moe.groups=2", "model.moe.group_limit=3"}).find("must be ≤ model.moe.groups"),
            std::string::npos);
  EXPECT_NE(set_error({"model.moe.groups=8", "model.moe.group_limit=1", "model.moe.top_k=2"})
                .find("model.moe.top_k (2) must be ≤ model.moe.group_limit × experts per group (1 × 1)"),
            std::string::npos);
  EXPECT_NE(set_error({"cluster.comm_sms=132"}).find("cluster.comm_sms (132) must be < cluster.sms (132)"),
            std::string::npos);
  const std::string yaml = "cluster:\n  nvlnk_gbps: 160\n";
  EXPECT_NE(error_of([&] { parse_config(yaml, {}, "c.yaml"); }).find("c.yaml:2:3: unknown key 'cluster.nvlnk_gbps' (did you mean 'cluster.nvlink_gbps'?)"),
            std::string::npos);
}

}  // namespace
}  // namespace duet::io
