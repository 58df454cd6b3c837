#pragma once
// XXH64 (xxHash, 64-bit, seed 0): the whole-file checksum of checkpoint shards. Chosen over
// CRC32 because it runs at memory speed in portable C++ (no CPU-specific instructions), so
// hashing a freshly written shard costs little next to the fsync.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace duet::ckpt {

// Streaming XXH64: update() any number of times with any split, then digest(); the result
// equals xxh64() of the concatenated bytes.
class Xxh64 {
 public:
  Xxh64();
  void update(const void* data, std::size_t size);
  std::uint64_t digest() const;

 private:
  std::uint64_t v_[4];
  std::uint64_t total_ = 0;
  unsigned char buf_[32];
  std::size_t buffered_ = 0;
};

std::uint64_t xxh64(const void* data, std::size_t size);
inline std::uint64_t xxh64(std::string_view s) { return xxh64(s.data(), s.size()); }

// HDF5's Fletcher32 (H5_checksum_fletcher32: big-endian 16-bit words, sums reduced to
// 1..65535 unless the data is all zero), bit for bit, at memory speed. The shard writer
// computes each chunk's checksum with it and writes the chunk directly (H5Dwrite_chunk),
// because HDF5's own filter runs at about 1 GB/s and was half the cost of a save.
std::uint32_t fletcher32(const void* data, std::size_t size);

// 16 lower-case hex digits, and back. parse_hex64 returns false unless `text` is exactly 16
// hex digits.
std::string format_hex64(std::uint64_t x);
bool parse_hex64(std::string_view text, std::uint64_t& out);

}  // namespace duet::ckpt
