#include "slurm/hostlist.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <stdexcept>

namespace duet::slurm {

namespace {

[[noreturn]] void bad(std::string_view expr, const std::string& why) {
  throw std::invalid_argument("hostlist '" + std::string(expr) + "': " + why);
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "1-4,07,9-10" -> the numbers as text, padded like the low end of their range.
std::vector<std::string> expand_ranges(std::string_view expr, std::string_view ranges) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= ranges.size()) {
    const size_t comma = std::min(ranges.find(',', pos), ranges.size());
    const std::string_view r = ranges.substr(pos, comma - pos);
    const size_t dash = r.find('-');
    const std::string_view lo = r.substr(0, dash), hi = dash == std::string_view::npos ? lo : r.substr(dash + 1);
    if (!all_digits(lo) || !all_digits(hi)) bad(expr, "'" + std::string(r) + "' is not a number or a range a-b");
    if (lo.size() > 9 || hi.size() > 9) bad(expr, "'" + std::string(r) + "': numbers of at most 9 digits");
    const long a = std::stol(std::string(lo)), b = std::stol(std::string(hi));
    if (b < a) bad(expr, "range '" + std::string(r) + "' runs backwards");
    if (b - a >= 1'000'000) bad(expr, "range '" + std::string(r) + "' holds more than a million hosts");
    for (long n = a; n <= b; ++n) {
      std::string s = std::to_string(n);
      if (s.size() < lo.size()) s.insert(0, lo.size() - s.size(), '0');
      out.push_back(s);
    }
    pos = comma + 1;
  }
  return out;
}

// One item (no top-level commas): every bracket group multiplies out.
void expand_item(std::string_view expr, std::string_view item, std::vector<std::string>& out) {
  std::vector<std::string> partial = {""};
  size_t pos = 0;
  while (pos < item.size()) {
    const size_t open = item.find('[', pos);
    const std::string_view text = item.substr(pos, open == std::string_view::npos ? item.npos : open - pos);
    if (text.find(']') != std::string_view::npos) bad(expr, "']' without '['");
    for (auto& p : partial) p += text;
    if (open == std::string_view::npos) break;
    const size_t close = item.find(']', open);
    if (close == std::string_view::npos) bad(expr, "'[' without ']'");
    const auto numbers = expand_ranges(expr, item.substr(open + 1, close - open - 1));
    std::vector<std::string> next;
    next.reserve(partial.size() * numbers.size());
    for (const auto& p : partial)
      for (const auto& n : numbers) next.push_back(p + n);
    partial = std::move(next);
    pos = close + 1;
  }
  for (auto& p : partial)
    if (!p.empty()) out.push_back(std::move(p));
}

}  // namespace

std::vector<std::string> hostlist_expand(std::string_view expr) {
  std::vector<std::string> out;
  size_t start = 0;
  int depth = 0;
  for (size_t i = 0; i <= expr.size(); ++i) {
    const char c = i < expr.size() ? expr[i] : ',';
    if (c == '[') {
      if (++depth > 1) bad(expr, "nested '['");
    } else if (c == ']') {
      if (--depth < 0) bad(expr, "']' without '['");
    } else if (std::isspace(static_cast<unsigned char>(c))) {
      bad(expr, "spaces are not allowed");
    } else if (c == ',' && depth == 0) {
      expand_item(expr, expr.substr(start, i - start), out);
      start = i + 1;
    }
  }
  if (depth != 0) bad(expr, "'[' without ']'");
  return out;
}

std::string hostlist_compress(const std::vector<std::string>& hosts) {
  // Key: (prefix, width of the number as written); width 0 = no trailing number.
  struct Group {
    std::vector<long> numbers;
    std::string name;  // for names without a number
  };
  // Split each name into prefix and trailing number; note the widths that zero padding uses
  // per prefix, so that "gpu-100" joins "gpu-[001-099]" (same width) rather than a group of its own.
  auto split = [](const std::string& h) {
    size_t d = h.size();
    while (d > 0 && h[d - 1] >= '0' && h[d - 1] <= '9') --d;
    return d;
  };
  std::set<std::pair<std::string, size_t>> padded_widths;
  for (const auto& h : hosts) {
    const size_t d = split(h), w = h.size() - d;
    if (w > 1 && w <= 9 && h[d] == '0') padded_widths.insert({h.substr(0, d), w});
  }
  std::vector<std::pair<std::string, size_t>> order;
  std::map<std::pair<std::string, size_t>, Group> groups;
  for (const auto& h : hosts) {
    const size_t d = split(h);
    std::pair<std::string, size_t> key{h.substr(0, d), h.size() - d};
    if (key.second > 9) key = {h, 0};  // too long to be a number we can range over
    else if (key.second > 0 && !padded_widths.count(key)) key.second = 1;  // unpadded
    if (!groups.count(key)) order.push_back(key);
    Group& g = groups[key];
    if (key.second == 0) g.name = key.first;
    else g.numbers.push_back(std::stol(h.substr(d)));
  }
  std::string out;
  for (const auto& key : order) {
    Group& g = groups[key];
    if (!out.empty()) out += ',';
    if (key.second == 0) {
      out += g.name;
      continue;
    }
    std::sort(g.numbers.begin(), g.numbers.end());
    g.numbers.erase(std::unique(g.numbers.begin(), g.numbers.end()), g.numbers.end());
    const size_t width = key.second;  // 1 = unpadded
    auto num = [&](long n) {
      std::string s = std::to_string(n);
      if (s.size() < width) s.insert(0, width - s.size(), '0');
      return s;
    };
    if (g.numbers.size() == 1) {
      out += key.first + num(g.numbers[0]);
      continue;
    }
    out += key.first + '[';
    for (size_t i = 0; i < g.numbers.size();) {
      size_t j = i;
      while (j + 1 < g.numbers.size() && g.numbers[j + 1] == g.numbers[j] + 1) ++j;
      if (i > 0) out += ',';
      out += num(g.numbers[i]);
      if (j > i) out += '-' + num(g.numbers[j]);
      i = j + 1;
    }
    out += ']';
  }
  return out;
}

}  // namespace duet::slurm
