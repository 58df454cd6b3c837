#include "report/trace_reader.h"

#include <fstream>
#include <regex>
#include <stdexcept>

namespace duet::report {

std::vector<core::TraceEvent> read_trace(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read trace file " + path);
  std::vector<core::TraceEvent> out;
  const std::regex re(
      R"re(\{"name":"([^"]*)","cat":"([a-z0-9]+)","ph":"X","pid":\d+,"tid":(\d+),"ts":([-0-9.e]+),"dur":([-0-9.e]+),"args":\{"step":(\d+)(,"op":"([FBIW])","dir":(\d+),"mb":(\d+))?\}\})re");
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (!std::regex_search(line, m, re)) continue;
    core::TraceEvent e;
    e.name = m[1];
    e.cat = core::parse_trace_category(m[2].str()).value_or(core::TraceCategory::Idle);
    e.thread = static_cast<core::TraceThread>(std::stoi(m[3]));
    e.t0 = std::stod(m[4]) * 1e-6;
    e.t1 = e.t0 + std::stod(m[5]) * 1e-6;
    e.step = std::stoi(m[6]);
    if (m[7].matched) e.op = {*core::parse_trace_op(m[8].str()), std::stoi(m[9]), std::stoi(m[10])};
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace duet::report
