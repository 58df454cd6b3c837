#include "runtime/expert_balance.h"

#include <algorithm>

namespace duet::runtime {

void reduce_expert_load(std::vector<RankStage>& stages, ProcessGroups& groups) {
  for (int i : by_stage(stages)) {
    RankStage& s = stages[i];
    auto load = s.model->expert_load();
    std::vector<int64_t> sum(load.begin(), load.end());
    Communicator& copies = *groups.stage_of_dir(s.dir).copies;
    if (!sum.empty() && copies.size() > 1) copies.allreduce(std::span<int64_t>(sum), ReduceOp::Sum);
    s.model->reset_expert_load();
    s.reduced_load = std::move(sum);
  }
}

void update_expert_bias(std::vector<RankStage>& stages, float rate) {
  for (auto& s : stages) s.model->update_expert_bias(s.reduced_load, rate);
}

double expert_imbalance(const std::vector<int64_t>& load, int experts) {
  double worst = 1.0;
  for (size_t r = 0; r + experts <= load.size(); r += experts) {
    double sum = 0, mx = 0;
    for (int e = 0; e < experts; ++e) sum += load[r + e], mx = std::max(mx, (double)load[r + e]);
    if (sum > 0) worst = std::max(worst, mx / (sum / experts));
  }
  return worst;
}

}  // namespace duet::runtime
