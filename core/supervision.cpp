#include "core/supervision.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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
      std::snprintf(buf, sizeof buf, "hello %d %d %d %s%s%s\n", m.rank, m.pid, m.attempt, m.host.c_str(),
                    m.node.empty() ? "" : " ", m.node.c_str());
      return buf;
    case RankMessage::Kind::Beat:
      std::snprintf(buf, sizeof buf, "beat %d %d %s\n", m.step, m.op, phase_name(m.phase));
      return buf;
    case RankMessage::Kind::StepTime:
      std::snprintf(buf, sizeof buf, "steptime %d %.9g\n", m.step, m.seconds);
      return buf;
    case RankMessage::Kind::Committed: std::snprintf(buf, sizeof buf, "committed %d\n", m.step); return buf;
    case RankMessage::Kind::NonFinite:
      if (m.mb >= 0)
        std::snprintf(buf, sizeof buf, "nonfinite %d %d %d %d\n", m.step, m.at_rank, m.dir, m.mb);
      else
        std::snprintf(buf, sizeof buf, "nonfinite %d\n", m.step);
      return buf;
    case RankMessage::Kind::Mark:
      std::snprintf(buf, sizeof buf, "mark %s %.9g %d\n", m.name.c_str(), m.seconds, m.step);
      return buf;
    case RankMessage::Kind::Inject: std::snprintf(buf, sizeof buf, "inject %d %d\n", m.signal, m.step); return buf;
    case RankMessage::Kind::StacksDone: return "stacksdone\n";
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
    if (ok && !(in >> m.node)) m.node.clear(), in.clear();
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
  } else if (word == "done" || word == "stacksdone") {
    m.kind = word == "done" ? RankMessage::Kind::Done : RankMessage::Kind::StacksDone;
    ok = true;
  } else if (word == "mark") {
    m.kind = RankMessage::Kind::Mark;
    ok = bool(in >> m.name >> m.seconds >> m.step) && std::isfinite(m.seconds) && m.seconds >= 0 && !m.name.empty() &&
         m.name.size() <= 32 && m.name.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") == std::string::npos;
  } else if (word == "inject") {
    m.kind = RankMessage::Kind::Inject;
    ok = bool(in >> m.signal >> m.step) && m.signal >= 0 && m.signal < 65;
  } else if (word == "committed" || word == "nonfinite") {
    m.kind = word == "committed" ? RankMessage::Kind::Committed : RankMessage::Kind::NonFinite;
    ok = bool(in >> m.step);
    if (ok && m.kind == RankMessage::Kind::NonFinite && (in >> m.at_rank)) {
      ok = bool(in >> m.dir >> m.mb) && m.at_rank >= 0 && m.dir >= 0 && m.mb >= 0;
    } else {
      in.clear();
    }
  }
  std::string rest;
  if (!ok || (in >> rest)) return std::nullopt;  // trailing words: not ours
  return m;
}

std::string logical_node_of(int rank) {
  const char* nodes = std::getenv(kNodesEnv);
  const char* per = std::getenv(kRanksPerNodeEnv);
  if (!nodes || !*nodes || !per || std::atoi(per) < 1 || rank < 0) return "";
  std::istringstream in{std::string(nodes)};
  std::string node;
  for (int i = 0; std::getline(in, node, ','); ++i)
    if (i == rank / std::atoi(per)) return node;
  return "";
}

double process_age_seconds() {
  // Field 22 of /proc/self/stat is the start time in clock ticks since boot; the command name
  // (field 2) may hold spaces, so count fields after its closing parenthesis.
  std::FILE* f = std::fopen("/proc/self/stat", "r");
  if (!f) return 0;
  char buf[1024];
  const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char* p = std::strrchr(buf, ')');
  if (!p) return 0;
  unsigned long long start = 0;
  int field = 2;
  for (const char* q = p + 1; *q && field < 22; ++q)
    if (*q == ' ' && ++field == 22) start = std::strtoull(q + 1, nullptr, 10);
  double uptime = 0;
  if (std::FILE* u = std::fopen("/proc/uptime", "r")) {
    if (std::fscanf(u, "%lf", &uptime) != 1) uptime = 0;
    std::fclose(u);
  }
  const double age = uptime - (double)start / (double)sysconf(_SC_CLK_TCK);
  return age > 0 ? age : 0;
}

namespace {
std::atomic<double> g_mpi_init_seconds{0};
}
void set_mpi_init_seconds(double seconds) { g_mpi_init_seconds = seconds; }
double mpi_init_seconds() { return g_mpi_init_seconds.load(); }

std::string encode_stacks_request(const std::string& dir) {
  if (dir.empty() || dir.size() > 150) return "";
  for (unsigned char c : dir)
    if (c <= ' ' || c == 0x7f) return "";
  return "stacks " + dir + "\n";
}

std::optional<std::string> decode_stacks_request(std::string_view line) {
  if (!line.starts_with("stacks ")) return std::nullopt;
  const std::string dir(line.substr(7));
  if (encode_stacks_request(dir).empty()) return std::nullopt;
  return dir;
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
  for (int s : steps) {
    if (!out.empty()) out += ',';
    out += std::to_string(s);
  }
  return out;
}

int data_step(int step, const std::vector<int>& skipped) {
  int d = step;
  for (int s : skipped)
    if (s <= step) ++d;
  return d;
}

}  // namespace duet::core
