#pragma once
// Reading a whole user-named file with a size limit: `--config /dev/zero` or a 4 GB
// `--validate` file is refused with a message instead of growing until the machine gives out.

#include <cstdint>
#include <stdexcept>
#include <string>

namespace duet::io {

// Thrown when a file is larger than its limit; the message names the file, the limit and what
// the file was supposed to be.
struct FileTooLargeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Limits for the files a user hands duet: configs are a few KiB, schedule text files hold a
// line per op (DualPipe at 64 ranks × 1,024 micro-batches is ~3 MiB).
constexpr std::uint64_t kMaxConfigFileBytes = 4ull << 20;
constexpr std::uint64_t kMaxScheduleFileBytes = 64ull << 20;

// The whole file, reading at most max_bytes (also from pipes and devices, whose size is not
// known up front). `what` names the file's role in messages: "config file", "schedule file".
// Throws FileTooLargeError past the limit, std::runtime_error when it cannot be opened or read
// (a directory included).
std::string read_file_limited(const std::string& path, std::uint64_t max_bytes, const std::string& what);

// "4 MiB", "1.5 GiB", "512 B": a byte count for messages.
std::string format_bytes(std::uint64_t bytes);

// Parses a byte count: "8589934592", "8GiB", "512 MiB", "2.5G", "100k" (k, M, G, T and
// KiB..TiB are powers of 1024; "B" optional). Returns false on anything else or overflow.
bool parse_bytes(const std::string& text, std::uint64_t& out);

}  // namespace duet::io
