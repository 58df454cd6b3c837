#pragma once
// The stages a rank holds — one per direction of its schedule (DualPipe and DualPipeV: two) —
// with their parameters, per-micro-batch activations and input tokens. The trainer owns
// them; the engine runs a schedule's ops on them, ZeRO reduces and updates their
// parameters, checkpoints save and load them.

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/buffer.h"
#include "model/arena.h"
#include "model/config.h"
#include "model/expert_exchange.h"
#include "model/stage.h"
#include "scheduler/schedule.h"

namespace duet::runtime {

struct RankStage {
  int dir = 0;         // the direction of the schedule's ops that run it
  int stage = 0;       // its index in its model copy
  int model_copy = 0;  // DualPipe trains two copies of the model, one per direction
  bool first = false, last = false;
  std::unique_ptr<model::ParamArena> arena;
  std::unique_ptr<model::Stage> model;
  std::vector<model::StageActivations> activations;   // per micro-batch of its direction
  std::vector<kernels::Buffer<int32_t>> tokens, targets;  // per micro-batch: first / last stage only
  std::vector<int64_t> reduced_load;                  // expert load summed over its copies
};

// The stages of pipeline position pp_rank, indexed by direction, parameters initialised from
// `seed` (identical on every layout). With expert parallelism (exchanges[dir] given, ep > 1)
// each holds experts [ep_rank·E/ep, (ep_rank+1)·E/ep). Throws std::invalid_argument when the
// experts do not split over ep.
std::vector<RankStage> make_rank_stages(const model::ModelConfig& cfg, const sched::Schedule& schedule, int pp_rank,
                                        int ep, int ep_rank, uint64_t seed,
                                        const std::vector<model::ExpertExchange*>& exchanges);

// Stage indices in stage order: the order in which every holder of the same stages issues
// its blocking collectives over them.
std::vector<int> by_stage(const std::vector<RankStage>& stages);

}  // namespace duet::runtime
