#pragma once
// Reads what report/goodput.h accounts: runs/<name>/events.jsonl (the supervisor's records,
// docs/fault-tolerance.md) and every step line of metrics.jsonl with its job.

#include <string>
#include <vector>

#include "report/goodput.h"

namespace duet::report {

// Throws std::runtime_error naming the path (and line) when it cannot be read, a line is not
// a JSON object, or a record lacks kind, attempt or elapsed_s.
std::vector<SupervisorEvent> read_supervisor_events(const std::string& path);

// Every job header ({"event":"run",...}) and step line of metrics.jsonl, in file order. A line
// cut off by a kill (the last one) is skipped. Throws std::runtime_error naming the path when it
// cannot be read or a complete line is not a JSON object.
StepHistory read_step_history(const std::string& path);

}  // namespace duet::report
