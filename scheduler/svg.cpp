#include "scheduler/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace duet::sched {
namespace {

constexpr double kLabelWidth = 80;  // rank names
constexpr double kRowHeight = 26;
constexpr double kTop = 12;
constexpr double kMargin = 12;

struct Fill {
  const char* dir0;
  const char* dir1;
};
// Forward, backward, input-only backward, weight; direction 1 darker.
constexpr Fill kFillF{"#F5B041", "#C97A12"};
constexpr Fill kFillB{"#7DD35A", "#3F9A2C"};
constexpr Fill kFillI{"#C3EB8F", "#86BE4E"};
constexpr Fill kFillW{"#7FC1F2", "#2F7FC1"};

const Fill& fill_of(char kind) {
  switch (kind) {
    case 'F': return kFillF;
    case 'B': return kFillB;
    case 'I': return kFillI;
    default: return kFillW;
  }
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  std::string s(buf);
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

class Drawer {
 public:
  Drawer(double px, double x0) : px_(px), x0_(x0) {}

  // One coloured cell [t0, t1) in row y, labelled with the micro-batch.
  void cell(double t0, double t1, double y, char kind, int dir, int mb) {
    const Fill& f = fill_of(kind);
    double xs = x(t0), w = (t1 - t0) * px_;
    out += "<rect x=\"" + num(xs) + "\" y=\"" + num(y) + "\" width=\"" + num(w) + "\" height=\"" + num(kRowHeight) +
           "\" fill=\"" + (dir == 0 ? f.dir0 : f.dir1) + "\" stroke=\"#555\" stroke-width=\"0.6\"><title>" + kind +
           std::to_string(dir) + ":" + std::to_string(mb) + " [" + num(t0) + ", " + num(t1) + ")</title></rect>\n";
    if (w >= 9) {
      out += "<text x=\"" + num(xs + w / 2) + "\" y=\"" + num(y + kRowHeight / 2 + 4.5) +
             "\" text-anchor=\"middle\" font-size=\"" + (w >= 16 ? "13" : "10") + "\" fill=\"" +
             (dir == 0 ? "#000" : "#fff") + "\">" + std::to_string(mb) + "</text>\n";
    }
  }

  void outline(double t0, double t1, double y) {
    out += "<rect class=\"pair\" x=\"" + num(x(t0)) + "\" y=\"" + num(y) + "\" width=\"" + num((t1 - t0) * px_) +
           "\" height=\"" + num(kRowHeight) + "\" fill=\"none\" stroke=\"#000\" stroke-width=\"2.2\"/>\n";
  }

  double x(double t) const { return x0_ + t * px_; }

  std::string out;

 private:
  double px_, x0_;
};

struct LegendItem {
  const char* label;
  const char* fill;
};
constexpr LegendItem kLegend[] = {{"Forward", kFillF.dir0},
                                  {"Backward", kFillB.dir0},
                                  {"Backward for input", kFillI.dir0},
                                  {"Backward for weights", kFillW.dir0},
                                  {"Direction 1 (darker)", kFillF.dir1},
                                  {"Overlapped forward & backward", "none"}};
// Rough width of a legend entry: swatch, gap, ~7.2 px per character at 13 px, spacing.
double legend_entry_width(const LegendItem& it) { return 44 + 7.2 * std::string(it.label).size(); }

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

std::string render_timeline_svg(const Schedule& s, const SimResult& res, const SvgOptions& opt) {
  if (res.ranks != s.ranks) throw std::invalid_argument("svg: the simulation result is not of this schedule");
  if (opt.pipeline < 0 || opt.pipeline >= res.pipelines)
    throw std::invalid_argument("svg: pipeline " + std::to_string(opt.pipeline) + " is not simulated");
  const int first = opt.pipeline * res.ranks, last = first + res.ranks;

  double shortest = 0;
  for (const Event& e : res.events)
    if (e.kind == EventKind::Compute && e.rank >= first && e.rank < last && e.t1 > e.t0)
      shortest = shortest == 0 ? e.t1 - e.t0 : std::min(shortest, e.t1 - e.t0);
  if (shortest == 0 && res.makespan > 0) shortest = res.makespan;
  if (res.events.empty() && res.makespan > 0)
    throw std::invalid_argument("svg: the simulation has no timeline (record_timeline was off)");
  const double span = res.makespan > 0 ? res.makespan : 1;
  double px = opt.px_per_unit;
  if (px <= 0) {
    px = std::max(22.0 / (shortest > 0 ? shortest : 1), 900.0 / span);
    px = std::min(px, 24000.0 / span);  // keep the picture drawable
  }

  const double top = kTop + (opt.title.empty() ? 0 : 24);
  const double x0 = kMargin + kLabelWidth;
  const double rows_h = s.ranks * kRowHeight;
  double legend_w = 0;
  for (const LegendItem& it : kLegend) legend_w += legend_entry_width(it);
  const double width = x0 + std::max(span * px, legend_w) + kMargin;
  const double legend_y = top + rows_h + 40;
  const double height = legend_y + 40;

  Drawer d(px, x0);
  std::string& out = d.out;
  out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(width) + "\" height=\"" + num(height) +
        "\" viewBox=\"0 0 " + num(width) + " " + num(height) + "\" font-family=\"Helvetica, Arial, sans-serif\">\n";
  out += "<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n";
  if (!opt.title.empty())
    out += "<text x=\"" + num(x0) + "\" y=\"" + num(kTop + 14) + "\" font-size=\"16\" font-weight=\"bold\">" +
           xml_escape(opt.title) + "</text>\n";

  for (int r = 0; r < s.ranks; ++r) {
    double y = top + r * kRowHeight;
    out += "<text x=\"" + num(kMargin + kLabelWidth - 8) + "\" y=\"" + num(y + kRowHeight / 2 + 5) +
           "\" text-anchor=\"end\" font-size=\"14\" font-weight=\"bold\">Rank " + std::to_string(r) + "</text>\n";
    out += "<rect x=\"" + num(x0) + "\" y=\"" + num(y) + "\" width=\"" + num(span * px) + "\" height=\"" +
           num(kRowHeight) + "\" fill=\"none\" stroke=\"#ccc\" stroke-width=\"0.5\"/>\n";
  }

  for (const Event& e : res.events) {
    if (e.kind != EventKind::Compute || e.rank < first || e.rank >= last) continue;
    const int r = e.rank - first;
    const Op& op = s.ops[r][e.op_index];
    const double y = top + r * kRowHeight;
    switch (op.kind) {
      case OpKind::F: d.cell(e.t0, e.t1, y, 'F', op.dir, op.microbatch); break;
      case OpKind::B: d.cell(e.t0, e.t1, y, 'B', op.dir, op.microbatch); break;
      case OpKind::I: d.cell(e.t0, e.t1, y, 'I', op.dir, op.microbatch); break;
      case OpKind::W: d.cell(e.t0, e.t1, y, 'W', op.dir, op.microbatch); break;
      case OpKind::FB:
        d.cell(e.t0, e.t_split, y, 'F', op.dir, op.microbatch);
        d.cell(e.t_split, e.t1, y, 'B', op.dir2, op.microbatch2);
        d.outline(e.t0, e.t1, y);
        break;
    }
  }

  // Time axis: an arrow and a few ticks.
  const double axis_y = top + rows_h + 14;
  out += "<line x1=\"" + num(x0) + "\" y1=\"" + num(axis_y) + "\" x2=\"" + num(x0 + span * px) + "\" y2=\"" +
         num(axis_y) + "\" stroke=\"#333\" stroke-width=\"1\"/>\n";
  const double step = std::pow(10.0, std::floor(std::log10(span / 5)));
  const double tick = span / step > 25 ? step * 5 : (span / step > 10 ? step * 2 : step);
  for (double t = 0; t <= span + 1e-9; t += tick) {
    out += "<line x1=\"" + num(d.x(t)) + "\" y1=\"" + num(axis_y - 3) + "\" x2=\"" + num(d.x(t)) + "\" y2=\"" +
           num(axis_y + 3) + "\" stroke=\"#333\"/>\n";
    out += "<text x=\"" + num(d.x(t)) + "\" y=\"" + num(axis_y + 15) + "\" text-anchor=\"middle\" font-size=\"11\">" +
           num(t) + "</text>\n";
  }
  out += "<text x=\"" + num(kMargin + kLabelWidth - 8) + "\" y=\"" + num(axis_y + 5) +
         "\" text-anchor=\"end\" font-size=\"14\" font-weight=\"bold\">Time &#8594;</text>\n";

  // Legend.
  double lx = x0;
  for (const LegendItem& it : kLegend) {
    const bool outline = std::string(it.fill) == "none";
    out += "<rect x=\"" + num(lx) + "\" y=\"" + num(legend_y) + "\" width=\"22\" height=\"18\" fill=\"" + it.fill +
           "\" stroke=\"" + (outline ? "#000" : "#555") + "\" stroke-width=\"" + (outline ? "2.2" : "0.6") + "\"/>\n";
    out += "<text x=\"" + num(lx + 28) + "\" y=\"" + num(legend_y + 14) + "\" font-size=\"13\">" +
           xml_escape(it.label) + "</text>\n";
    lx += legend_entry_width(it);
  }
  out += "</svg>\n";
  return out;
}

}  // namespace duet::sched
