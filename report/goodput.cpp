#include "report/goodput.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>

namespace duet::report {

bool is_fault_kind(const std::string& kind) {
  return kind == "rank-died" || kind == "hang" || kind == "job-died" || kind == "non-finite" || kind == "host-lost";
}

namespace {

// The jobs of metrics.jsonl that belong to this supervised run: those whose header was written
// at or after the first launch (a run directory may hold earlier jobs). Clocks are whole
// seconds, hence the second of slack. Jobs of unknown time all count.
int first_job_in_window(const StepHistory& m, double launch_time) {
  for (int j = 0; j < (int)m.jobs.size(); ++j)
    if (m.jobs[j].time < 0 || m.jobs[j].time >= launch_time - 1) return j;
  return (int)m.jobs.size();
}

}  // namespace

Goodput account_goodput(const std::vector<SupervisorEvent>& events, const StepHistory& metrics) {
  const SupervisorEvent* first_launch = nullptr;
  const SupervisorEvent* finish = nullptr;
  std::map<int, const SupervisorEvent*> launched;  // by attempt, the first record of each
  for (const auto& e : events) {
    if (e.kind == "launched" && !launched.count(e.attempt)) launched[e.attempt] = &e;
    if (e.kind == "launched" && !first_launch) first_launch = &e;
    if (e.kind == "finished") finish = &e;
  }
  if (!first_launch) throw std::invalid_argument("no \"launched\" record");
  const double t0 = first_launch->elapsed_s;

  Goodput g;
  g.finished = finish != nullptr;
  g.exit_code = finish && finish->exit_code ? *finish->exit_code : 0;
  double t_end = t0;
  for (const auto& e : events) t_end = std::max(t_end, e.elapsed_s);
  if (finish) t_end = finish->elapsed_s;
  g.wall_s = t_end - t0;
  g.attempts = (int)launched.size();
  if (!finish) g.notes.push_back("No \"finished\" record: the wall time ends at the last record (the run may still be going).");

  // ---- steps: which count, which were lost ----------------------------------------------------
  // Jobs in file order; when job j starts from step S, the steps after S that earlier jobs
  // completed are lost (they run again), and that loss belongs to job j's interruption.
  const int first_job = first_job_in_window(metrics, first_launch->time);
  const int jobs = (int)metrics.jobs.size();
  std::vector<double> lost_by_job(std::max(jobs, 1), 0.0);
  std::vector<int> lost_steps_by_job(std::max(jobs, 1), 0);
  std::vector<double> first_step_time(std::max(jobs, 1), 0.0);
  std::vector<bool> job_has_step(std::max(jobs, 1), false);
  std::map<int, const MetricsStep*> live;  // step -> its newest line
  int current_job = -1;
  for (const auto& line : metrics.steps) {
    if (line.job < first_job) continue;
    if (line.job != current_job) {
      current_job = line.job;
      const int start = line.job < jobs ? metrics.jobs[line.job].start_step : 0;
      for (auto it = live.upper_bound(start); it != live.end();) {
        lost_by_job[line.job] += it->second->step_time_s, ++lost_steps_by_job[line.job];
        it = live.erase(it);
      }
    }
    if (!job_has_step[line.job]) job_has_step[line.job] = true, first_step_time[line.job] = line.step_time_s;
    if (auto it = live.find(line.step); it != live.end()) {  // the same step again without a new job
      lost_by_job[line.job] += it->second->step_time_s, ++lost_steps_by_job[line.job];
    }
    live[line.step] = &line;
  }
  for (const auto& [step, line] : live) {
    g.productive_s += line->step_time_s - line->checkpoint_wait_s;
    g.checkpoint_s += line->checkpoint_wait_s;
    ++g.steps_counted;
  }
  for (int j = 0; j < (int)lost_by_job.size(); ++j) g.recomputed_s += lost_by_job[j], g.steps_recomputed += lost_steps_by_job[j];

  // Start-up of attempt 1: its launch to its run header (written after set-up and the
  // checkpoint load, just before the first step), both in whole seconds.
  if (first_job < jobs && metrics.jobs[first_job].time >= 0)
    g.startup_s = std::max(0.0, metrics.jobs[first_job].time - first_launch->time);
  else
    g.notes.push_back("The start-up of attempt 1 is not known (metrics.jsonl has no timed run header); it is in \"other\".");

  // ---- interruptions: every attempt after the first, its fault, its `recovered` record and
  // the job of metrics.jsonl that re-ran the lost steps --------------------------------------
  int next_job = first_job + 1;
  for (const auto& [attempt, le] : launched) {
    if (attempt == first_launch->attempt) continue;
    Interruption in;
    in.attempt = attempt;
    for (const auto& f : events) {
      if (f.attempt == attempt - 1 && is_fault_kind(f.kind)) in.fault_kind = f.kind, in.cause = f.cause;
      if (f.attempt == attempt && f.kind == "recovered" && !in.recovery_known) in.recovery = f.recovery, in.recovery_known = true;
    }
    for (int j = next_job; j < jobs; ++j) {
      if (!job_has_step[j]) continue;  // an attempt that failed before its first step
      if (in.recovery_known && metrics.jobs[j].start_step != in.recovery.checkpoint_step) continue;
      in.recomputed_s = lost_by_job[j], in.recomputed_measured = true;
      if (in.recovery_known) in.first_step_time_s = first_step_time[j];
      next_job = j + 1;
      break;
    }
    if (!in.recovery_known)
      g.notes.push_back("Attempt " + std::to_string(attempt) +
                        " has no \"recovered\" record (it failed before its first step, or the supervisor did not "
                        "write one): its recovery time is in \"other\".");
    if (!in.recomputed_measured)
      g.notes.push_back("Attempt " + std::to_string(attempt) +
                        ": no job in metrics.jsonl matches it; the steps it recomputed are not attributed to it.");
    g.recovery_s += in.recovery_known ? in.recovery.parts_s() - in.first_step_time_s : 0;
    g.interruptions.push_back(in);
  }

  g.other_s = g.wall_s - g.productive_s - g.checkpoint_s - g.recomputed_s - g.startup_s - g.recovery_s;
  if (g.other_s < -1.0)  // whole-second clocks allow a second of disagreement
    g.notes.push_back("The parts add up to more than the wall time (by " + std::to_string(-g.other_s) +
                      " s): the records disagree with each other.");

  // ---- the timeline: one span per attempt ------------------------------------------------------
  for (const auto& [attempt, le] : launched) {
    AttemptSpan s;
    s.attempt = attempt;
    s.launched_s = le->elapsed_s - t0;
    s.training_from_s = s.launched_s + (attempt == first_launch->attempt ? g.startup_s : 0);
    for (const auto& in : g.interruptions)
      if (in.attempt == attempt && in.recovery_known) {
        const Recovery& r = in.recovery;
        s.training_from_s = s.launched_s + r.launch_s + r.mpi_init_s + r.setup_s + r.load_s + r.first_step_s;
      }
    // Its end: the fault (noticed, less the detection time of the recovery that followed),
    // else the finish.
    s.end_s = t_end - t0, s.end = finish ? "finished" : "running";
    for (const auto& f : events)
      if (f.attempt == attempt && is_fault_kind(f.kind)) {
        s.end_s = f.elapsed_s - t0, s.end = f.kind;
        for (const auto& in : g.interruptions)
          if (in.attempt == attempt + 1) s.end_s -= in.recovery.detection_s, s.recomputed_s = in.recomputed_s;
        break;
      }
    s.end_s = std::max(s.end_s, s.launched_s);
    s.training_from_s = std::min(s.training_from_s, s.end_s);
    g.spans.push_back(s);
  }
  return g;
}

}  // namespace duet::report
