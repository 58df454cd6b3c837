// What a rank reads back from a shard's (or snapshot's) state besides the tensors.
#include <gtest/gtest.h>

#include <map>
#include <stdexcept>
#include <string>

#include "runtime/checkpointing.h"

using duet::runtime::saved_optimizer_steps;

// A state without the optimizer's step count (or with text there) is refused naming the
// checkpoint; it failed with a bare "map::at" or "stol".
TEST(CheckpointState, AMissingOptimizerStepCountNamesTheCheckpoint) {
  EXPECT_EQ(saved_optimizer_steps({{"optimizer_steps", "42"}}, "checkpoint /x/step-000042"), 42);
  for (const auto& attributes : {std::map<std::string, std::string>{}, std::map<std::string, std::string>{{"optimizer_steps", "4x"}},
                                 std::map<std::string, std::string>{{"optimizer_steps", ""}}}) {
    try {
      saved_optimizer_steps(attributes, "checkpoint /x/step-000042");
      ADD_FAILURE() << "accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()).rfind("checkpoint /x/step-000042: its state has no optimizer step count", 0), 0u)
          << e.what();
    }
  }
}
