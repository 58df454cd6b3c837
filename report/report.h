#pragma once
// A throughput report, whatever produced it: `duet simulate` fills it from the simulator and
// the cost model ("simulated", report/simulated.h), `duet report --run DIR` from the traces of
// a real run ("measured", report/measured.h). One structure, three renderings:
//   report.json  every field, machine-readable (headline fields at the top level)
//   report.md    the same as tables, for a terminal or a pull request
//   report.html  self-contained (inline CSS and SVG, no scripts, no network): headline, the
//                comparison with a published figure, a bar of where step time goes, the
//                timeline of one pipeline, per-rank bars and extra tables.
#include <string>
#include <utility>
#include <vector>

namespace duet::report {

// One headline entry: a number with its unit, a text, or a group of named numbers (one
// JSON object, e.g. memory per GPU by kind). Kept in insertion order.
struct ReportField {
  enum class Kind { Number, Text, Group };
  std::string key;    // JSON key, "step_time_s"
  std::string label;  // for people, "step time"
  std::string unit;   // "s", "tokens/s", "GiB"; may be empty
  Kind kind = Kind::Number;
  double number = 0;
  std::string text;
  std::vector<std::pair<std::string, double>> group;

  static ReportField num(std::string key, std::string label, double value, std::string unit = "");
  static ReportField str(std::string key, std::string label, std::string value);
  static ReportField grp(std::string key, std::string label, std::vector<std::pair<std::string, double>> parts,
                         std::string unit = "");
};

// One interval on one rank's timeline. kind picks the colour: F, B, I, W (compute of a
// forward, backward, input-only backward, weight gradient; a DualPipe F&B pair is an F and a
// B event back to back), a2a, p2p, dp, ckpt, idle; anything else is grey.
struct ReportEvent {
  int rank = 0;
  std::string kind;
  std::string label;  // "F0:3", shown in the cell when it fits and in its tooltip
  double t0 = 0, t1 = 0;  // seconds from the start of the step
};

// A slice of the step-time bar; the parts of one report add up to the step time.
struct BreakdownPart {
  std::string name;
  double seconds = 0;
};

// The comparison with a published figure (absent when `metric` is empty).
struct PublishedComparison {
  std::string metric;   // "gpu_hours_per_trillion_tokens"
  std::string source;   // where the published number is from
  double published = 0, predicted = 0;
  double tolerance = 0.15;  // |predicted / published - 1| within it counts as agreement
  std::string note;     // what the gap means and why, in a sentence or two
  double ratio() const { return published != 0 ? predicted / published : 0; }
  bool within_tolerance() const;
};

struct ReportTable {
  std::string title;
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;  // each as long as columns
};

struct Report {
  std::string title;
  std::string source = "simulated";  // or "measured"
  std::string subtitle;              // one line: config, layout
  std::vector<ReportField> headline;
  PublishedComparison published;
  std::vector<BreakdownPart> breakdown;  // seconds; sums to the step time
  // Per rank of the ranks reported (all of them, or one pipeline's), seconds.
  std::vector<double> bubble_per_rank, busy_per_rank, exposed_comm_per_rank;
  std::vector<double> core_wait_per_rank;  // waiting for a core (measured runs); empty: not known
  std::vector<ReportEvent> timeline;  // one pipeline
  std::string timeline_title;
  // The run's wall time, one row per attempt (ReportEvent::rank = attempt - 1), seconds since
  // the first launch: training, start-up and recovery parts, recomputed steps
  // (report/goodput_report.h). Empty for runs without a supervisor's record, and simulations.
  std::vector<ReportEvent> goodput_timeline;
  std::string goodput_timeline_title;
  std::vector<ReportTable> tables;
  std::vector<std::string> notes;  // caveats, printed as a list
};

std::string render_json(const Report& r);      // report/render_json_md.cpp
std::string render_markdown(const Report& r);  // report/render_json_md.cpp
std::string render_html(const Report& r);      // report/html.cpp

// Writes report.json, report.md and report.html into `dir` (created if missing). Throws
// std::runtime_error naming the path that could not be written.
void write_report(const Report& r, const std::string& dir);

}  // namespace duet::report
