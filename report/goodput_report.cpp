#include "report/goodput_report.h"

#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "report/format.h"

namespace duet::report {
namespace {

std::string secs(double v) { return fmt("%.2f", v); }

void add_goodput_timeline(Report& r, const Goodput& g) {
  auto add = [&](int row, const char* kind, const std::string& label, double t0, double t1) {
    if (t1 > t0) r.goodput_timeline.push_back({row, kind, label, t0, t1});
  };
  for (const AttemptSpan& s : g.spans) {
    const int row = s.attempt - 1;
    const Interruption* in = nullptr;
    for (const auto& i : g.interruptions)
      if (i.attempt == s.attempt) in = &i;
    if (in && !in->recovery_known) in = nullptr;
    if (in) {  // detection, teardown and backoff end at this attempt's launch
      const Recovery& v = in->recovery;
      double t = s.launched_s - v.backoff_s - v.teardown_s - v.detection_s;
      const std::pair<const char*, double> before[] = {
          {"detection", v.detection_s}, {"teardown", v.teardown_s}, {"backoff", v.backoff_s}};
      for (const auto& [kind, d] : before) add(row, kind, kind, t, t + d), t += d;
      const std::pair<const char*, double> after[] = {{"launch", v.launch_s}, {"mpi_init", v.mpi_init_s},
                                                      {"setup", v.setup_s},   {"load", v.load_s},
                                                      {"first_step", v.first_step_s}};
      for (const auto& [kind, d] : after) add(row, kind, kind, t, t + d), t += d;
    } else if (s.attempt == 1) {
      add(row, "startup", "start-up", s.launched_s, s.training_from_s);
    }
    add(row, "training", "training, ends " + s.end, s.training_from_s, s.end_s);
    if (s.recomputed_s > 0)  // drawn over the end of the training it was part of
      add(row, "recomputed", "lost", std::max(s.training_from_s, s.end_s - s.recomputed_s), s.end_s);
  }
  r.goodput_timeline_title = "the run's attempts, seconds since the first launch";
}

}  // namespace

void add_goodput(Report& r, const Goodput& g) {
  using F = ReportField;
  const double badput = g.wall_s - g.productive_s;
  r.headline.push_back(F::num("effective_training_time", "effective training time (productive step time / wall time)",
                              g.ettr()));
  r.headline.push_back(F::num("wall_time_s", "wall time, first launch to finish", g.wall_s, "s"));
  r.headline.push_back(F::num("productive_s", "productive step time", g.productive_s, "s"));
  r.headline.push_back(F::num("badput_s", "badput (wall - productive)", badput, "s"));
  r.headline.push_back(F::num("interruptions", "interruptions (attempts started after a fault)", (double)g.interruptions.size()));
  r.headline.push_back(F::num("attempts", "attempts", (double)g.attempts));

  ReportTable where{"Goodput: where the wall time went", {"part", "seconds", "share of wall time"}, {}};
  const std::vector<std::pair<std::string, double>> parts = {
      {"productive steps (" + std::to_string(g.steps_counted) + ")", g.productive_s},
      {"checkpoint saves (steps waiting for a save)", g.checkpoint_s},
      {"recomputed steps (" + std::to_string(g.steps_recomputed) + " run again after a fault)", g.recomputed_s},
      {"start-up of attempt 1", g.startup_s},
      {"recovery (detection to first step, every interruption)", g.recovery_s},
      {"other (validation, steps cut short, failed attempts, shutdown)", g.other_s}};
  for (const auto& [name, s] : parts)
    where.rows.push_back({name, secs(s), g.wall_s > 0 ? fmt("%.1f%%", 100 * s / g.wall_s) : "-"});
  where.rows.push_back({"wall time", secs(g.wall_s), "100.0%"});
  r.tables.push_back(where);

  ReportTable per{"Badput per interruption (seconds)",
                  {"attempt", "fault", "fault step", "resumed from", "steps recomputed", "recomputed s", "detection",
                   "teardown", "backoff", "launch", "MPI init", "set-up", "checkpoint load", "first step", "total"},
                  {}};
  for (const auto& in : g.interruptions) {
    const Recovery& v = in.recovery;
    const bool k = in.recovery_known;
    auto part = [&](double x) { return k ? secs(x) : std::string("n/a"); };
    per.rows.push_back({std::to_string(in.attempt), in.fault_kind.empty() ? "?" : in.fault_kind,
                        k ? std::to_string(v.fault_step) : "n/a", k ? std::to_string(v.checkpoint_step) : "n/a",
                        k ? std::to_string(v.recomputed_steps) : "n/a",
                        in.recomputed_measured ? secs(in.recomputed_s) : "n/a", part(v.detection_s),
                        part(v.teardown_s), part(v.backoff_s), part(v.launch_s), part(v.mpi_init_s), part(v.setup_s),
                        part(v.load_s), part(v.first_step_s), part(v.parts_s() + in.recomputed_s)});
  }
  if (!per.rows.empty()) r.tables.push_back(per);
  r.notes.push_back(
      "Goodput: productive = step time of the steps that count (each step's last run) less checkpoint waits; "
      "recomputed = step time of steps run again after a restart; a recovery runs from the fault to the first "
      "completed step of the next attempt, whose own step time counts as productive. An interruption's total adds "
      "its recomputed steps to the recovery parts.");
  for (const auto& n : g.notes) r.notes.push_back("Goodput: " + n);
  add_goodput_timeline(r, g);
}

void add_goodput_absent(Report& r, const std::string& events_path) {
  r.notes.push_back("No goodput section: " + events_path +
                    " is missing (the run was not started by `duet launch`, which records attempts and faults).");
}

void add_expected_goodput(Report& r, const GoodputModelInputs& in, const GoodputModel& m,
                          const std::string& save_source) {
  using F = ReportField;
  r.headline.push_back(F::num("expected_effective_training_time",
                              "expected effective training time with failures", m.ettr));
  r.headline.push_back(F::num("checkpoint_interval_steps", "checkpoint interval evaluated", m.interval_steps, "steps"));
  r.headline.push_back(F::num("optimal_checkpoint_interval_s", "optimal checkpoint interval (Young/Daly, sqrt(2 x save x MTBF))",
                              m.optimal_interval_s, "s"));
  r.headline.push_back(F::num("optimal_checkpoint_interval_steps", "optimal checkpoint interval", m.optimal_interval_steps,
                              "steps"));
  r.headline.push_back(F::num("tokens_per_day_with_failures", "tokens per day with failures", m.tokens_per_day));
  r.headline.push_back(F::num("gpu_hours_per_trillion_tokens_with_failures", "GPU-hours per trillion tokens with failures",
                              m.gpu_hours_per_trillion_tokens));
  r.tables.push_back(
      {"Goodput model (docs/fault-tolerance.md)",
       {"quantity", "value"},
       {{"interruptions per GPU-day", fmt("%.4g", in.interruptions_per_gpu_day)},
        {"interruptions per day on this cluster", fmt("%.3g", m.interruptions_per_day)},
        {"cluster MTBF", std::isinf(m.mtbf_cluster_s) ? "no failures" : fmt("%.3g h", m.mtbf_cluster_s / 3600)},
        {"checkpoint save (blocking)", fmt("%.3g s", in.save_s) + " (" + save_source + ")"},
        {"restart (fault to training again, without lost steps)", fmt("%.3g s", in.restart_s)},
        {"checkpoint interval", std::to_string(m.interval_steps) + " steps = " +
                                    fmt("%.4g s", m.interval_steps * in.step_time_s)},
        {"time in saves", fmt("%.2f%%", 100 * m.checkpoint_fraction)},
        {"time lost to failures (restarts, lost steps)", fmt("%.2f%%", 100 * m.failure_fraction)},
        {"expected effective training time at the optimal interval", fmt("%.2f%%", 100 * m.ettr_at_optimal)},
        {"tokens per day without failures", fmt("%.4g", m.tokens_per_day_no_failures)}}});
  r.notes.push_back(
      "Goodput model: Poisson failures at the configured rate; each costs the restart time plus half a checkpoint "
      "period of lost progress; saves block training for their full time (an asynchronous save blocks less). First "
      "order in (restart + period) / MTBF; details in docs/fault-tolerance.md.");
}

}  // namespace duet::report
