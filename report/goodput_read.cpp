#include "report/goodput_read.h"

#include <cstdio>
#include <ctime>
#include <fstream>
#include <stdexcept>

#include "report/jsonl.h"

namespace duet::report {
namespace {

// "2026-12-02T00:27:04Z" as unix seconds; -1 when it is not that.
double parse_utc(const std::string& s) {
  std::tm tm{};
  if (s.size() != 20 || std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                                    &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
    return -1;
  tm.tm_year -= 1900, tm.tm_mon -= 1;
  return (double)timegm(&tm);
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool blank(const std::string& s) { return s.find_first_not_of(" \t\r") == std::string::npos; }

}  // namespace

std::vector<SupervisorEvent> read_supervisor_events(const std::string& path) {
  const auto lines = read_lines(path);
  std::vector<SupervisorEvent> out;
  for (size_t n = 0; n < lines.size(); ++n) {
    if (blank(lines[n])) continue;
    const std::string where = path + ":" + std::to_string(n + 1) + ": ";
    JsonObject o;
    try {
      o = parse_json_line(lines[n]);
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(where + "not a JSON object (" + e.what() + ")");
    }
    SupervisorEvent e;
    const auto elapsed = json_number(o, "elapsed_s"), attempt = json_number(o, "attempt");
    e.kind = json_text(o, "kind");
    if (e.kind.empty() || !elapsed || !attempt)
      throw std::runtime_error(where + "a supervisor record needs \"kind\", \"attempt\" and \"elapsed_s\"");
    e.elapsed_s = *elapsed, e.attempt = (int)*attempt;
    e.time = json_number(o, "time").value_or(0);
    e.cause = json_text(o, "cause"), e.layout = json_text(o, "layout");
    if (auto it = o.find("ranks"); it != o.end())
      for (double r : it->second.array) e.ranks.push_back((int)r);
    if (auto s = json_number(o, "step")) e.step = (int)*s;
    if (auto c = json_number(o, "exit_code")) e.exit_code = (int)*c;
    if (e.kind == "recovered") {
      Recovery& r = e.recovery;
      auto num = [&](const char* key) { return json_number(o, key).value_or(0); };
      r.fault_step = (int)num("fault_step"), r.checkpoint_step = (int)num("checkpoint_step");
      r.recomputed_steps = (int)num("recomputed_steps");
      r.detection_s = num("detection_s"), r.teardown_s = num("teardown_s"), r.backoff_s = num("backoff_s");
      r.launch_s = num("launch_s"), r.mpi_init_s = num("mpi_init_s"), r.setup_s = num("setup_s");
      r.load_s = num("load_s"), r.first_step_s = num("first_step_s");
      r.total_s = json_number(o, "total_s").value_or(r.parts_s());
    }
    out.push_back(e);
  }
  return out;
}

StepHistory read_step_history(const std::string& path) {
  const auto lines = read_lines(path);
  StepHistory h;
  for (size_t n = 0; n < lines.size(); ++n) {
    if (blank(lines[n])) continue;
    JsonObject o;
    try {
      o = parse_json_line(lines[n]);
    } catch (const std::invalid_argument& e) {
      if (n + 1 == lines.size()) break;  // the last line, cut off by a kill
      throw std::runtime_error(path + ":" + std::to_string(n + 1) + ": not a JSON object (" + e.what() + ")");
    }
    if (json_text(o, "event") == "run") {
      MetricsJob j;
      j.start_step = (int)json_number(o, "start_step").value_or(0);
      j.time = parse_utc(json_text(o, "time"));
      h.jobs.push_back(j);
      continue;
    }
    const auto step = json_number(o, "step");
    if (!step) continue;  // resume records and other events
    if (h.jobs.empty()) h.jobs.push_back({});  // steps before any header: one job from step 0
    MetricsStep s;
    s.job = (int)h.jobs.size() - 1;
    s.step = (int)*step;
    s.step_time_s = json_number(o, "step_time_s").value_or(0);
    s.checkpoint_wait_s = json_number(o, "checkpoint_wait_s").value_or(0);
    h.steps.push_back(s);
  }
  return h;
}

}  // namespace duet::report
