#include "scheduler/text_format.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/json.h"

namespace duet::sched {
namespace {

const char* kind_letter(OpKind k) {
  switch (k) {
    case OpKind::F: return "F";
    case OpKind::B: return "B";
    case OpKind::I: return "I";
    case OpKind::W: return "W";
    case OpKind::FB: return "FB";
  }
  return "?";
}

std::string part(char letter, int dir, int mb) {
  return letter + std::to_string(dir) + ":" + std::to_string(mb);
}

// Parses "<letter><dir>:<mb>" exactly.
bool parse_part(std::string_view s, char& letter, int& dir, int& mb) {
  if (s.size() < 4) return false;
  letter = s[0];
  auto colon = s.find(':');
  if (colon == std::string_view::npos || colon < 2) return false;
  auto d = std::from_chars(s.data() + 1, s.data() + colon, dir);
  if (d.ec != std::errc() || d.ptr != s.data() + colon) return false;
  auto m = std::from_chars(s.data() + colon + 1, s.data() + s.size(), mb);
  if (m.ec != std::errc() || m.ptr != s.data() + s.size() || colon + 1 == s.size()) return false;
  return dir >= 0 && mb >= 0;
}

std::vector<std::string_view> split_ws(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    size_t j = i;
    while (j < s.size() && !std::isspace(static_cast<unsigned char>(s[j]))) ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

int parse_int(std::string_view s, const std::string& what) {
  int v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size())
    throw std::invalid_argument(what + ": '" + std::string(s) + "' is not an integer");
  return v;
}

}  // namespace

std::string format_op(const Op& op) {
  if (op.kind == OpKind::FB) return part('F', op.dir, op.microbatch) + "&" + part('B', op.dir2, op.microbatch2);
  return part(kind_letter(op.kind)[0], op.dir, op.microbatch);
}

Op parse_op(std::string_view token) {
  auto bad = [&](const char* why) {
    return std::invalid_argument("bad op '" + std::string(token) + "': " + why +
                                 " (expected F<d>:<m>, B<d>:<m>, I<d>:<m>, W<d>:<m> or F<d>:<m>&B<d>:<m>)");
  };
  char letter;
  int dir, mb;
  auto amp = token.find('&');
  if (amp != std::string_view::npos) {
    char l2;
    int dir2, mb2;
    if (!parse_part(token.substr(0, amp), letter, dir, mb) || !parse_part(token.substr(amp + 1), l2, dir2, mb2))
      throw bad("malformed pair");
    if (letter != 'F' || l2 != 'B') throw bad("a pair is a forward then a full backward");
    return {OpKind::FB, dir, mb, dir2, mb2};
  }
  if (!parse_part(token, letter, dir, mb)) throw bad("malformed");
  switch (letter) {
    case 'F': return {OpKind::F, dir, mb};
    case 'B': return {OpKind::B, dir, mb};
    case 'I': return {OpKind::I, dir, mb};
    case 'W': return {OpKind::W, dir, mb};
    default: throw bad("unknown kind letter");
  }
}

std::string format_schedule_text(const Schedule& s) {
  std::string out = "# duet schedule kind=" + format_schedule_kind(s.kind) + " ranks=" + std::to_string(s.ranks) +
                    " microbatches=" + std::to_string(s.microbatches) + "\n";
  for (int r = 0; r < s.ranks; ++r) {
    out += std::to_string(r) + ":";
    for (const Op& op : s.ops[r]) {
      out += ' ';
      out += format_op(op);
    }
    out += "\n";
  }
  return out;
}

Schedule parse_schedule_text(std::string_view text, std::optional<ScheduleKind> kind) {
  std::map<std::string, std::string> header;
  std::map<int, std::vector<Op>> rank_ops;
  int line_no = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    const std::string where = "line " + std::to_string(line_no);
    auto words = split_ws(line);
    if (words.empty()) continue;
    if (words[0][0] == '#') {
      if (words.size() >= 3 && words[0] == "#" && words[1] == "duet" && words[2] == "schedule") {
        for (size_t i = 3; i < words.size(); ++i) {
          auto eq = words[i].find('=');
          if (eq == std::string_view::npos)
            throw std::invalid_argument(where + ": header entry '" + std::string(words[i]) + "' is not key=value");
          std::string key(words[i].substr(0, eq));
          if (key != "kind" && key != "ranks" && key != "microbatches")
            throw std::invalid_argument(where + ": unknown header key '" + key + "' (valid: kind, ranks, microbatches)");
          header[key] = std::string(words[i].substr(eq + 1));
        }
      }
      continue;
    }
    std::string_view head = words[0];
    std::vector<std::string_view> tokens(words.begin() + 1, words.end());
    auto colon = head.find(':');
    if (colon == std::string_view::npos)
      throw std::invalid_argument(where + ": expected '<rank>: <op> <op> ...', got '" + std::string(head) + "'");
    if (colon + 1 < head.size()) tokens.insert(tokens.begin(), head.substr(colon + 1));  // "0:F0:0"
    int rank = 0;
    auto rank_text = head.substr(0, colon);
    auto parsed = std::from_chars(rank_text.data(), rank_text.data() + rank_text.size(), rank);
    if (parsed.ec != std::errc() || parsed.ptr != rank_text.data() + rank_text.size())
      throw std::invalid_argument(where + ": expected '<rank>: <op> <op> ...', got '" + std::string(head) + "'");
    if (rank < 0) throw std::invalid_argument(where + ": rank must be >= 0, got " + std::to_string(rank));
    if (rank_ops.count(rank)) throw std::invalid_argument(where + ": rank " + std::to_string(rank) + " appears twice");
    std::vector<Op>& ops = rank_ops[rank];
    for (size_t i = 0; i < tokens.size(); ++i) {
      try {
        ops.push_back(parse_op(tokens[i]));
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(where + ", op " + std::to_string(i) + ": " + e.what());
      }
    }
  }

