// `duet schedule`: print, validate, simulate or draw a pipeline schedule.
//
//   duet schedule --kind dualpipe --ranks 8 --microbatches 20            the text format
//   duet schedule --kind dualpipe --ranks 8 --microbatches 20 --format json
//   duet schedule --kind zb1p --ranks 4 --microbatches 8 --simulate 1,2,1,3
//   duet schedule --kind dualpipev --ranks 4 --microbatches 10 --svg v.svg
//   duet schedule --validate my_schedule.txt [--kind 1f1b]
//
// Exit codes: 0 done, 1 the schedule given to --validate is invalid (errors on stderr),
// 2 a usage error (thrown, reported by main).
#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "apps/config_options.h"
#include "core/json.h"
#include "io/read_limited.h"
#include "scheduler/schedule.h"
#include "scheduler/schedule_size.h"
#include "scheduler/simulate.h"
#include "scheduler/svg.h"
#include "scheduler/text_format.h"
#include "scheduler/validate.h"

namespace po = boost::program_options;

namespace duet::app {
namespace {

using sched::Schedule;

struct Durations {
  double f = 1, b = 2, w = 1, fb = 3;
};

// "F,B,W,FB": four non-negative numbers, W <= B (I = B - W).
Durations parse_durations(const std::string& text) {
  std::vector<double> v;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      size_t used = 0;
      double x = std::stod(item, &used);
      if (used != item.size()) throw std::invalid_argument("trailing text");
      v.push_back(x);
    } catch (const std::exception&) {
      throw std::invalid_argument("--simulate: '" + item + "' is not a number (expected F,B,W,FB, e.g. 1,2,1,3)");
    }
  }
  if (v.size() != 4)
    throw std::invalid_argument("--simulate needs four durations F,B,W,FB (e.g. 1,2,1,3), got '" + text + "'");
  for (double x : v)
    if (!(x >= 0)) throw std::invalid_argument("--simulate: durations must be >= 0, got '" + text + "'");
  if (v[2] > v[1]) throw std::invalid_argument("--simulate: W cannot exceed B (I = B - W), got '" + text + "'");
  return {v[0], v[1], v[2], v[3]};
}

// Refuses a schedule shape too big to build, validate or simulate (scheduler/schedule_size.h).
void check_schedule_size(sched::ScheduleKind kind, int ranks, int microbatches, const std::string& given_by) {
  const std::int64_t ops = sched::schedule_op_bound(kind, ranks, microbatches);
  if (ops <= sched::kMaxScheduleOps) return;
  throw std::invalid_argument(given_by + ": " + std::to_string(ranks) + " ranks × " + std::to_string(microbatches) +
                              " micro-batches is up to " + std::to_string(ops) + " ops, more than the " +
                              std::to_string(sched::kMaxScheduleOps) + " duet builds, validates or simulates");
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  if (!out || !(out << text) || !(out.flush()))
    throw std::runtime_error("cannot write '" + path + "'");
}

// Prints the validation verdict; returns false when the schedule is invalid.
bool report_validation(const Schedule& s, const std::string& path, bool json) {
  sched::ValidationReport rep = sched::validate_schedule(s);
  if (json) {
    core::json::Writer j;
    j.begin_object().key("file").value(path).key("valid").value(rep.ok());
    j.key("kind").value(sched::format_schedule_kind(s.kind)).key("ranks").value(s.ranks);
    j.key("microbatches").value(s.microbatches);
    j.key("errors").begin_array();
    for (const auto& e : rep.errors) {
      j.begin_object().key("rank").value(e.rank).key("position").value(e.position).key("op").value(e.op);
      j.key("rule").value(e.rule).key("message").value(e.message).end_object();
    }
    j.end_array().key("peak_activations_per_rank").begin_array();
    for (int p : rep.peak_activations) j.value(p);
    j.end_array().end_object();
    std::cout << j.str() << "\n";
  }
  if (!rep.ok()) {
    for (const auto& e : rep.errors) std::cerr << path << ": " << e.to_string() << "\n";
    std::cerr << path << ": invalid " << sched::format_schedule_kind(s.kind) << " schedule (" << rep.errors.size()
              << (rep.errors.size() >= 20 ? "+" : "") << " errors)\n";
    return false;
  }
  if (!json) {
    std::cout << path << ": valid " << sched::format_schedule_kind(s.kind) << " schedule, " << s.ranks << " ranks, "
              << s.microbatches << " micro-batches\npeak activations per rank:";
    for (int p : rep.peak_activations) std::cout << " " << p;
    std::cout << "\n";
  }
  return true;
}

void print_simulation(const Schedule& s, const sched::SimResult& r, const Durations& d, bool json) {
  if (json) {
    std::cout << sched::sim_result_to_json(r, s, /*include_timeline=*/false);
    return;
  }
  std::printf("%s: %d ranks, %d micro-batches, (F, B, W, F&B) = (%g, %g, %g, %g)\n",
              sched::format_schedule_kind(s.kind).c_str(), s.ranks, s.microbatches, d.f, d.b, d.w, d.fb);
  std::printf("makespan %g\n", r.makespan);
  std::printf("%-6s %10s %10s %13s %17s\n", "rank", "busy", "bubble", "exposed_comm", "peak_activations");
  for (size_t g = 0; g < r.rank_stats.size(); ++g) {
    const auto& st = r.rank_stats[g];
    std::printf("%-6zu %10g %10g %13g %17d\n", g, st.busy, st.bubble, st.exposed_comm, st.peak_activations);
  }
}

}  // namespace

