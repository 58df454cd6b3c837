#pragma once
// DeepSeek-V3's auxiliary-loss-free expert balancing, across ranks: after each step every
// stage's routing counts are summed over the stage's copies (the router is dense, so every
// copy must move its biases alike), then each MoE layer's selection bias moves by
// bias_update_rate · sign(mean load − load) (model::Stage::update_expert_bias).

#include <cstdint>
#include <vector>

#include "runtime/process_groups.h"
#include "runtime/stages.h"

namespace duet::runtime {

// Sums each stage's expert load over its copies into RankStage::reduced_load and resets the
// stage's counts. Collective over each stage's copies, in stage order.
void reduce_expert_load(std::vector<RankStage>& stages, ProcessGroups& groups);
// Moves every stage's expert biases by its reduced load.
void update_expert_bias(std::vector<RankStage>& stages, float rate);

// max(load) / mean(load) over the experts of each MoE layer, the worst layer; 1 is perfect.
double expert_imbalance(const std::vector<int64_t>& load, int experts);

}  // namespace duet::runtime