  if (header.count("kind")) {
    ScheduleKind from_header = parse_schedule_kind(header["kind"]);
    if (kind && *kind != from_header)
      throw std::invalid_argument("the schedule says kind=" + header["kind"] + " but kind " +
                                  format_schedule_kind(*kind) + " was asked for");
    kind = from_header;
  }
  if (!kind)
    throw std::invalid_argument(
        "the schedule's kind is unknown: add a header line '# duet schedule kind=<1f1b|zb1p|dualpipe|dualpipev>' "
        "or give the kind");
  if (rank_ops.empty()) throw std::invalid_argument("the schedule has no rank lines");
  const int ranks = static_cast<int>(rank_ops.size());
  if (rank_ops.rbegin()->first != ranks - 1)
    throw std::invalid_argument("rank lines must be 0.." + std::to_string(ranks - 1) + ", each once; found rank " +
                                std::to_string(rank_ops.rbegin()->first));
  if (header.count("ranks") && parse_int(header["ranks"], "header ranks") != ranks)
    throw std::invalid_argument("the header says ranks=" + header["ranks"] + " but there are " +
                                std::to_string(ranks) + " rank lines");

  int microbatches;
  if (header.count("microbatches")) {
    microbatches = parse_int(header["microbatches"], "header microbatches");
  } else {
    int max_mb = -1;
    for (auto& [r, ops] : rank_ops)
      for (const Op& op : ops) max_mb = std::max({max_mb, op.microbatch, op.microbatch2});
    microbatches = (max_mb + 1) * (*kind == ScheduleKind::DualPipe ? 2 : 1);
  }
  if (microbatches < 1) throw std::invalid_argument("the schedule needs micro-batches >= 1");

  Schedule s{*kind, ranks, microbatches, {}};
  for (auto& [r, ops] : rank_ops) s.ops.push_back(std::move(ops));
  return s;
}

std::string schedule_to_json(const Schedule& s) {
  const Placement p = s.placement();
  core::json::Writer j;
  j.begin_object();
  j.key("kind").value(format_schedule_kind(s.kind));
  j.key("ranks").value(s.ranks);
  j.key("microbatches").value(s.microbatches);
  j.key("microbatches_per_dir").value(s.microbatches_per_dir());
  j.key("placement").begin_array();
  for (int r = 0; r < s.ranks; ++r) {
    j.begin_object().key("rank").value(r);
    j.key("stages").begin_array();
    for (int d = 0; d < p.num_dirs(); ++d) j.value(p.stage_of(r, d));
    j.end_array().key("next").begin_array();
    for (int d = 0; d < p.num_dirs(); ++d) j.value(p.next_rank(r, d));
    j.end_array().key("prev").begin_array();
    for (int d = 0; d < p.num_dirs(); ++d) j.value(p.prev_rank(r, d));
    j.end_array().end_object();
  }
  j.end_array();
  j.key("ops").begin_array();
  for (int r = 0; r < s.ranks; ++r) {
    j.begin_array();
    for (const Op& op : s.ops[r]) {
      j.begin_object().key("kind").value(kind_letter(op.kind));
      j.key("dir").value(op.dir).key("mb").value(op.microbatch);
      if (op.kind == OpKind::FB) j.key("dir2").value(op.dir2).key("mb2").value(op.microbatch2);
      j.end_object();
    }
    j.end_array();
  }
  j.end_array();
  j.end_object();
  return j.str() + "\n";
}

}  // namespace duet::sched
