#include "core/supervision.h"

#include <cmath>
#include <cstdio>
#include <sstream>

namespace duet::core {

namespace {

const char* phase_name(RankMessage::Phase p) {
  switch (p) {
    case RankMessage::Phase::Setup: return "setup";
    case RankMessage::Phase::Step: return "step";
    case RankMessage::Phase::Save: return "save";
  }
  return "?";
}

}  // namespace

std::string encode(const RankMessage& m) {
  char buf[160];
  switch (m.kind) {
    case RankMessage::Kind::Hello:
      std::snprintf(buf, sizeof buf, "hello %d %d %d %s\n", m.rank, m.pid, m.attempt, m.host.c_str());
      return buf;
    case RankMessage::Kind::Beat:
      std::snprintf(buf, sizeof buf, "beat %d %d %s\n", m.step, m.op, phase_name(m.phase));
      return buf;
    case RankMessage::Kind::StepTime:
      std::snprintf(buf, sizeof buf, "steptime %d %.9g\n", m.step, m.seconds);
      return buf;
    case RankMessage::Kind::Committed: std::snprintf(buf, sizeof buf, "committed %d\n", m.step); return buf;
    case RankMessage::Kind::NonFinite: std::snprintf(buf, sizeof buf, "nonfinite %d\n", m.step); return buf;
    case RankMessage::Kind::Done: return "done\n";
  }
  return "";
}

std::optional<RankMessage> decode_rank_message(std::string_view line) {
  if (line.size() > 200) return std::nullopt;
  std::istringstream in{std::string(line)};
  std::string word;
  if (!(in >> word)) return std::nullopt;
  RankMessage m;
  bool ok = false;
  if (word == "hello") {
    m.kind = RankMessage::Kind::Hello;
    ok = bool(in >> m.rank >> m.pid >> m.attempt >> m.host) && m.rank >= 0 && m.pid > 0 && m.attempt >= 1;
  } else if (word == "beat") {
    m.kind = RankMessage::Kind::Beat;
    std::string phase;
    ok = bool(in >> m.step >> m.op >> phase);
    if (phase == "setup") m.phase = RankMessage::Phase::Setup;
    else if (phase == "step") m.phase = RankMessage::Phase::Step;
    else if (phase == "save") m.phase = RankMessage::Phase::Save;
    else ok = false;
  } else if (word == "steptime") {
    m.kind = RankMessage::Kind::StepTime;
    ok = bool(in >> m.step >> m.seconds) && std::isfinite(m.seconds) && m.seconds >= 0;
  } else if (word == "done") {
    m.kind = RankMessage::Kind::Done;
    ok = true;
  } else if (word == "committed" || word == "nonfinite") {
    m.kind = word == "committed" ? RankMessage::Kind::Committed : RankMessage::Kind::NonFinite;
    ok = bool(in >> m.step);
  }
  std::string rest;
  if (!ok || (in >> rest)) return std::nullopt;  // trailing words: not ours
  return m;
}

std::vector<int> parse_step_list(std::string_view text) {
  std::vector<int> out;
  std::istringstream in{std::string(text)};
  for (std::string item; std::getline(in, item, ',');) {
    try {
      size_t used = 0;
      const int s = std::stoi(item, &used);
      if (used == item.size() && s >= 1) out.push_back(s);
    } catch (const std::exception&) {
    }
  }
  return out;
}

std::string format_step_list(const std::vector<int>& steps) {
  std::string out;
  for (int s : steps) out += (out.empty() ? "" : ",") + std::to_string(s);
  return out;
}

int data_step(int step, const std::vector<int>& skipped) {
  int d = step;
  for (int s : skipped)
    if (s <= step) ++d;
  return d;
}

}  // namespace duet::core
