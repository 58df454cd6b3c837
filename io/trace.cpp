#include "io/trace.h"

#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>

namespace duet::io {

const char* trace_category_name(TraceCategory c) {
  switch (c) {
    case TraceCategory::Compute: return "compute";
    case TraceCategory::P2p: return "p2p";
    case TraceCategory::All2all: return "all2all";
    case TraceCategory::Dp: return "dp";
    case TraceCategory::Ckpt: return "ckpt";
    case TraceCategory::Idle: return "idle";
  }
  return "?";
}

void TraceRecorder::add(std::string name, TraceCategory cat, int tid, double t0, double t1) {
  std::lock_guard<std::mutex> lock(mu_);
  if (events_.size() >= max_events_) {
    ++dropped_;
    return;
  }
  events_.push_back({std::move(name), cat, tid, t0, t1, step_});
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
  const char* threads[] = {"compute", "second executor", "progress", "deferred weight passes"};
  for (int t = 0; t < 4; ++t)
    std::fprintf(f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":\"%s\"}}", rank, t,
                 threads[t]);
  for (const auto& e : events_)
    std::fprintf(f, ",\n{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,"
                 "\"args\":{\"step\":%d}}",
                 e.name.c_str(), trace_category_name(e.cat), rank, e.tid, e.t0 * 1e6, (e.t1 - e.t0) * 1e6, e.step);
  std::fprintf(f, "\n]}\n");
  if (std::fclose(f) != 0) throw std::runtime_error("cannot write trace file " + path);
}

std::vector<TraceEvent> read_trace(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read trace file " + path);
  std::vector<TraceEvent> out;
  const std::regex re(
      R"re(\{"name":"([^"]*)","cat":"([a-z0-9]+)","ph":"X","pid":\d+,"tid":(\d+),"ts":([-0-9.e]+),"dur":([-0-9.e]+),"args":\{"step":(\d+)\}\})re");
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (!std::regex_search(line, m, re)) continue;
    TraceEvent e;
    e.name = m[1];
    const std::string cat = m[2];
    e.cat = TraceCategory::Idle;
    for (auto c : {TraceCategory::Compute, TraceCategory::P2p, TraceCategory::All2all, TraceCategory::Dp,
                   TraceCategory::Ckpt, TraceCategory::Idle})
      if (cat == trace_category_name(c)) e.cat = c;
    e.tid = std::stoi(m[3]);
    e.t0 = std::stod(m[4]) * 1e-6;
    e.t1 = e.t0 + std::stod(m[5]) * 1e-6;
    e.step = std::stoi(m[6]);
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace duet::io
