#pragma once
// Token data: byte-level tokens (one byte = one token, vocab 256) from real text.
//
// Split. Each source file contributes its first (1 - val_fraction) bytes to the training
// split and its last val_fraction bytes to the validation split; the splits are the
// concatenations of those parts in file-name order. Per file rather than of the whole
// concatenation, so that validation text comes from every file (the fortune files differ a
// lot in style) and not only from the last one or two. For a single file it is exactly
// "the last val_fraction of the bytes".
//
// Sampling. A sequence is a window of seq_len + 1 tokens (inputs, and targets shifted by
// one). Sequence `index` of the training stream — index = step × global_batch + j — starts
// at an offset given by a hash of (seed, index) only, so:
//   - any rank computes exactly the sequences it is responsible for, whatever the layout;
//   - the data position is one integer (sequences consumed) saved in the run state, and a
//     resumed run continues with the same sequences it would have seen.
// Validation sequence i uses a fixed seed (kValidationSeed): the same windows for every
// run, seed and step, so validation losses are comparable across runs.

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/config.h"

namespace duet::io {

// A user error about the data: missing path, no data, data too short.
struct DataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline constexpr std::uint64_t kValidationSeed = 0x76616c69646174ull;  // "validat"

// Start of sequence `index` in a split of split_size tokens; the window
// [offset, offset + seq_len + 1) lies inside the split. Requires split_size ≥ seq_len + 1.
std::uint64_t sequence_offset(std::size_t split_size, std::uint64_t seed, std::uint64_t index, int seq_len);

// Writes sequence `index` (seq_len + 1 tokens) of `split` to tokens_out.
// Throws DataError when the split is shorter than seq_len + 1.
void fill_sequence(std::span<const std::uint8_t> split, std::uint64_t seed, std::uint64_t index, int seq_len,
                   std::int32_t* tokens_out);

// Sequences first_index .. first_index + count - 1, one after another:
// out.size() must be count × (seq_len + 1).
void fill_sequences(std::span<const std::uint8_t> split, std::uint64_t seed, std::uint64_t first_index, int count,
                    int seq_len, std::span<std::int32_t> out);

class TokenDataset {
 public:
  // Reads `path`: a file (symlinks followed), or a directory whose regular files — not
  // symlinks, not *.dat or *.u8 (fortune indexes and their links) — are taken in name order.
  // Throws DataError naming the path when it is missing, unreadable or holds no bytes.
  static TokenDataset load(const std::string& path, double val_fraction);

  // From the config: data.path and data.val_fraction, then the checks below with
  // train.seq_len and model.vocab.
  static TokenDataset load(const RunConfig& cfg);

  std::span<const std::uint8_t> train() const { return {bytes_.data(), train_size_}; }
  std::span<const std::uint8_t> val() const { return {bytes_.data() + train_size_, bytes_.size() - train_size_}; }
  const std::vector<std::string>& files() const { return files_; }

  // Throws DataError when either split is shorter than seq_len + 1 tokens.
  void require_window(int seq_len) const;
  // Throws DataError when a byte is ≥ vocab (only possible for vocab < 256).
  void require_vocab(int vocab) const;

  // Training sequence `index` (index = step × global_batch + j), seq_len + 1 tokens.
  void train_sequence(std::uint64_t seed, std::uint64_t index, int seq_len, std::int32_t* out) const {
    fill_sequence(train(), seed, index, seq_len, out);
  }
  // Validation sequence `index` of the fixed validation set, seq_len + 1 tokens.
  void val_sequence(std::uint64_t index, int seq_len, std::int32_t* out) const {
    fill_sequence(val(), kValidationSeed, index, seq_len, out);
  }

 private:
  std::vector<std::uint8_t> bytes_;  // the training split, then the validation split
  std::size_t train_size_ = 0;
  std::vector<std::string> files_;
  std::string path_;
};

}  // namespace duet::io
