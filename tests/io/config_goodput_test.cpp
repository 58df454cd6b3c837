// goodput.*: what `duet simulate` assumes of failures and checkpoints. The default rate is
// Llama 3's, the keys round-trip, and a bad value names the key and what is allowed.
#include <gtest/gtest.h>

#include <string>

#include "io/config.h"

namespace duet::io {
namespace {

TEST(ConfigGoodput, DefaultsAreLlamaThreesRate) {
  const RunConfig c;
  // 419 interruptions on 16,384 GPUs in 54 days: 419 / 884,736 = 4.73588e-4 per GPU-day.
  EXPECT_NEAR(c.goodput.interruptions_per_gpu_day, 4.73588e-4, 1e-9);
  EXPECT_DOUBLE_EQ(c.goodput.checkpoint_save_s, 0);  // derived from bytes and bandwidth
  EXPECT_GT(c.goodput.restart_s, 0);
}

TEST(ConfigGoodput, RoundTripAndOverrides) {
  const RunConfig c = parse_config(default_config_text(),
                                   {"goodput.interruptions_per_gpu_day=0.001", "goodput.restart_s=120",
                                    "goodput.checkpoint_save_s=7.5", "goodput.checkpoint_write_gbps=200"});
  EXPECT_DOUBLE_EQ(c.goodput.interruptions_per_gpu_day, 0.001);
  EXPECT_DOUBLE_EQ(c.goodput.restart_s, 120);
  EXPECT_DOUBLE_EQ(c.goodput.checkpoint_save_s, 7.5);
  EXPECT_DOUBLE_EQ(c.goodput.checkpoint_write_gbps, 200);
  EXPECT_EQ(parse_config(to_yaml(c), {}, "resolved"), c);
}

TEST(ConfigGoodput, BadValuesNameTheKey) {
  auto error_of = [](const std::string& set) -> std::string {
    try {
      parse_config(default_config_text(), {set});
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error_of("goodput.interruptions_per_gpu_day=-1").find("goodput.interruptions_per_gpu_day: expected a number ≥ 0"),
            std::string::npos);
  EXPECT_NE(error_of("goodput.checkpoint_write_gbps=0").find("goodput.checkpoint_write_gbps: expected a number > 0"),
            std::string::npos);
  EXPECT_NE(error_of("goodput.restart_s=soon").find("goodput.restart_s"), std::string::npos);
}

}  // namespace
}  // namespace duet::io
