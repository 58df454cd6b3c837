// `duet simulate`: predict one training step of a config on its cluster, without the cluster.
//
//   duet simulate --config configs/deepseek-v3-2048xh800.yaml --out runs/sim
//   duet simulate --config ... --sweep parallel.pp=8,16,32        a table, one row per value
//   duet simulate --config ... --compare-schedules                1f1b, zb1p, dualpipe, dualpipev
//   duet simulate --config ... --sweep goodput.interruptions_per_gpu_day=0,4.7e-4,1e-3
//                                      expected goodput over the failure rate (the step is simulated once)
//
// Sweeping parallel.pp (or parallel.dp, or cluster.gpus) keeps pp × dp = cluster.gpus by
// moving parallel.dp (parallel.pp when dp is swept). Errors are thrown; main prints them.
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "apps/config_options.h"
#include "apps/simulate_job.h"
#include "report/goodput_report.h"

namespace po = boost::program_options;

namespace duet::app {
namespace {

struct Row {
  std::string name;
  std::string error;  // empty when it simulated
  sched::StepSummary s;
  report::GoodputModel g;  // expected goodput with failures (goodput.*)
};

std::string format_table(const std::string& first_column, const std::vector<Row>& rows) {
  int w = 22;  // the first column fits the longest row name
  for (const Row& r : rows) w = std::max(w, (int)r.name.size());
  std::string out;
  char line[1024];
  std::snprintf(line, sizeof line, "%-*s %10s %9s %10s %8s %8s %12s %10s %9s %8s %10s %12s %12s\n", w,
                first_column.c_str(), "step_s", "bubble", "exp_comm_s", "MFU", "MFU_fp8", "tok/s/GPU", "GPU-h/T",
                "mem_GiB", "ETTR", "ckpt_every", "tok/day_fail", "GPU-h/T_fail");
  out += line;
  for (const Row& r : rows) {
    if (!r.error.empty()) {
      out += r.name + std::string(r.name.size() < (size_t)w ? w - r.name.size() : 0, ' ') + " error: " + r.error + "\n";
      continue;
    }
    const auto& s = r.s;
    std::snprintf(line, sizeof line, "%-*s %10.3f %8.1f%% %10.3f %7.1f%% %7.1f%% %12.1f %10.0f %9.1f %7.2f%% %10d %12.4g %12.0f\n",
                  w, r.name.c_str(), s.step_time_s, 100 * s.bubble_s / s.step_time_s, s.exposed_comm_s, 100 * s.mfu,
                  100 * s.mfu_fp8_peak, s.tokens_per_s_per_gpu, s.gpu_hours_per_trillion_tokens,
                  s.memory.total() / (1024.0 * 1024 * 1024), 100 * r.g.ettr, r.g.interval_steps, r.g.tokens_per_day,
                  r.g.gpu_hours_per_trillion_tokens);
    out += line;
  }
  return out;
}

// Prints the table; with --out also writes it to DIR/<file> (the single-simulation reports
// are not written: a table mode simulates several jobs).
void emit_table(const std::string& first_column, const std::vector<Row>& rows, const po::variables_map& vm,
                const std::string& file) {
  const std::string text = format_table(first_column, rows);
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
  if (!vm.count("out")) return;
  const std::filesystem::path dir = vm["out"].as<std::string>();
  std::filesystem::create_directories(dir);
  const std::filesystem::path path = dir / file;
  std::ofstream f(path);
  f << text;
  f.close();
  if (!f) throw std::runtime_error("cannot write " + path.string());
  std::printf("wrote %s\n", path.string().c_str());
}

// A progress bar on stderr: redrawn in place on a terminal, one line per step otherwise.
void progress(int done, int total, const std::string& what) {
  const int width = 30, filled = total ? width * done / total : width;
  const std::string bar = std::string(filled, '#') + std::string(width - filled, '.');
  if (isatty(STDERR_FILENO)) {
    std::fprintf(stderr, "\r[%s] %d/%d %-40s", bar.c_str(), done, total, what.c_str());
    if (done == total) std::fprintf(stderr, "\n");
  } else {
    std::fprintf(stderr, "[%s] %d/%d %s\n", bar.c_str(), done, total, what.c_str());
  }
  std::fflush(stderr);
}

std::vector<std::string> split_values(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string v; std::getline(in, v, ',');)
    if (!v.empty()) out.push_back(v);
  return out;
}

// The config for one sweep value: the override, then pp × dp = gpus restored if the key moved it.
io::RunConfig sweep_config(const po::variables_map& vm, const std::string& key, const std::string& value) {
  io::RunConfig c = config_from_options(vm);
  const long long before = static_cast<long long>(c.parallel.pp) * c.parallel.dp;
  const bool kept = before == c.cluster.gpus;
  std::vector<std::string> sets;
  if (vm.count("set")) sets = vm["set"].as<std::vector<std::string>>();
  sets.push_back(key + "=" + value);
  po::variables_map copy = vm;
  copy.erase("set");
  copy.insert({"set", po::variable_value(sets, false)});
  c = config_from_options(copy);
  if (kept && static_cast<long long>(c.parallel.pp) * c.parallel.dp != c.cluster.gpus) {
    const bool move_pp = key == "parallel.dp";
    const int fixed = move_pp ? c.parallel.dp : c.parallel.pp;
    if (c.cluster.gpus % fixed != 0)
      throw std::invalid_argument(std::string(move_pp ? "parallel.dp" : "parallel.pp") + "=" + std::to_string(fixed) +
                                  " does not divide cluster.gpus=" + std::to_string(c.cluster.gpus));
    (move_pp ? c.parallel.pp : c.parallel.dp) = c.cluster.gpus / fixed;
    io::validate(c);
  }
  return c;
}

}  // namespace

