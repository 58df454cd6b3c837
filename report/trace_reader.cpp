#include "report/trace_reader.h"

#include <fstream>
#include <regex>
#include <stdexcept>

namespace duet::report {

TraceFile read_trace_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read trace file " + path);
  TraceFile out;
  const std::regex re(
      R"re(\{"name":"([^"]*)","cat":"([a-z0-9]+)","ph":"X","pid":\d+,"tid":(\d+),"ts":([-0-9.e]+),"dur":([-0-9.e]+),"args":\{"step":(\d+)(,"op":"([FBIW])","dir":(\d+),"mb":(\d+))?(,"core_wait_us":([-0-9.e]+))?(,"gpu_busy_us":([-0-9.e]+))?\}\})re");
  bool header = false, closed = false;
  std::string last;  // the last non-empty line
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    last = line;
    if (!header) {
      // The first line opens the trace; anything else is not a file io/trace.h wrote.
      if (line.find("\"traceEvents\":[") == std::string::npos)
        throw std::runtime_error("trace file " + path + " is not a duet trace (no \"traceEvents\" header on its first line)");
      header = true;
      continue;
    }
    if (line == "]}") {
      closed = true;
      continue;
    }
    std::smatch m;
    if (!std::regex_search(line, m, re)) continue;  // metadata, or a cut-off last line
    core::TraceEvent e;
    e.name = m[1];
    e.cat = core::parse_trace_category(m[2].str()).value_or(core::TraceCategory::Idle);
    e.thread = static_cast<core::TraceThread>(std::stoi(m[3]));
    e.t0 = std::stod(m[4]) * 1e-6;
    e.t1 = e.t0 + std::stod(m[5]) * 1e-6;
    e.step = std::stoi(m[6]);
    if (m[7].matched) e.op = {*core::parse_trace_op(m[8].str()), std::stoi(m[9]), std::stoi(m[10])};
    if (m[11].matched) e.core_wait = std::stod(m[12]) * 1e-6;
    if (m[13].matched) e.device_busy = std::stod(m[14]) * 1e-6;
    out.events.push_back(std::move(e));
  }
  if (in.bad()) throw std::runtime_error("cannot read trace file " + path + ": read error");
  if (!header) throw std::runtime_error("trace file " + path + " is empty");
  if (out.events.empty())
    throw std::runtime_error("trace file " + path + " holds no events (the rank ended before recording any)");
  if (!closed)
    out.warning = "trace file " + path + " ends without its closing \"]}\" (the run was killed?): read " +
                  std::to_string(out.events.size()) + " events, up to the last complete one";
  return out;
}

std::vector<core::TraceEvent> read_trace(const std::string& path) { return read_trace_file(path).events; }

}  // namespace duet::report
