#include "runtime/stages.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "model/tensor_spec.h"

namespace duet::runtime {

std::vector<RankStage> make_rank_stages(const model::ModelConfig& cfg, const sched::Schedule& schedule, int pp_rank,
                                        int ep, int ep_rank, uint64_t seed,
                                        const std::vector<model::ExpertExchange*>& exchanges) {
  const sched::Placement pl = schedule.placement();
  // More stages than layers is allowed (DualPipeV at PP 4 has 8 stages): the extra stages
  // hold no layer and pass activations through, the last still holds the head.
  auto ranges = model::split_layers(cfg, pl.num_stages());
  if (ep > 1) {
    if (cfg.experts % ep != 0)
      throw std::invalid_argument("model.moe.experts (" + std::to_string(cfg.experts) +
                                  ") must be a multiple of parallel.ep (" + std::to_string(ep) + ")");
    const int El = cfg.experts / ep;
    for (auto& r : ranges) r.expert_begin = ep_rank * El, r.expert_end = (ep_rank + 1) * El;
  }
  std::vector<RankStage> stages;
  for (int d = 0; d < pl.num_dirs(); ++d) {
    RankStage s;
    s.dir = d, s.stage = pl.stage_of(pp_rank, d), s.model_copy = pl.model_copy_of(d);
    s.first = pl.is_first_stage(pp_rank, d), s.last = pl.is_last_stage(pp_rank, d);
    s.arena = std::make_unique<model::ParamArena>(model::stage_tensor_specs(cfg, ranges[s.stage]));
    model::init_parameters(*s.arena, cfg, seed);
    s.model = std::make_unique<model::Stage>(cfg, ranges[s.stage], *s.arena, exchanges.empty() ? nullptr : exchanges[d]);
    const int mbs = schedule.microbatches_per_dir();
    s.activations.resize(mbs);
    s.tokens.resize(mbs), s.targets.resize(mbs);
    stages.push_back(std::move(s));
  }
  return stages;
}

std::vector<int> by_stage(const std::vector<RankStage>& stages) {
  std::vector<int> v(stages.size());
  for (size_t i = 0; i < v.size(); ++i) v[i] = (int)i;
  std::sort(v.begin(), v.end(), [&](int a, int b) { return stages[a].stage < stages[b].stage; });
  return v;
}

}  // namespace duet::runtime
