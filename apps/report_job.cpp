#include "apps/report_job.h"

#include <filesystem>
#include <fstream>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>

#include "core/layout.h"
#include "report/goodput_read.h"
#include "report/goodput_report.h"

namespace duet::app {

report::RunShape run_shape(const io::RunConfig& cfg) {
  report::RunShape s;
  s.pp = cfg.parallel.pp, s.dp = cfg.parallel.dp, s.ep = cfg.parallel.ep;
  s.schedule = core::effective_schedule(cfg.parallel.schedule, cfg.parallel.pp);
  s.microbatches_per_pipeline =
      core::microbatches_per_pipeline(cfg.parallel.pp * cfg.parallel.dp, io::configured_layout(cfg), io::layout_rules(cfg));
  s.global_batch = cfg.train.global_batch, s.micro_batch_size = cfg.train.micro_batch_size;
  s.seq_len = cfg.train.seq_len, s.d_model = cfg.model.d_model;
  s.comm_delay_us = cfg.runtime.comm_delay_us;
  s.cores = (int)std::thread::hardware_concurrency();  // a report is made where its run ran
  return s;
}

report::Report measured_run_report(const std::string& run_dir, int cores) {
  io::RunConfig cfg = io::load_config(run_dir + "/config.yaml");
  // The newest attempt's layout (its run header in metrics.jsonl): after an elastic restart
  // on fewer nodes it is not config.yaml's.
  std::ifstream metrics(run_dir + "/metrics.jsonl");
  const std::regex header("\"event\":\"run\".*\"pp\":(\\d+),\"dp\":(\\d+),\"ep\":(\\d+)");
  for (std::string line; std::getline(metrics, line);) {
    std::smatch m;
    if (std::regex_search(line, m, header))
      cfg.parallel.pp = std::stoi(m[1]), cfg.parallel.dp = std::stoi(m[2]), cfg.parallel.ep = std::stoi(m[3]);
  }
  report::RunShape shape = run_shape(cfg);
  if (cores >= 0) shape.cores = cores;
  return report::measured_report(run_dir, shape);
}

void add_run_goodput(report::Report& r, const std::string& run_dir) {
  const std::string events_path = run_dir + "/events.jsonl";
  if (!std::filesystem::exists(events_path)) return report::add_goodput_absent(r, events_path);
  const auto events = report::read_supervisor_events(events_path);
  try {
    report::add_goodput(r, report::account_goodput(events, report::read_step_history(run_dir + "/metrics.jsonl")));
  } catch (const std::invalid_argument& e) {  // no launch to measure from
    throw std::runtime_error(events_path + ": " + e.what());
  }
}

}  // namespace duet::app
