#include "report/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "core/json.h"

namespace duet::report {
namespace {

using core::json::number;
using core::json::quote;

// ---- text helpers ---------------------------------------------------------------------------

// For people: 4 significant digits, thousands separated above 10,000.
std::string pretty(double v) {
  if (!std::isfinite(v)) return "n/a";
  char buf[64];
  if (std::fabs(v) >= 1e4 && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
    std::string s(buf), out;
    const size_t start = s[0] == '-' ? 1 : 0;
    for (size_t i = 0; i < s.size(); ++i) {
      if (i > start && (s.size() - i) % 3 == 0) out += ',';
      out += s[i];
    }
    return out;
  }
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

std::string percent(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100 * fraction);
  return buf;
}

std::string field_value_text(const ReportField& f) {
  switch (f.kind) {
    case ReportField::Kind::Number: return pretty(f.number) + (f.unit.empty() ? "" : " " + f.unit);
    case ReportField::Kind::Text: return f.text;
    case ReportField::Kind::Group: {
      std::string s;
      for (size_t i = 0; i < f.group.size(); ++i)
        s += (i ? ", " : "") + f.group[i].first + " " + pretty(f.group[i].second);
      return s + (f.unit.empty() ? "" : " " + f.unit);
    }
  }
  return "";
}

double breakdown_total(const Report& r) {
  double t = 0;
  for (const auto& p : r.breakdown) t += p.seconds;
  return t;
}

}  // namespace

ReportField ReportField::num(std::string key, std::string label, double value, std::string unit) {
  ReportField f;
  f.key = std::move(key), f.label = std::move(label), f.unit = std::move(unit);
  f.kind = Kind::Number, f.number = value;
  return f;
}

ReportField ReportField::str(std::string key, std::string label, std::string value) {
  ReportField f;
  f.key = std::move(key), f.label = std::move(label);
  f.kind = Kind::Text, f.text = std::move(value);
  return f;
}

ReportField ReportField::grp(std::string key, std::string label, std::vector<std::pair<std::string, double>> parts,
                             std::string unit) {
  ReportField f;
  f.key = std::move(key), f.label = std::move(label), f.unit = std::move(unit);
  f.kind = Kind::Group, f.group = std::move(parts);
  return f;
}

bool PublishedComparison::within_tolerance() const {
  return published != 0 && std::fabs(ratio() - 1) <= tolerance;
}

// ---- report.json ------------------------------------------------------------------------------

std::string render_json(const Report& r) {
  std::string j = "{\n";
  auto line = [&](const std::string& key, const std::string& value, bool last = false) {
    j += "  " + quote(key) + ": " + value + (last ? "\n" : ",\n");
  };
  auto array = [](const std::vector<double>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + number(v[i]);
    return s + "]";
  };
  line("title", quote(r.title));
  line("source", quote(r.source));
  line("subtitle", quote(r.subtitle));
  for (const auto& f : r.headline) {
    if (f.kind == ReportField::Kind::Number) line(f.key, number(f.number));
    else if (f.kind == ReportField::Kind::Text) line(f.key, quote(f.text));
    else {
      std::string g = "{";
      for (size_t i = 0; i < f.group.size(); ++i)
        g += (i ? ", " : "") + quote(f.group[i].first) + ": " + number(f.group[i].second);
      line(f.key, g + "}");
    }
  }
  if (!r.published.metric.empty()) {
    const auto& p = r.published;
    line("published", "{\"metric\": " + quote(p.metric) + ", \"source\": " + quote(p.source) +
                          ", \"published\": " + number(p.published) + ", \"predicted\": " +
                          number(p.predicted) + ", \"predicted_over_published\": " + number(p.ratio()) +
                          ", \"tolerance\": " + number(p.tolerance) + ", \"within_tolerance\": " +
                          (p.within_tolerance() ? "true" : "false") + ", \"note\": " + quote(p.note) + "}");
  }
  std::string b = "{";
  for (size_t i = 0; i < r.breakdown.size(); ++i)
    b += (i ? ", " : "") + quote(r.breakdown[i].name) + ": " + number(r.breakdown[i].seconds);
  line("breakdown_s", b + "}");
  line("per_rank", "{\"bubble_s\": " + array(r.bubble_per_rank) + ", \"busy_s\": " + array(r.busy_per_rank) +
                       ", \"exposed_comm_s\": " + array(r.exposed_comm_per_rank) +
                       (r.core_wait_per_rank.empty() ? "" : ", \"core_wait_s\": " + array(r.core_wait_per_rank)) + "}");
  std::string t = "[";
  for (size_t i = 0; i < r.tables.size(); ++i) {
    const auto& tb = r.tables[i];
    t += (i ? ", " : "") + std::string("{\"title\": ") + quote(tb.title) + ", \"columns\": [";
    for (size_t c = 0; c < tb.columns.size(); ++c) t += (c ? ", " : "") + quote(tb.columns[c]);
    t += "], \"rows\": [";
    for (size_t k = 0; k < tb.rows.size(); ++k) {
      t += k ? ", [" : "[";
      for (size_t c = 0; c < tb.rows[k].size(); ++c) t += (c ? ", " : "") + quote(tb.rows[k][c]);
      t += "]";
    }
    t += "]}";
  }
  line("tables", t + "]");
  std::string n = "[";
  for (size_t i = 0; i < r.notes.size(); ++i) n += (i ? ", " : "") + quote(r.notes[i]);
  line("notes", n + "]");
  auto events = [](const std::vector<ReportEvent>& v, const char* row) {
    std::string tl = "[";
    for (size_t i = 0; i < v.size(); ++i) {
      const auto& e = v[i];
      tl += std::string(i ? ",\n    " : "\n    ") + "{" + quote(row) + ": " + std::to_string(e.rank) +
            ", \"kind\": " + quote(e.kind) + ", \"label\": " + quote(e.label) + ", \"t0\": " + number(e.t0) +
            ", \"t1\": " + number(e.t1) + "}";
    }
    return tl + (v.empty() ? "]" : "\n  ]");
  };
  if (!r.goodput_timeline.empty()) {  // row = attempt - 1
    line("goodput_timeline_title", quote(r.goodput_timeline_title));
    line("goodput_timeline", events(r.goodput_timeline, "row"));
  }
  line("timeline_title", quote(r.timeline_title));
  line("timeline", events(r.timeline, "rank"), true);
  return j + "}\n";
}

// ---- report.md --------------------------------------------------------------------------------

std::string render_markdown(const Report& r) {
  std::string m = "# " + r.title + "\n\n";
  m += "*" + r.source + "*" + (r.subtitle.empty() ? "" : " — " + r.subtitle) + "\n\n";
  m += "| | |\n|---|---|\n";
  for (const auto& f : r.headline) m += "| " + f.label + " | " + field_value_text(f) + " |\n";
  if (!r.published.metric.empty()) {
    const auto& p = r.published;
    m += "\n## Compared with the published figure\n\n| " + p.metric + " | value |\n|---|---|\n";
    m += "| published (" + p.source + ") | " + pretty(p.published) + " |\n";
    m += "| " + r.source + " | " + pretty(p.predicted) + " |\n";
    m += "| " + r.source + " / published | " + pretty(p.ratio()) + (p.within_tolerance() ? " (within " : " (outside ") +
         "±" + percent(p.tolerance) + ") |\n";
    if (!p.note.empty()) m += "\n" + p.note + "\n";
  }
  const double total = breakdown_total(r);
  m += "\n## Where the step time goes\n\n| part | seconds | share |\n|---|---:|---:|\n";
  for (const auto& b : r.breakdown)
    m += "| " + b.name + " | " + pretty(b.seconds) + " | " + percent(total > 0 ? b.seconds / total : 0) + " |\n";
  if (!r.bubble_per_rank.empty()) {
    const bool core = !r.core_wait_per_rank.empty();  // measured runs: waiting for a core
    m += std::string("\n## Per rank (seconds)\n\n| rank | busy | ") + (core ? "waiting for a core | " : "") +
         "bubble | exposed comm |\n|---:|---:|" + (core ? "---:|" : "") + "---:|---:|\n";
    auto at = [](const std::vector<double>& v, size_t i) { return i < v.size() ? v[i] : 0.0; };
    for (size_t i = 0; i < r.bubble_per_rank.size(); ++i)
      m += "| " + std::to_string(i) + " | " + pretty(at(r.busy_per_rank, i)) + " | " +
           (core ? pretty(at(r.core_wait_per_rank, i)) + " | " : "") + pretty(r.bubble_per_rank[i]) + " | " +
           pretty(at(r.exposed_comm_per_rank, i)) + " |\n";
  }
  for (const auto& t : r.tables) {
    m += "\n## " + t.title + "\n\n|";
    for (const auto& c : t.columns) m += " " + c + " |";
    m += "\n|";
    for (size_t c = 0; c < t.columns.size(); ++c) m += "---|";
    m += "\n";
    for (const auto& row : t.rows) {
      m += "|";
      for (const auto& cell : row) m += " " + cell + " |";
      m += "\n";
    }
  }
  if (!r.notes.empty()) {
    m += "\n## Notes\n\n";
    for (const auto& n : r.notes) m += "- " + n + "\n";
  }
  if (!r.timeline.empty()) m += "\nThe timeline (" + r.timeline_title + ") is drawn in report.html.\n";
  if (!r.goodput_timeline.empty())
    m += "\nThe timeline of the attempts (" + r.goodput_timeline_title + ") is drawn in report.html.\n";
  return m;
}

}  // namespace duet::report
