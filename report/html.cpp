// report.html: one self-contained page (inline CSS and SVG, no scripts, nothing fetched), so
// it opens from a run directory, a CI artifact or an e-mail alike.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <utility>
#include <vector>

#include "report/format.h"
#include "report/report.h"

namespace duet::report {
namespace {

std::string esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '&') out += "&amp;";
    else if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

std::string pretty(double v) {
  if (!std::isfinite(v)) return "n/a";
  if (std::fabs(v) >= 1e4 && std::fabs(v) < 1e15) {
    std::string s = fmt("%.0f", v), out;
    const size_t start = s[0] == '-' ? 1 : 0;
    for (size_t i = 0; i < s.size(); ++i) {
      if (i > start && (s.size() - i) % 3 == 0) out += ',';
      out += s[i];
    }
    return out;
  }
  return fmt("%.4g", v);
}

std::string value_text(const ReportField& f) {
  std::string s;
  if (f.kind == ReportField::Kind::Number) s = pretty(f.number);
  else if (f.kind == ReportField::Kind::Text) s = f.text;
  else
    for (size_t i = 0; i < f.group.size(); ++i) s += (i ? ", " : "") + f.group[i].first + " " + pretty(f.group[i].second);
  return esc(s) + (f.unit.empty() || f.kind == ReportField::Kind::Text ? "" : " <span class=u>" + esc(f.unit) + "</span>");
}

const char* kind_colour(const std::string& kind) {
  if (kind == "F") return "#F5B041";
  if (kind == "B") return "#58B947";
  if (kind == "I") return "#A9DC76";
  if (kind == "W") return "#5DADE2";
  if (kind == "a2a") return "#E74C3C";
  if (kind == "p2p") return "#AF7AC5";
  if (kind == "dp") return "#5D6D7E";
  if (kind == "ckpt") return "#F1C40F";
  if (kind == "idle") return "#EEEEEE";
  // The goodput timeline (report/goodput_report.h): training, and what time was lost to.
  if (kind == "training") return "#58B947";
  if (kind == "recomputed") return "#E74C3C";
  if (kind == "startup") return "#5DADE2";
  if (kind == "detection") return "#F5B041";
  if (kind == "teardown") return "#AF7AC5";
  if (kind == "backoff") return "#D5D8DC";
  if (kind == "launch") return "#1F618D";
  if (kind == "mpi_init") return "#2E86C1";
  if (kind == "setup") return "#85C1E9";
  if (kind == "load") return "#F1C40F";
  if (kind == "first_step") return "#A9DC76";
  return "#BBBBBB";
}

const char* kBarColours[] = {"#E67E22", "#2E86C1", "#27AE60", "#C0392B", "#8E44AD", "#5D6D7E", "#BDC3C7", "#16A085", "#F1C40F"};

// A horizontal stacked bar of the breakdown with a legend below it.
std::string breakdown_svg(const std::vector<BreakdownPart>& parts) {
  double total = 0;
  for (const auto& p : parts) total += std::max(0.0, p.seconds);
  const double W = 1000, H = 38;
  const int rows = static_cast<int>((parts.size() + 2) / 3);
  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + fmt("%.0f", W) + "\" height=\"" +
                  fmt("%.0f", H + 10 + 22.0 * rows) + "\" font-family=\"sans-serif\" font-size=\"13\">\n";
  double x = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const double w = total > 0 ? W * std::max(0.0, parts[i].seconds) / total : 0;
    const char* c = kBarColours[i % (sizeof kBarColours / sizeof *kBarColours)];
    s += "<rect x=\"" + fmt("%.1f", x) + "\" y=\"0\" width=\"" + fmt("%.1f", w) + "\" height=\"" + fmt("%.0f", H) +
         "\" fill=\"" + c + "\"><title>" + esc(parts[i].name) + ": " + pretty(parts[i].seconds) + " s</title></rect>\n";
    if (w > 44)
      s += "<text x=\"" + fmt("%.1f", x + w / 2) + "\" y=\"24\" text-anchor=\"middle\" fill=\"#fff\">" +
           fmt("%.0f%%", total > 0 ? 100 * parts[i].seconds / total : 0) + "</text>\n";
    const double lx = (i % 3) * (W / 3), ly = H + 12 + 22.0 * (i / 3);
    s += "<rect x=\"" + fmt("%.0f", lx) + "\" y=\"" + fmt("%.0f", ly) + "\" width=\"14\" height=\"14\" fill=\"" + c +
         "\"/><text x=\"" + fmt("%.0f", lx + 20) + "\" y=\"" + fmt("%.0f", ly + 12) + "\">" + esc(parts[i].name) +
         " — " + pretty(parts[i].seconds) + " s</text>\n";
    x += w;
  }
  return s + "</svg>\n";
}

