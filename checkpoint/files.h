#pragma once
// File-system steps of the checkpoint commit protocol: durable writes (fsync of the file and
// of the directory that names it), atomic replacement, whole-file hashing. Internal to
// checkpoint/*.cpp. Every error names the path and the system's reason.

#include <cstdint>
#include <string>
#include <string_view>

namespace duet::ckpt::detail {

// fsync() of a file's data, or of a directory (which makes the names in it durable: a rename
// is only durable once the directory holding it is synced).
void fsync_file(const std::string& path);
void fsync_dir(const std::string& dir);

// Writes `text` to `<path>.tmp`, fsyncs it and renames it over `path`: a reader sees the old
// file or the whole new one. The directory is not synced (the caller syncs once for several).
void write_file_durably(const std::string& path, std::string_view text);

// The whole file; throws naming the path when it cannot be read or is larger than max_bytes
// (manifests and sidecars are small; a huge one is damage, not data).
std::string read_small_file(const std::string& path, std::size_t max_bytes = 256u << 20);

// XXH64 of a file's bytes, and its size.
struct FileDigest {
  std::uint64_t size = 0;
  std::uint64_t xxh64 = 0;
};
FileDigest hash_file(const std::string& path);

// Points the symlink `link` at `target` atomically (a temporary link renamed over it).
void replace_symlink(const std::string& target, const std::string& link);

}  // namespace duet::ckpt::detail
