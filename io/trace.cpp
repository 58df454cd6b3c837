#include "io/trace.h"

#include <stdexcept>

#include "core/json.h"

namespace duet::io {

TraceRecorder::TraceRecorder(const std::string& path, int rank, size_t chunk_events)
    : path_(path), rank_(rank), chunk_(chunk_events < 1 ? 1 : chunk_events) {
  file_.reset(std::fopen(path.c_str(), "w"));
  if (!file_) throw std::runtime_error("cannot write trace file " + path);
  buffer_.reserve(chunk_);
  std::FILE* f = file_.get();
  std::fprintf(f, "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n");
  std::fprintf(f, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"args\":{\"name\":\"rank %d\"}}", rank, rank);
  for (int t = 0; t < core::kTraceThreads; ++t)
    std::fprintf(f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":\"%s\"}}", rank, t,
                 core::trace_thread_name(static_cast<TraceThread>(t)));
  if (std::fflush(f) != 0) throw std::runtime_error("cannot write trace file " + path);
}

TraceRecorder::~TraceRecorder() {
  try {
    close();
  } catch (...) {  // reported by an explicit close(); a destructor never throws
  }
}

void TraceRecorder::add(std::string name, TraceCategory cat, TraceThread thread, double t0, double t1, TraceOpRef op,
                        double core_wait, double device_busy) {
  std::vector<TraceEvent> full;
  {
    std::lock_guard<std::mutex> lock(mu_);
    buffer_.push_back({std::move(name), cat, thread, t0, t1, step_, op, core_wait, device_busy});
    // A full chunk goes out, and so does anything older than a second: a killed run loses
    // at most the last second (t1 is on now()'s clock).
    if (buffer_.size() < chunk_ && t1 - last_out_ < kMaxAgeSeconds) return;
    last_out_ = t1;
    full.reserve(chunk_);
    full.swap(buffer_);
  }
  write_chunk(full);
}

void TraceRecorder::write_chunk(const std::vector<TraceEvent>& events) {
  std::lock_guard<std::mutex> lock(file_mu_);
  std::FILE* f = file_.get();
  if (!f) return;  // closed
  // Each event ends with its own line: a file cut anywhere ends in complete events plus at
  // most one partial line.
  for (const auto& e : events) {
    std::fprintf(f, ",\n{\"name\":%s,\"cat\":\"%s\",\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,"
                 "\"args\":{\"step\":%d",
                 core::json::quote(e.name).c_str(), core::trace_category_name(e.cat), rank_,
                 static_cast<int>(e.thread), e.t0 * 1e6, (e.t1 - e.t0) * 1e6, e.step);
    if (e.op.op != core::TraceOp::None)
      std::fprintf(f, ",\"op\":\"%c\",\"dir\":%d,\"mb\":%d", core::trace_op_letter(e.op.op), e.op.dir,
                   e.op.microbatch);
    if (e.core_wait > 0) std::fprintf(f, ",\"core_wait_us\":%.1f", e.core_wait * 1e6);
    if (e.device_busy > 0) std::fprintf(f, ",\"gpu_busy_us\":%.1f", e.device_busy * 1e6);
    std::fprintf(f, "}}");
  }
  if (std::fflush(f) != 0 || std::ferror(f)) write_failed_ = true;
  written_ += events.size();
}

void TraceRecorder::flush() {
  std::vector<TraceEvent> rest;
  {
    std::lock_guard<std::mutex> lock(mu_);
    rest.swap(buffer_);
  }
  write_chunk(rest);
}

void TraceRecorder::close() {
  flush();
  std::lock_guard<std::mutex> lock(file_mu_);
  if (closed_) return;
  closed_ = true;
  std::FILE* f = file_.release();
  std::fprintf(f, "\n]}\n");
  const bool failed = write_failed_ || std::ferror(f) != 0;
  if (std::fclose(f) != 0 || failed) throw std::runtime_error("cannot write trace file " + path_);
}

size_t TraceRecorder::events_written() const {
  std::lock_guard<std::mutex> lock(file_mu_);
  return written_;
}

}  // namespace duet::io
