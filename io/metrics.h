#pragma once
// What a run writes for people and tools: the run directory, metrics.jsonl, train.log and
// the progress line.
//
//   <run.dir>/<run.name>/
//       config.yaml     the resolved config (to_yaml), run.name and run.id filled in
//       metrics.jsonl   one JSON object per line: each job's header record, then one per step
//       train.log       what was printed, with timestamps
//       run.lock        while a job owns the directory; FINISHED once all steps are done and saved
//                       (io/run_dir.h: who owns a run directory; `duet train` uses claim_run_dir)

#include <concepts>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/config.h"

namespace duet::io {

// ---- run directory ------------------------------------------------------------------------

// Creates <run.dir>/<run.name>/ and writes config.yaml into it; returns the directory's path.
// An empty run.name becomes a timestamp (run_timestamp()), with "-2", "-3"... appended if that
// directory exists already. A named directory that exists is reused (a resumed run).
// Throws std::runtime_error naming the path when it cannot be created or written.
std::string make_run_dir(const RunConfig& cfg);

// "YYYYmmdd-HHMMSS" in local time.
std::string run_timestamp(std::time_t t);

// Writes `text` to `path` through a temporary file and a rename, so a reader never sees half
// a file. Throws std::runtime_error naming the path.
void write_file_atomically(const std::filesystem::path& path, const std::string& text);

// checkpoint.dir, or <run_dir>/checkpoints when it is "".
std::string checkpoint_dir(const RunConfig& cfg, const std::string& run_dir);

// ---- metrics.jsonl -------------------------------------------------------------------------

// One flat JSON object; keys keep insertion order (adding a key again replaces its value in
// place). Doubles are written with the shortest text that reads back to the same double;
// NaN and ±inf, which JSON cannot express, are written as null.
class JsonLine {
 public:
  template <std::integral T>
    requires(!std::same_as<T, bool>)
  JsonLine& add(std::string_view key, T value) {
    return put(key, std::to_string(value));
  }
  template <std::floating_point T>
  JsonLine& add(std::string_view key, T value) {
    return put(key, number(static_cast<double>(value)));
  }
  JsonLine& add(std::string_view key, bool value) { return put(key, value ? "true" : "false"); }
  JsonLine& add(std::string_view key, std::string_view value) { return put(key, quote(value)); }
  JsonLine& add(std::string_view key, const char* value) { return put(key, quote(value)); }
  JsonLine& add_null(std::string_view key) { return put(key, "null"); }

  std::string str() const;  // {"step":1,"loss":5.54} — no newline
  bool empty() const { return fields_.empty(); }

  static std::string number(double x);         // shortest round-trip text, or null
  static std::string quote(std::string_view s);  // a JSON string literal

 private:
  JsonLine& put(std::string_view key, std::string json);
  std::vector<std::pair<std::string, std::string>> fields_;  // key, value as JSON text
};

// Appends one line per write() to a file (created if missing) and flushes it, so a crashed
// or killed run keeps every line it wrote. Thread-safe.
class MetricsWriter {
 public:
  explicit MetricsWriter(const std::string& path);  // throws std::runtime_error naming the path
  void write(const JsonLine& line);
  const std::string& path() const { return path_; }

 private:
  struct Close {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::string path_;
  std::unique_ptr<std::FILE, Close> file_;
  std::mutex mu_;
};

// ---- train.log -----------------------------------------------------------------------------

// Prints lines to stdout and appends them to a log file, there prefixed with the local time
// ("2026-11-30 04:57:31.123  step 10/300 ..."). An empty path logs to stdout only; echo =
// false writes the file only (e.g. on ranks other than 0). Thread-safe.
class RunLog {
 public:
  explicit RunLog(const std::string& path, bool echo = true);
  void print(std::string_view text);  // text may hold several lines

 private:
  struct Close {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, Close> file_;
  bool echo_;
  std::mutex mu_;
};

// ---- progress line -------------------------------------------------------------------------

struct Progress {
  std::int64_t step = 0;   // steps done
  std::int64_t steps = 0;  // steps in the run
  double loss = 0;
  double lr = 0;
  double tokens_per_s = 0;
  double eta_s = 0;   // seconds left; negative or non-finite prints "?"
  std::string extra;  // appended after two spaces when not empty, e.g. "val 2.31"
};

// "step  20/300  loss 3.412  lr 2.9e-03  12.3k tok/s  eta 1m42s"
std::string format_progress(const Progress& p);

// 42s, 1m42s, 2h05m, 3d04h; "?" for negative or non-finite seconds.
std::string format_duration(double seconds);

// 950, 12.3k, 4.56M, 1.20G; "?" for negative or non-finite.
std::string format_rate(double per_second);

}  // namespace duet::io