int cmd_schedule(int argc, char** argv) {
  po::options_description opts(
      "usage: duet schedule --kind KIND --ranks N --microbatches C [options]\n"
      "       duet schedule --validate FILE [options]\n\n"
      "Prints a pipeline schedule in the text format (one line per rank), or validates,\n"
      "simulates or draws it. Exit code 1: the --validate schedule is invalid.\n\noptions");
  // clang-format off
  opts.add_options()
      ("help,h", "show this help")
      ("kind", po::value<std::string>(), "1f1b | zb1p | dualpipe | dualpipev")
      ("ranks", po::value<int>(), "pipeline ranks (N)")
      ("microbatches", po::value<int>(),
       "micro-batches in the step (C); dualpipe sends C/2 in each direction")
      ("format", po::value<std::string>()->default_value("text"), "text | json")
      ("simulate", po::value<std::string>(),
       "F,B,W,FB: simulate with these per-chunk durations (I = B - W); prints makespan and per-rank bubble")
      ("p2p-latency", po::value<double>()->default_value(0.0),
       "with --simulate/--svg: latency of each point-to-point transfer (same unit as F)")
      ("svg", po::value<std::string>(), "draw the simulated timeline to this SVG file (durations from --simulate, "
                                        "default 1,2,1,3)")
      ("validate", po::value<std::string>(), "check a schedule file in the text format; --kind if it has no header");
  // clang-format on
  po::variables_map vm;
  if (!parse_options(opts, argc, argv, vm)) return 0;  // --help

  const std::string format = vm["format"].as<std::string>();
  if (format != "text" && format != "json")
    throw std::invalid_argument("--format must be text or json, got '" + format + "'");
  const bool json = format == "json";
  std::optional<sched::ScheduleKind> kind;
  if (vm.count("kind")) kind = sched::parse_schedule_kind(vm["kind"].as<std::string>());
  const double latency = vm["p2p-latency"].as<double>();
  if (!(latency >= 0)) throw std::invalid_argument("--p2p-latency must be >= 0");

  Schedule schedule;
  const bool validating = vm.count("validate") > 0;
  if (validating) {
    if (vm.count("ranks") || vm.count("microbatches"))
      throw std::invalid_argument("--validate reads ranks and micro-batches from the file; drop --ranks/--microbatches");
    const std::string path = vm["validate"].as<std::string>();
    try {
      schedule = sched::parse_schedule_text(io::read_file_limited(path, io::kMaxScheduleFileBytes, "schedule file"), kind);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(path + ": " + e.what());
    }
    check_schedule_size(schedule.kind, schedule.ranks, schedule.microbatches, path + " (its header)");
    if (!report_validation(schedule, path, json && !vm.count("simulate"))) return 1;
  } else {
    if (!kind) throw std::invalid_argument("--kind is required (1f1b, zb1p, dualpipe, dualpipev), or --validate FILE");
    if (!vm.count("ranks")) throw std::invalid_argument("--ranks is required");
    if (!vm.count("microbatches")) throw std::invalid_argument("--microbatches is required");
    check_schedule_size(*kind, vm["ranks"].as<int>(), vm["microbatches"].as<int>(), "--ranks and --microbatches");
    schedule = sched::make_schedule(*kind, vm["ranks"].as<int>(), vm["microbatches"].as<int>());
  }

  const bool simulating = vm.count("simulate") > 0;
  if (!simulating && !validating) {
    std::cout << (json ? sched::schedule_to_json(schedule) : sched::format_schedule_text(schedule));
  }
  if (simulating || vm.count("svg")) {
    Durations d = simulating ? parse_durations(vm["simulate"].as<std::string>()) : Durations{};
    sched::SimConfig cfg;
    cfg.stages = {sched::stage_cost(d.f, d.b, d.w, d.fb)};
    cfg.link_classes = {{latency, 0}};
    cfg.record_timeline = vm.count("svg") > 0;
    sched::SimResult result = sched::simulate(schedule, cfg);
    if (simulating) print_simulation(schedule, result, d, json);
    if (vm.count("svg")) {
      char title[160];
      std::snprintf(title, sizeof title, "%s, %d ranks, %d micro-batches, (F, B, W, F&B) = (%g, %g, %g, %g)",
                    sched::format_schedule_kind(schedule.kind).c_str(), schedule.ranks, schedule.microbatches, d.f,
                    d.b, d.w, d.fb);
      const std::string path = vm["svg"].as<std::string>();
      sched::SvgOptions svg;
      svg.title = title;
      write_file(path, sched::render_timeline_svg(schedule, result, svg));
      std::cerr << "wrote " << path << "\n";
    }
  }
  return 0;
}

}  // namespace duet::app
