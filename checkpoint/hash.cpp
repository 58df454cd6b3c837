// XXH64 as specified in xxHash's doc/xxhash_spec.md (seed 0, little-endian reads).
#include "checkpoint/hash.h"

#include <cstring>

namespace duet::ckpt {
namespace {

constexpr std::uint64_t P1 = 0x9E3779B185EBCA87ULL;
constexpr std::uint64_t P2 = 0xC2B2AE3D27D4EB4FULL;
constexpr std::uint64_t P3 = 0x165667B19E3779F9ULL;
constexpr std::uint64_t P4 = 0x85EBCA77C2B2AE63ULL;
constexpr std::uint64_t P5 = 0x27D4EB2F165667C5ULL;

inline std::uint64_t rotl(std::uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

inline std::uint64_t read64(const unsigned char* p) {
  std::uint64_t x;
  std::memcpy(&x, p, 8);
  return x;  // little-endian hosts only (x86-64, aarch64)
}
inline std::uint32_t read32(const unsigned char* p) {
  std::uint32_t x;
  std::memcpy(&x, p, 4);
  return x;
}

inline std::uint64_t round(std::uint64_t acc, std::uint64_t lane) {
  acc += lane * P2;
  acc = rotl(acc, 31);
  return acc * P1;
}

inline std::uint64_t merge(std::uint64_t acc, std::uint64_t v) {
  acc ^= round(0, v);
  return acc * P1 + P4;
}

}  // namespace

Xxh64::Xxh64() : v_{P1 + P2, P2, 0, 0 - P1} {}

void Xxh64::update(const void* data, std::size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  total_ += size;
  if (buffered_ + size < 32) {
    if (size) std::memcpy(buf_ + buffered_, p, size);
    buffered_ += size;
    return;
  }
  if (buffered_) {  // complete the stripe left over from the previous call
    const std::size_t take = 32 - buffered_;
    std::memcpy(buf_ + buffered_, p, take);
    for (int i = 0; i < 4; ++i) v_[i] = round(v_[i], read64(buf_ + 8 * i));
    p += take;
    size -= take;
    buffered_ = 0;
  }
  std::uint64_t v0 = v_[0], v1 = v_[1], v2 = v_[2], v3 = v_[3];
  for (; size >= 32; p += 32, size -= 32) {
    v0 = round(v0, read64(p));
    v1 = round(v1, read64(p + 8));
    v2 = round(v2, read64(p + 16));
    v3 = round(v3, read64(p + 24));
  }
  v_[0] = v0, v_[1] = v1, v_[2] = v2, v_[3] = v3;
  if (size) std::memcpy(buf_, p, size);
  buffered_ = size;
}

std::uint64_t Xxh64::digest() const {
  std::uint64_t h;
  if (total_ >= 32) {
    h = rotl(v_[0], 1) + rotl(v_[1], 7) + rotl(v_[2], 12) + rotl(v_[3], 18);
    for (int i = 0; i < 4; ++i) h = merge(h, v_[i]);
  } else {
    h = v_[2] + P5;  // v_[2] is still the seed (0)
  }
  h += total_;
  const unsigned char* p = buf_;
  std::size_t n = buffered_;
  for (; n >= 8; p += 8, n -= 8) h = rotl(h ^ round(0, read64(p)), 27) * P1 + P4;
  if (n >= 4) {
    h = rotl(h ^ (std::uint64_t{read32(p)} * P1), 23) * P2 + P3;
    p += 4;
    n -= 4;
  }
  for (; n > 0; ++p, --n) h = rotl(h ^ (*p * P5), 11) * P1;
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h;
}

std::uint64_t xxh64(const void* data, std::size_t size) {
  Xxh64 h;
  h.update(data, size);
  return h.digest();
}

std::uint32_t fletcher32(const void* data, std::size_t size) {
  // Sequentially: s1 += w; s2 += s1 for each word w. Over a block of B words that adds
  // B·s1 + Σ (B - k)·w_k = B·s1 + B·Σw - Σ k·w_k to s2: two sums that vectorise. Block sums fit
  // 32 bits for B = 256 (Σ k·w < 65535 · 32640). HDF5 reduces as it goes with
  // x → (x & 0xffff) + (x >> 16), which keeps x mod 65535 and never turns a positive sum into 0:
  // its result is the residue in 1..65535, or 0 only for all-zero data.
  const auto* p = static_cast<const unsigned char*>(data);
  const std::size_t words = size / 2;
  constexpr std::uint32_t B = 256;
  std::uint64_t s1 = 0, s2 = 0;
  std::uint32_t any = 0;
  std::size_t i = 0;
  for (; i + B <= words; i += B) {
    const unsigned char* q = p + 2 * i;
    std::uint32_t a = 0, c = 0, nz = 0;
    for (std::uint32_t k = 0; k < B; ++k) {
      std::uint16_t raw;
      std::memcpy(&raw, q + 2 * k, 2);
      const std::uint32_t w = __builtin_bswap16(raw);
      a += w;
      c += k * w;
      nz |= w;
    }
    s2 = (s2 + B * s1 + std::uint64_t{B} * a - c) % 65535;
    s1 = (s1 + a) % 65535;
    any |= nz;
  }
  for (; i < words; ++i) {
    const std::uint32_t w = (std::uint32_t{p[2 * i]} << 8) | p[2 * i + 1];
    any |= w;
    s1 += w;
    s2 += s1;
  }
  if (size % 2) {
    const std::uint32_t w = std::uint32_t{p[size - 1]} << 8;
    any |= w;
    s1 += w;
    s2 += s1;
  }
  if (!any) return 0;
  std::uint32_t r1 = static_cast<std::uint32_t>(s1 % 65535), r2 = static_cast<std::uint32_t>(s2 % 65535);
  if (r1 == 0) r1 = 65535;
  if (r2 == 0) r2 = 65535;
  return (r2 << 16) | r1;
}

std::string format_hex64(std::uint64_t x) {
  static const char* digits = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, x >>= 4) s[i] = digits[x & 15];
  return s;
}

bool parse_hex64(std::string_view text, std::uint64_t& out) {
  if (text.size() != 16) return false;
  std::uint64_t x = 0;
  for (char c : text) {
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return false;
    x = (x << 4) | static_cast<std::uint64_t>(d);
  }
  out = x;
  return true;
}

}  // namespace duet::ckpt
