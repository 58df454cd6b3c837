#include "runtime/batches.h"

namespace duet::runtime {

TrainBatches::TrainBatches(const io::TokenDataset& data, uint64_t seed, int global_batch, int micro_batch_size,
                           int seq_len, int dp_rank, int microbatches)
    : data_(data), seed_(seed), global_batch_(global_batch), batch_(micro_batch_size), seq_len_(seq_len),
      dp_rank_(dp_rank), microbatches_(microbatches) {}

void TrainBatches::fill(int step, std::vector<RankStage>& stages) {
  const int T = seq_len_;
  for (auto& s : stages) {
    if (!s.first && !s.last) continue;
    const int per_dir = (int)s.activations.size();
    for (int mb = 0; mb < per_dir; ++mb) {
      const uint64_t local = (uint64_t)s.model_copy * per_dir + mb;
      const uint64_t first =
          (uint64_t)((int64_t)(step - 1) * global_batch_ + offset_) + ((uint64_t)dp_rank_ * microbatches_ + local) * batch_;
      window_.resize((size_t)batch_ * (T + 1));
      for (int j = 0; j < batch_; ++j) data_.train_sequence(seed_, first + j, T, window_.data() + (size_t)j * (T + 1));
      auto& tok = s.tokens[mb];
      auto& tgt = s.targets[mb];
      tok.resize((size_t)batch_ * T), tgt.resize((size_t)batch_ * T);
      for (int j = 0; j < batch_; ++j)
        for (int t = 0; t < T; ++t) {
          tok[(size_t)j * T + t] = window_[(size_t)j * (T + 1) + t];
          tgt[(size_t)j * T + t] = window_[(size_t)j * (T + 1) + t + 1];
        }
    }
  }
}

}  // namespace duet::runtime
