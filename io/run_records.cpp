#include "io/run_records.h"

#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>

namespace duet::io {

int next_attempt(const std::string& metrics_path) {
  std::ifstream in(metrics_path);
  int attempts = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    if (attempts == 0) attempts = 1;  // the file holds something: the first attempt ran
    if (line.find("\"event\":\"resume\"") != std::string::npos) ++attempts;
  }
  return attempts + 1;
}

JsonLine resume_record(int from_step, int attempt) {
  JsonLine j;
  j.add("event", "resume").add("from_step", from_step).add("attempt", attempt);
  return j;
}

std::string trace_file_name(int rank, int attempt) {
  char name[64];
  if (attempt <= 1)
    std::snprintf(name, sizeof name, "rank-%05d.json", rank);
  else
    std::snprintf(name, sizeof name, "rank-%05d.attempt-%d.json", rank, attempt);
  return name;
}

std::map<int, std::string> read_step_lines(const std::string& jsonl_text) {
  static const std::regex step_re("\"step\":(-?[0-9]+)[,}]");
  std::map<int, std::string> out;
  std::stringstream ss(jsonl_text);
  for (std::string line; std::getline(ss, line);) {
    std::smatch m;
    if (std::regex_search(line, m, step_re)) out[std::stoi(m[1])] = line;
  }
  return out;
}

}  // namespace duet::io