// One row per rank (or attempt: `row` names the rows), one cell per event, a time axis in
// seconds.
std::string timeline_svg(const std::vector<ReportEvent>& events, const std::string& row = "rank", int first_row = 0) {
  int ranks = 0;
  double t_end = 0;
  for (const auto& e : events) ranks = std::max(ranks, e.rank + 1), t_end = std::max(t_end, e.t1);
  if (ranks == 0 || t_end <= 0) return "";
  const double label_w = 64, plot_w = 1300, row_h = 20, top = 8, axis_h = 30;
  const double scale = plot_w / t_end;
  const double H = top + ranks * row_h + axis_h;
  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + fmt("%.0f", label_w + plot_w + 20) +
                  "\" height=\"" + fmt("%.0f", H) + "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  for (int r = 0; r < ranks; ++r) {
    const double y = top + r * row_h;
    s += "<text x=\"4\" y=\"" + fmt("%.1f", y + row_h - 6) + "\">" + row + " " + std::to_string(r + first_row) +
         "</text>\n";
    s += "<rect x=\"" + fmt("%.0f", label_w) + "\" y=\"" + fmt("%.1f", y) + "\" width=\"" + fmt("%.0f", plot_w) +
         "\" height=\"" + fmt("%.0f", row_h - 2) + "\" fill=\"#fafafa\"/>\n";
  }
  for (const auto& e : events) {
    const double x = label_w + e.t0 * scale, w = std::max(0.5, (e.t1 - e.t0) * scale);
    const double y = top + e.rank * row_h;
    s += "<rect x=\"" + fmt("%.2f", x) + "\" y=\"" + fmt("%.1f", y) + "\" width=\"" + fmt("%.2f", w) + "\" height=\"" +
         fmt("%.0f", row_h - 2) + "\" fill=\"" + kind_colour(e.kind) + "\" stroke=\"#666\" stroke-width=\"0.3\"><title>" +
         esc(e.label) + " " + esc(e.kind) + " [" + fmt("%.4f", e.t0) + " s, " + fmt("%.4f", e.t1) + " s)</title></rect>\n";
    if (w >= 30 && !e.label.empty())
      s += "<text x=\"" + fmt("%.1f", x + w / 2) + "\" y=\"" + fmt("%.1f", y + row_h - 7) +
           "\" text-anchor=\"middle\" font-size=\"9\">" + esc(e.label) + "</text>\n";
  }
  // Axis: about 10 ticks at a round step.
  const double raw = t_end / 10, mag = std::pow(10, std::floor(std::log10(raw)));
  const double step = raw / mag < 2 ? 2 * mag : raw / mag < 5 ? 5 * mag : 10 * mag;
  const double ay = top + ranks * row_h + 4;
  for (double t = 0; t <= t_end + 1e-12; t += step) {
    const double x = label_w + t * scale;
    s += "<line x1=\"" + fmt("%.1f", x) + "\" y1=\"" + fmt("%.1f", ay) + "\" x2=\"" + fmt("%.1f", x) + "\" y2=\"" +
         fmt("%.1f", ay + 5) + "\" stroke=\"#333\"/><text x=\"" + fmt("%.1f", x) + "\" y=\"" + fmt("%.1f", ay + 17) +
         "\" text-anchor=\"middle\">" + fmt("%g", t) + " s</text>\n";
  }
  return s + "</svg>\n";
}

std::string legend_of(const std::vector<std::pair<const char*, const char*>>& kinds) {
  std::string s = "<p class=legend>";
  for (const auto& [kind, name] : kinds)
    s += "<span><i style=\"background:" + std::string(kind_colour(kind)) + "\"></i>" + name + "</span> ";
  return s + "</p>\n";
}

std::string legend() {
  return legend_of({{"F", "forward"}, {"B", "backward"}, {"I", "backward (input)"}, {"W", "weight gradient"},
                    {"a2a", "all-to-all"}, {"p2p", "pipeline send"}, {"dp", "DP sync + optimizer"}});
}

std::string goodput_legend() {
  return legend_of({{"training", "training"}, {"recomputed", "steps lost (recomputed later)"},
                    {"startup", "start-up"}, {"detection", "detection"}, {"teardown", "teardown"},
                    {"backoff", "backoff"}, {"launch", "launch"}, {"mpi_init", "MPI init"}, {"setup", "set-up"},
                    {"load", "checkpoint load"}, {"first_step", "first step"}});
}

std::string per_rank_table(const Report& r) {
  const bool core = !r.core_wait_per_rank.empty();  // measured runs: waiting for a core
  auto at = [](const std::vector<double>& v, size_t i) { return i < v.size() ? v[i] : 0.0; };
  double mx = 0;
  for (size_t i = 0; i < r.bubble_per_rank.size(); ++i)
    mx = std::max(mx, at(r.busy_per_rank, i) + at(r.core_wait_per_rank, i) + r.bubble_per_rank[i] +
                          at(r.exposed_comm_per_rank, i));
  std::string s = std::string("<table><tr><th>rank</th><th>busy s</th>") + (core ? "<th>waiting for a core s</th>" : "") +
                  "<th>bubble s</th><th>exposed comm s</th><th></th></tr>\n";
  for (size_t i = 0; i < r.bubble_per_rank.size(); ++i) {
    const double busy = at(r.busy_per_rank, i), wait = at(r.core_wait_per_rank, i);
    const double comm = at(r.exposed_comm_per_rank, i);
    const double bub = r.bubble_per_rank[i];
    auto bar = [&](double v, const char* c) {
      return "<span class=bar style=\"width:" + fmt("%.1f", mx > 0 ? 300 * std::max(0.0, v) / mx : 0) +
             "px;background:" + c + "\"></span>";
    };
    s += "<tr><td>" + std::to_string(i) + "</td><td>" + pretty(busy) + "</td>" +
         (core ? "<td>" + pretty(wait) + "</td>" : "") + "<td>" + pretty(bub) + "</td><td>" + pretty(comm) +
         "</td><td class=bars>" + bar(busy, "#58B947") + (core ? bar(wait, "#F1C40F") : "") + bar(comm, "#E74C3C") +
         bar(bub, "#D5D8DC") + "</td></tr>\n";
  }
  return s + "</table>\n";
}

}  // namespace

