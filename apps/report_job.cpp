#include "apps/report_job.h"

#include <thread>

#include "core/layout.h"

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
  report::RunShape shape = run_shape(io::load_config(run_dir + "/config.yaml"));
  if (cores >= 0) shape.cores = cores;
  return report::measured_report(run_dir, shape);
}

}  // namespace duet::app
