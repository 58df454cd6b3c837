#pragma once
// Which sequences each micro-batch of a step trains on. Sequence numbers are global —
// step-major, then data-parallel replica, then model copy, then micro-batch — so every layout
// trains on the same sequences in the same step (the property the pipelined-vs-one-process
// tests rest on), and a run's data position is one integer: step × global_batch, plus the
// offset a resume with another train.global_batch gives it (set_data_offset).

#include <cstdint>
#include <vector>

#include "io/data.h"
#include "runtime/stages.h"

namespace duet::runtime {

class TrainBatches {
 public:
  // dp_rank: this rank's replica; microbatches: per pipeline replica (all directions).
  TrainBatches(const io::TokenDataset& data, uint64_t seed, int global_batch, int micro_batch_size, int seq_len,
               int dp_rank, int microbatches);

  // Fills tokens and targets of the first and last stages for every micro-batch of `step`
  // (1-based); other stages need none.
  void fill(int step, std::vector<RankStage>& stages);
  // Sequences to add to step × global_batch: a run resumed at step S from a position P saved
  // with another global batch goes on at P, not at S × global_batch (which would train on
  // sequences again, or skip some). 0 otherwise.
  void set_data_offset(int64_t sequences) { offset_ = sequences; }

 private:
  const io::TokenDataset& data_;
  uint64_t seed_;
  int global_batch_, batch_, seq_len_, dp_rank_, microbatches_;
  int64_t offset_ = 0;
  std::vector<int32_t> window_;
};

}  // namespace duet::runtime
