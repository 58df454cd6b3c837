#pragma once
// The text format of a schedule (shared/refs/dualpipe.md) and its JSON form.
//
//   # duet schedule kind=dualpipe ranks=4 microbatches=8
//   0: F0:0 F0:1 F0:2 F1:0 I1:0 W1:0 F1:1 F0:3&B1:1 ...
//   1: ...
//
// One line per rank, `<rank>: <op> <op> ...`, ops as in format_op (schedule.h). Lines
// starting with '#' are comments; a comment starting with "# duet schedule" carries
// key=value pairs (kind, ranks, microbatches) so that a printed schedule reads back as it
// was. Blank lines are ignored.
#include <optional>
#include <string>
#include <string_view>

#include "scheduler/schedule.h"

namespace duet::sched {

// The header comment plus one line per rank, each ending in '\n'.
std::string format_schedule_text(const Schedule& schedule);

// Parses the text format. The kind comes from the header, or from `kind` when the text has
// none (both given and different is an error). Ranks are the rank lines, which must be
// 0..N-1, each once, in any order. Micro-batches come from the header, or else are the
// largest micro-batch id + 1 (times 2 for DualPipe). Throws std::invalid_argument naming
// the line and token. The result is not validated: run validate_schedule on it.
Schedule parse_schedule_text(std::string_view text, std::optional<ScheduleKind> kind = std::nullopt);

// {"kind": "dualpipe", "ranks": 4, "microbatches": 8, "microbatches_per_dir": 4,
//  "placement": [{"rank": 0, "stages": [0, 3], "next": [1, -1], "prev": [-1, 1]}, ...],
//  "ops": [[{"kind": "F", "dir": 0, "mb": 0}, ..., {"kind": "FB", "dir": 0, "mb": 3,
//           "dir2": 1, "mb2": 1}, ...], ...]}
std::string schedule_to_json(const Schedule& schedule);

}  // namespace duet::sched
