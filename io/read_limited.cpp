#include "io/read_limited.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace duet::io {

std::string read_file_limited(const std::string& path, std::uint64_t max_bytes, const std::string& what) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw std::runtime_error("cannot read " + what + " '" + path + "': it is a directory");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot read " + what + " '" + path + "': " + std::strerror(errno));
  std::string text;
  char buf[65536];
  bool too_large = false, failed = false;
  for (;;) {
    const size_t n = std::fread(buf, 1, sizeof buf, f);
    if (n == 0) {
      failed = std::ferror(f) != 0;
      break;
    }
    if (text.size() + n > max_bytes) {
      too_large = true;
      break;
    }
    text.append(buf, n);
  }
  std::fclose(f);
  if (too_large)
    throw FileTooLargeError(what + " '" + path + "' is larger than " + format_bytes(max_bytes) + ", the most a " +
                            what + " may be (is it the right file?)");
  if (failed) throw std::runtime_error("cannot read " + what + " '" + path + "': read error");
  return text;
}

std::string format_bytes(std::uint64_t bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double x = (double)bytes;
  int u = 0;
  while (x >= 1024 && u < 6) x /= 1024, ++u;
  char buf[32];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%llu B", (unsigned long long)bytes);
  else
    std::snprintf(buf, sizeof buf, x < 10 ? "%.2f %s" : x < 100 ? "%.1f %s" : "%.0f %s", x, units[u]);
  return buf;
}

bool parse_bytes(const std::string& text, std::uint64_t& out) {
  size_t i = 0;
  while (i < text.size() && std::isspace((unsigned char)text[i])) ++i;
  const size_t num_begin = i;
  while (i < text.size() && (std::isdigit((unsigned char)text[i]) || text[i] == '.')) ++i;
  if (i == num_begin) return false;
  const std::string number = text.substr(num_begin, i - num_begin);
  while (i < text.size() && std::isspace((unsigned char)text[i])) ++i;
  std::string unit = text.substr(i);
  while (!unit.empty() && std::isspace((unsigned char)unit.back())) unit.pop_back();
  int power = 0;
  if (!unit.empty()) {
    const char c = (char)std::toupper((unsigned char)unit[0]);
    const std::string rest = unit.substr(1);
    const char* p = std::strchr("BKMGT", c);
    if (!p) return false;
    power = (int)(p - "BKMGT");
    if (c == 'B') {
      if (!rest.empty()) return false;
    } else if (!(rest.empty() || rest == "B" || rest == "iB" || rest == "ib" || rest == "b")) {
      return false;
    }
  }
  if (number.find('.') == std::string::npos && power == 0) {
    if (number.size() > 20) return false;
    errno = 0;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(number.c_str(), &end, 10);
    if (errno == ERANGE || *end) return false;
    out = v;
    return true;
  }
  char* end = nullptr;
  const double v = std::strtod(number.c_str(), &end) * std::pow(1024.0, power);
  if (*end || !std::isfinite(v) || v < 0 || v >= 18446744073709551615.0) return false;
  out = (std::uint64_t)std::llround(v);
  return true;
}

}  // namespace duet::io
