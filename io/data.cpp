// Token data: reading the text, the per-file train/validation split, seeded windows.
#include "io/data.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace duet::io {
namespace fs = std::filesystem;

namespace {

// splitmix64's finalizer: a bijection on 64-bit values with good avalanche.
std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::string too_short(std::size_t size, int seq_len) {
  return "has " + std::to_string(size) + " tokens, fewer than train.seq_len + 1 = " + std::to_string(seq_len + 1);
}

std::vector<std::uint8_t> read_file(const fs::path& file, const std::string& data_path) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw DataError("data.path '" + data_path + "': cannot read '" + file.string() + "': " + std::strerror(errno));
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw DataError("data.path '" + data_path + "': read error in '" + file.string() + "'");
  return bytes;
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The files behind data.path, in the order they are concatenated.
std::vector<fs::path> source_files(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);  // follows a symlink given as data.path
  if (ec || !fs::exists(st)) throw DataError("data.path '" + path + "': no such file or directory");
  if (fs::is_regular_file(st)) return {fs::path(path)};
  if (!fs::is_directory(st)) throw DataError("data.path '" + path + "': not a regular file or a directory");

  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    // symlink_status: the links in the fortunes folder (*.u8 -> the file) would double it.
    if (!fs::is_regular_file(entry.symlink_status())) continue;
    const std::string name = entry.path().filename().string();
    if (ends_with(name, ".dat") || ends_with(name, ".u8")) continue;  // fortune indexes
    files.push_back(entry.path());
  }
  if (ec) throw DataError("data.path '" + path + "': cannot list the directory: " + ec.message());
  if (files.empty())
    throw DataError("data.path '" + path + "': the directory has no regular files (symlinks, *.dat and *.u8 are skipped)");
  std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
    return a.filename().string() < b.filename().string();  // byte order: independent of the locale
  });
  return files;
}

}  // namespace

std::uint64_t sequence_offset(std::size_t split_size, std::uint64_t seed, std::uint64_t index, int seq_len) {
  const std::uint64_t starts = split_size - static_cast<std::uint64_t>(seq_len);  // offsets 0 .. starts-1
  const std::uint64_t h = mix64(mix64(seed) ^ index);
  // Multiply-shift maps h to [0, starts) with a bias below starts / 2^64.
  return static_cast<std::uint64_t>((static_cast<unsigned __int128>(h) * starts) >> 64);
}

void fill_sequence(std::span<const std::uint8_t> split, std::uint64_t seed, std::uint64_t index, int seq_len,
                   std::int32_t* tokens_out) {
  if (seq_len < 1 || split.size() < static_cast<std::size_t>(seq_len) + 1)
    throw DataError("data split " + too_short(split.size(), seq_len));
  const std::uint64_t offset = sequence_offset(split.size(), seed, index, seq_len);
  const std::uint8_t* src = split.data() + offset;
  for (int t = 0; t <= seq_len; ++t) tokens_out[t] = src[t];
}

void fill_sequences(std::span<const std::uint8_t> split, std::uint64_t seed, std::uint64_t first_index, int count,
                    int seq_len, std::span<std::int32_t> out) {
  const std::size_t window = static_cast<std::size_t>(seq_len) + 1;
  if (count < 0 || out.size() != static_cast<std::size_t>(count) * window)
    throw std::invalid_argument("fill_sequences: out has " + std::to_string(out.size()) + " tokens, expected " +
                                std::to_string(count) + " × " + std::to_string(window));
  for (int i = 0; i < count; ++i) fill_sequence(split, seed, first_index + i, seq_len, out.data() + i * window);
}

TokenDataset TokenDataset::load(const std::string& path, double val_fraction) {
  if (!(val_fraction > 0 && val_fraction <= 0.5))
    throw DataError("data.val_fraction: expected a number with 0 < x ≤ 0.5, got " + std::to_string(val_fraction));
  TokenDataset ds;
  ds.path_ = path;
  std::vector<std::uint8_t> val;
  for (const fs::path& file : source_files(path)) {
    std::vector<std::uint8_t> bytes = read_file(file, path);
    // Integer split point, computed the same way on every machine.
    const std::size_t n_val = static_cast<std::size_t>(static_cast<double>(bytes.size()) * val_fraction);
    const std::size_t n_train = bytes.size() - n_val;
    ds.bytes_.insert(ds.bytes_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n_train));
    val.insert(val.end(), bytes.begin() + static_cast<std::ptrdiff_t>(n_train), bytes.end());
    ds.files_.push_back(file.string());
  }
  if (ds.bytes_.empty() && val.empty()) throw DataError("data.path '" + path + "': no data (the files are empty)");
  ds.train_size_ = ds.bytes_.size();
  ds.bytes_.insert(ds.bytes_.end(), val.begin(), val.end());
  return ds;
}

TokenDataset TokenDataset::load(const RunConfig& cfg) {
  TokenDataset ds = load(cfg.data.path, cfg.data.val_fraction);
  ds.require_window(cfg.train.seq_len);
  ds.require_vocab(cfg.model.vocab);
  return ds;
}

void TokenDataset::require_window(int seq_len) const {
  if (train().size() < static_cast<std::size_t>(seq_len) + 1)
    throw DataError("data.path '" + path_ + "': the training split " + too_short(train().size(), seq_len));
  if (val().size() < static_cast<std::size_t>(seq_len) + 1)
    throw DataError("data.path '" + path_ + "': the validation split " + too_short(val().size(), seq_len) +
                    "; raise data.val_fraction, lower train.seq_len or use more data");
}

void TokenDataset::require_vocab(int vocab) const {
  if (vocab >= 256) return;
  const auto it = std::max_element(bytes_.begin(), bytes_.end());
  if (it != bytes_.end() && *it >= vocab)
    throw DataError("model.vocab (" + std::to_string(vocab) + ") is too small for data.path '" + path_ +
                    "': it holds byte value " + std::to_string(*it) + "; byte-level data needs model.vocab = 256");
}

}  // namespace duet::io
