#pragma once
// The pipeline schedules duet knows, and the one rule each puts on the number of
// micro-batches. Config parsing (io/), generation (scheduler/), layout checks (core/layout.h)
// and the runtime all use this enum and these rules; nobody restates them.

#include <string>
#include <string_view>

namespace duet::core {

enum class ScheduleKind { OneFOneB, ZB1P, DualPipe, DualPipeV };

// "1f1b", "zb1p", "dualpipe", "dualpipev". parse throws std::invalid_argument listing the
// valid names.
ScheduleKind parse_schedule_kind(std::string_view name);
std::string format_schedule_kind(ScheduleKind kind);

// Why `kind` cannot run `microbatches` micro-batches on `ranks` pipeline ranks, as a sentence
// that starts with the schedule's name ("dualpipe: micro-batches must be even ..."), or ""
// when it can:
//   all:        ranks >= 1, microbatches >= 1
//   dualpipe:   ranks even, microbatches even, microbatches >= 2 x ranks
//   dualpipev:  microbatches >= 2 x ranks
std::string schedule_rule_violation(ScheduleKind kind, int ranks, int microbatches);
// The same, thrown as std::invalid_argument.
void check_schedule_rule(ScheduleKind kind, int ranks, int microbatches);

}  // namespace duet::core
