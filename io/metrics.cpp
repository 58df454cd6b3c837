// The run directory, metrics.jsonl, train.log and the progress line.
#include "io/metrics.h"

#include <charconv>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "core/json.h"

namespace duet::io {
namespace fs = std::filesystem;

namespace {

std::FILE* open_append(const std::string& path, const char* what) {
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (!f) throw std::runtime_error(std::string("cannot open ") + what + " '" + path + "': " + std::strerror(errno));
  return f;
}

}  // namespace

// ---- run directory ------------------------------------------------------------------------

std::string run_timestamp(std::time_t t) {
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return buf;
}

std::string make_run_dir(const RunConfig& cfg) {
  RunConfig resolved = cfg;
  fs::path dir = fs::path(cfg.run.dir) / cfg.run.name;
  std::error_code ec;
  if (cfg.run.name.empty()) {
    // Two runs started in the same second get -2, -3...: neither reuses the other's folder.
    const std::string stamp = run_timestamp(std::time(nullptr));
    resolved.run.name = stamp;
    for (int n = 2; fs::exists(fs::path(cfg.run.dir) / resolved.run.name, ec); ++n)
      resolved.run.name = stamp + "-" + std::to_string(n);
    dir = fs::path(cfg.run.dir) / resolved.run.name;
  }
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    throw std::runtime_error("cannot create run directory '" + dir.string() + "'" +
                             (ec ? ": " + ec.message() : std::string(": a file of that name exists")));
  write_file_atomically(dir / "config.yaml", to_yaml(resolved));
  return dir.string();
}

std::string checkpoint_dir(const RunConfig& cfg, const std::string& run_dir) {
  return cfg.checkpoint.dir.empty() ? (fs::path(run_dir) / "checkpoints").string() : cfg.checkpoint.dir;
}

// ---- metrics.jsonl -------------------------------------------------------------------------

std::string JsonLine::number(double x) { return core::json::number(x); }

std::string JsonLine::quote(std::string_view s) { return core::json::quote(s); }

JsonLine& JsonLine::put(std::string_view key, std::string json) {
  for (auto& field : fields_)
    if (field.first == key) {
      field.second = std::move(json);
      return *this;
    }
  fields_.emplace_back(std::string(key), std::move(json));
  return *this;
}

std::string JsonLine::str() const {
  std::string out = "{";
  for (std::size_t i = 0; i < fields_.size(); ++i) {
    if (i) out += ',';
    out += quote(fields_[i].first);
    out += ':';
    out += fields_[i].second;
  }
  return out + "}";
}

MetricsWriter::MetricsWriter(const std::string& path) : path_(path), file_(open_append(path, "metrics file")) {}

void MetricsWriter::write(const JsonLine& line) {
  const std::string text = line.str() + "\n";
  std::lock_guard lock(mu_);
  if (std::fwrite(text.data(), 1, text.size(), file_.get()) != text.size() || std::fflush(file_.get()) != 0)
    throw std::runtime_error("cannot write metrics file '" + path_ + "': " + std::strerror(errno));
}

// ---- train.log -----------------------------------------------------------------------------

RunLog::RunLog(const std::string& path, bool echo)
    : file_(path.empty() ? nullptr : open_append(path, "log file")), echo_(echo) {}

void RunLog::print(std::string_view text) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  localtime_r(&t, &tm);
  char stamp[40];
  const std::size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
  std::snprintf(stamp + n, sizeof stamp - n, ".%03d  ", static_cast<int>(ms));

  std::lock_guard lock(mu_);
  // Each line gets the stamp; one trailing newline does not make an extra empty line.
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  for (;;) {
    const std::size_t eol = text.find('\n');
    const std::string_view line = text.substr(0, eol);
    if (echo_) {
      std::fwrite(line.data(), 1, line.size(), stdout);
      std::fputc('\n', stdout);
    }
    if (file_) {
      std::fputs(stamp, file_.get());
      std::fwrite(line.data(), 1, line.size(), file_.get());
      std::fputc('\n', file_.get());
    }
    if (eol == std::string_view::npos) break;
    text.remove_prefix(eol + 1);
  }
  // Logging must not stop training: a full disk shows up in the metrics writer, which throws.
  if (echo_) std::fflush(stdout);
  if (file_) std::fflush(file_.get());
}

// ---- progress line -------------------------------------------------------------------------

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long long s = std::llround(seconds);
  char buf[48];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%llds", s);
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  else if (s < 86400)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, s % 3600 / 60);
  else
    std::snprintf(buf, sizeof buf, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
  return buf;
}

std::string format_rate(double x) {
  if (!std::isfinite(x) || x < 0) return "?";
  char buf[48];
  if (x < 999.5)
    std::snprintf(buf, sizeof buf, "%.0f", x);
  else if (x < 999.95e3)
    std::snprintf(buf, sizeof buf, "%.1fk", x / 1e3);
  else if (x < 999.5e6)
    std::snprintf(buf, sizeof buf, "%.2fM", x / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%.2fG", x / 1e9);
  return buf;
}

std::string format_progress(const Progress& p) {
  const int width = static_cast<int>(std::to_string(p.steps).size());
  char buf[160];
  std::snprintf(buf, sizeof buf, "step %*lld/%lld  loss %.3f  lr %.1e  %s tok/s  eta %s", width,
                static_cast<long long>(p.step), static_cast<long long>(p.steps), p.loss, p.lr,
                format_rate(p.tokens_per_s).c_str(), format_duration(p.eta_s).c_str());
  std::string line = buf;
  if (!p.extra.empty()) line += "  " + p.extra;
  return line;
}

// Writes `text` to `path` through a temporary file and a rename, so a reader never sees half
// a file.
void write_file_atomically(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) throw std::runtime_error("cannot write '" + tmp.string() + "': " + std::strerror(errno));
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  const bool closed = std::fclose(f) == 0;
  std::error_code ec;
  if (!ok || !closed) {
    fs::remove(tmp, ec);
    throw std::runtime_error("cannot write '" + tmp.string() + "'");
  }
  fs::rename(tmp, path, ec);
  if (ec) throw std::runtime_error("cannot rename '" + tmp.string() + "' to '" + path.string() + "': " + ec.message());
}

}  // namespace duet::io
