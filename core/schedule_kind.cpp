#include "core/schedule_kind.h"

#include <stdexcept>

namespace duet::core {

ScheduleKind parse_schedule_kind(std::string_view name) {
  if (name == "1f1b") return ScheduleKind::OneFOneB;
  if (name == "zb1p") return ScheduleKind::ZB1P;
  if (name == "dualpipe") return ScheduleKind::DualPipe;
  if (name == "dualpipev") return ScheduleKind::DualPipeV;
  throw std::invalid_argument("unknown schedule kind '" + std::string(name) +
                              "' (valid: 1f1b, zb1p, dualpipe, dualpipev)");
}

std::string format_schedule_kind(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::OneFOneB: return "1f1b";
    case ScheduleKind::ZB1P: return "zb1p";
    case ScheduleKind::DualPipe: return "dualpipe";
    case ScheduleKind::DualPipeV: return "dualpipev";
  }
  return "?";
}

std::string schedule_rule_violation(ScheduleKind kind, int ranks, int microbatches) {
  const std::string name = format_schedule_kind(kind);
  if (ranks < 1) return name + ": ranks must be >= 1, got " + std::to_string(ranks);
  if (microbatches < 1) return name + ": micro-batches must be >= 1, got " + std::to_string(microbatches);
  if (kind == ScheduleKind::DualPipe) {
    if (ranks % 2 != 0)
      return "dualpipe: ranks must be even (the two directions fold at the middle), got " + std::to_string(ranks);
    if (microbatches % 2 != 0)
      return "dualpipe: micro-batches must be even (half go in each direction), got " + std::to_string(microbatches);
  }
  if ((kind == ScheduleKind::DualPipe || kind == ScheduleKind::DualPipeV) && microbatches < 2 * ranks)
    return name + ": micro-batches must be >= 2 x ranks = " + std::to_string(2 * ranks) + ", got " +
           std::to_string(microbatches);
  return "";
}

void check_schedule_rule(ScheduleKind kind, int ranks, int microbatches) {
  const std::string why = schedule_rule_violation(kind, ranks, microbatches);
  if (!why.empty()) throw std::invalid_argument(why);
}

}  // namespace duet::core
