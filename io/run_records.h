#pragma once
// The records that make a run directory honest across restarts (one format, append-only):
//
//   metrics.jsonl   one line per step; a run started again in the same directory appends
//                   {"event":"resume","from_step":S,"attempt":N} and then its steps, from
//                   S + 1. Steps after S that an earlier attempt wrote appear again: readers
//                   keep each step's last line (read_step_lines), so each step counts once.
//   trace/          one file per rank and attempt: rank-RRRRR.json for the first attempt,
//                   rank-RRRRR.attempt-N.json for attempt N > 1.

#include <map>
#include <string>

#include "io/metrics.h"

namespace duet::io {

// The attempt that starts now in the run whose metrics file is `metrics_path`: 1 when the file
// is missing or empty, else 1 + the attempts it records (the first, plus one per resume record).
int next_attempt(const std::string& metrics_path);

// {"event":"resume","from_step":S,"attempt":N}
JsonLine resume_record(int from_step, int attempt);

// "rank-00003.json", "rank-00003.attempt-2.json".
std::string trace_file_name(int rank, int attempt);

// Each step's last line of metrics.jsonl text (lines with a "step" number), by step; lines
// without one (resume records) are left out.
std::map<int, std::string> read_step_lines(const std::string& jsonl_text);

}  // namespace duet::io