std::string render_html(const Report& r) {
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + esc(r.title) +
                  "</title>\n<style>\n"
                  "body{font-family:sans-serif;margin:24px;color:#222;max-width:1420px}\n"
                  "h1{margin-bottom:0}.sub{color:#666;margin-top:4px}\n"
                  "table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ddd;padding:3px 8px;"
                  "text-align:left;font-size:13px}th{background:#f4f4f4}\n"
                  ".u{color:#888}.ok{color:#1e8449;font-weight:bold}.off{color:#b03a2e;font-weight:bold}\n"
                  ".bar{display:inline-block;height:10px}.bars{white-space:nowrap}\n"
                  ".legend span{margin-right:14px;font-size:13px}.legend i{display:inline-block;width:12px;"
                  "height:12px;margin-right:4px;vertical-align:middle}\n"
                  ".scroll{overflow-x:auto;border:1px solid #eee}\n"
                  "</style></head><body>\n";
  h += "<h1>" + esc(r.title) + "</h1>\n<p class=sub>" + esc(r.source) +
       (r.subtitle.empty() ? "" : " — " + esc(r.subtitle)) + "</p>\n";
  h += "<h2>Headline</h2>\n<table>\n";
  for (const auto& f : r.headline) h += "<tr><th>" + esc(f.label) + "</th><td>" + value_text(f) + "</td></tr>\n";
  h += "</table>\n";
  if (!r.published.metric.empty()) {
    const auto& p = r.published;
    h += "<h2>Compared with the published figure</h2>\n<table><tr><th>" + esc(p.metric) +
         "</th><th>value</th></tr>\n<tr><td>published (" + esc(p.source) + ")</td><td>" + pretty(p.published) +
         "</td></tr>\n<tr><td>" + esc(r.source) + "</td><td>" + pretty(p.predicted) + "</td></tr>\n<tr><td>" +
         esc(r.source) + " / published</td><td class=" + (p.within_tolerance() ? "ok" : "off") + ">" +
         fmt("%.3f", p.ratio()) + (p.within_tolerance() ? " (within ±" : " (outside ±") +
         fmt("%.0f", 100 * p.tolerance) + "%)</td></tr></table>\n";
    if (!p.note.empty()) h += "<p>" + esc(p.note) + "</p>\n";
  }
  if (!r.breakdown.empty()) h += "<h2>Where the step time goes</h2>\n" + breakdown_svg(r.breakdown);
  if (!r.timeline.empty())
    h += "<h2>Timeline: " + esc(r.timeline_title) + "</h2>\n" + legend() + "<div class=scroll>" +
         timeline_svg(r.timeline) + "</div>\n";
  if (!r.goodput_timeline.empty())
    h += "<h2>Timeline: " + esc(r.goodput_timeline_title) + "</h2>\n" + goodput_legend() + "<div class=scroll>" +
         timeline_svg(r.goodput_timeline, "attempt", 1) + "</div>\n";
  if (!r.bubble_per_rank.empty()) h += "<h2>Per rank</h2>\n" + per_rank_table(r);
  for (const auto& t : r.tables) {
    h += "<h2>" + esc(t.title) + "</h2>\n<table><tr>";
    for (const auto& c : t.columns) h += "<th>" + esc(c) + "</th>";
    h += "</tr>\n";
    for (const auto& row : t.rows) {
      h += "<tr>";
      for (const auto& cell : row) h += "<td>" + esc(cell) + "</td>";
      h += "</tr>\n";
    }
    h += "</table>\n";
  }
  if (!r.notes.empty()) {
    h += "<h2>Notes</h2>\n<ul>\n";
    for (const auto& n : r.notes) h += "<li>" + esc(n) + "</li>\n";
    h += "</ul>\n";
  }
  return h + "</body></html>\n";
}

void write_report(const Report& r, const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create report directory '" + dir + "': " + ec.message());
  const std::pair<const char*, std::string> files[] = {
      {"report.json", render_json(r)}, {"report.md", render_markdown(r)}, {"report.html", render_html(r)}};
  for (const auto& [name, text] : files) {
    const std::string path = (std::filesystem::path(dir) / name).string();
    std::ofstream out(path, std::ios::binary);
    if (!out || !(out << text) || !out.flush()) throw std::runtime_error("cannot write '" + path + "'");
  }
}

}  // namespace duet::report