int cmd_simulate(int argc, char** argv) {
  po::options_description opts(
      "usage: duet simulate --config FILE --out DIR [options]\n"
      "       duet simulate --config FILE --sweep KEY=V1,V2,... [--out DIR]   (the table also in DIR/sweep.txt)\n"
      "       duet simulate --config FILE --compare-schedules [--out DIR]   (DIR/schedules.txt)\n\n"
      "Simulates one training step of every rank with a cost model of the model, the cluster\n"
      "and the layout, and writes DIR/report.json, report.md and report.html.\n\noptions");
  // clang-format off
  opts.add_options()
      ("help,h", "show this help")
      ("out,o", po::value<std::string>(), "directory for report.json, report.md, report.html")
      ("sweep", po::value<std::string>(), "KEY=V1,V2,...: one simulation per value of any config key; prints a table (with the expected goodput; "
       "goodput.* keys, e.g. goodput.interruptions_per_gpu_day, reuse one simulated step)")
      ("compare-schedules", "simulate 1f1b, zb1p, dualpipe and dualpipev on the same job; prints a table");
  // clang-format on
  add_config_options(opts);
  po::variables_map vm;
  if (!parse_options(opts, argc, argv, vm)) return 0;  // --help
  const bool sweeping = vm.count("sweep") > 0, comparing = vm.count("compare-schedules") > 0;
  if (sweeping && comparing) throw std::invalid_argument("--sweep and --compare-schedules cannot be combined");
  if (!sweeping && !comparing && !vm.count("out"))
    throw std::invalid_argument("--out DIR is required (where report.json, report.md and report.html go)");

  if (sweeping) {
    const auto [key, list] = io::split_override(vm["sweep"].as<std::string>());
    const std::vector<std::string> values = split_values(list);
    if (values.empty()) throw std::invalid_argument("--sweep " + key + "=: give at least one value, e.g. " + key + "=8,16");
    // goodput.* and checkpoint.every do not change the step: simulate it once.
    const bool same_step = key.rfind("goodput.", 0) == 0 || key == "checkpoint.every";
    std::optional<SimOutcome> step;
    if (same_step) step = simulate_config(config_from_options(vm));
    std::vector<Row> rows;
    for (size_t k = 0; k < values.size(); ++k) {
      progress(static_cast<int>(k), static_cast<int>(values.size()), key + "=" + values[k]);
      Row row{key + "=" + values[k], "", {}, {}};
      try {
        const io::RunConfig c = sweep_config(vm, key, values[k]);
        const SimOutcome o = same_step ? *step : simulate_config(c);
        row.s = o.summary;
        row.g = plan_goodput(c, o).model;
      } catch (const std::exception& e) {
        row.error = e.what();
      }
      rows.push_back(row);
    }
    progress(static_cast<int>(values.size()), static_cast<int>(values.size()), "done");
    emit_table(key, rows, vm, "sweep.txt");
    for (const Row& r : rows)
      if (r.error.empty()) return 0;
    throw std::invalid_argument("--sweep: every value failed (errors above)");
  }

  const io::RunConfig cfg = config_from_options(vm);
  if (comparing) {
    std::vector<Row> rows;
    for (auto kind : {core::ScheduleKind::OneFOneB, core::ScheduleKind::ZB1P, core::ScheduleKind::DualPipe,
                      core::ScheduleKind::DualPipeV}) {
      io::RunConfig c = cfg;
      c.parallel.schedule = kind;
      Row row{core::format_schedule_kind(kind), "", {}, {}};
      if (core::effective_schedule(kind, c.parallel.pp) != kind) {  // PP 1: every schedule is 1F1B
        row.error = "parallel.pp " + std::to_string(c.parallel.pp) + " trains " +
                    core::format_schedule_kind(core::effective_schedule(kind, c.parallel.pp)) + " whatever the schedule";
        rows.push_back(row);
        continue;
      }
      try {
        const SimOutcome o = simulate_config(c);
        row.s = o.summary;
        row.g = plan_goodput(c, o).model;
      } catch (const std::exception& e) {
        row.error = e.what();
      }
      rows.push_back(row);
    }
    emit_table("schedule", rows, vm, "schedules.txt");
    return 0;
  }

  const SimOutcome o = simulate_config(cfg);
  report::Report report = report::simulated_report(o, simulation_labels(cfg));
  const GoodputPlan plan = plan_goodput(cfg, o);
  report::add_expected_goodput(report, plan.in, plan.model, plan.save_source);
  const std::string dir = vm["out"].as<std::string>();
  report::write_report(report, dir);
  const auto& s = o.summary;
  std::printf("%s: step %.3f s, bubble %.1f%%, MFU %.1f%% (BF16 peak), %.0f tokens/s/GPU\n", cfg.run.name.c_str(),
              s.step_time_s, 100 * s.bubble_s / s.step_time_s, 100 * s.mfu, s.tokens_per_s_per_gpu);
  std::printf("GPU-hours per trillion tokens: %.0f", s.gpu_hours_per_trillion_tokens);
  if (!report.published.metric.empty())
    std::printf(" (published %.0f, predicted/published %.3f)", report.published.published, report.published.ratio());
  std::printf("\nmemory per GPU: %.1f GiB of %.0f GiB\n", s.memory.total() / (1024.0 * 1024 * 1024), cfg.cluster.hbm_gib);
  const auto& g = plan.model;
  std::printf("with failures (%.3g interruptions/day, save %.3g s, restart %.3g s): effective training time %.2f%% "
              "checkpointing every %d steps (Young/Daly optimum %.0f s = %d steps), %.4g tokens/day, %.0f GPU-hours "
              "per trillion tokens\n",
              g.interruptions_per_day, plan.in.save_s, plan.in.restart_s, 100 * g.ettr, g.interval_steps,
              g.optimal_interval_s, g.optimal_interval_steps, g.tokens_per_day, g.gpu_hours_per_trillion_tokens);
  std::printf("wrote %s/report.json, report.md, report.html\n", dir.c_str());
  return 0;
}

}  // namespace duet::app
