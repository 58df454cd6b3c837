#include "io/trace.h"

#include <cstdio>
#include <stdexcept>

#include "core/json.h"

namespace duet::io {

void TraceRecorder::add(std::string name, TraceCategory cat, TraceThread thread, double t0, double t1, TraceOpRef op) {
  std::lock_guard<std::mutex> lock(mu_);
  if (events_.size() >= max_events_) {
    ++dropped_;
    return;
  }
  events_.push_back({std::move(name), cat, thread, t0, t1, step_, op});
}

std::vector<TraceEvent> TraceRecorder::events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_;
}

void TraceRecorder::write(const std::string& path, int rank) const {
  std::lock_guard<std::mutex> lock(mu_);
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw std::runtime_error("cannot write trace file " + path);
  std::fprintf(f, "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n");
  std::fprintf(f, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"args\":{\"name\":\"rank %d\"}}", rank, rank);
  for (int t = 0; t < core::kTraceThreads; ++t)
    std::fprintf(f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":\"%s\"}}", rank, t,
                 core::trace_thread_name(static_cast<TraceThread>(t)));
  for (const auto& e : events_) {
    std::fprintf(f, ",\n{\"name\":%s,\"cat\":\"%s\",\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,"
                 "\"args\":{\"step\":%d",
                 core::json::quote(e.name).c_str(), core::trace_category_name(e.cat), rank, static_cast<int>(e.thread),
                 e.t0 * 1e6, (e.t1 - e.t0) * 1e6, e.step);
    if (e.op.op != core::TraceOp::None)
      std::fprintf(f, ",\"op\":\"%c\",\"dir\":%d,\"mb\":%d", core::trace_op_letter(e.op.op), e.op.dir,
                   e.op.microbatch);
    std::fprintf(f, "}}");
  }
  std::fprintf(f, "\n]}\n");
  if (std::fclose(f) != 0) throw std::runtime_error("cannot write trace file " + path);
}

}  // namespace duet::io
