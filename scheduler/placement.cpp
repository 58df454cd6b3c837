#include "scheduler/placement.h"

#include <stdexcept>

namespace duet::sched {

Placement::Placement(ScheduleKind kind, int ranks) : kind_(kind), ranks_(ranks) {
  if (ranks < 1) throw std::invalid_argument("placement needs ranks >= 1, got " + std::to_string(ranks));
}

int Placement::num_dirs() const {
  return kind_ == ScheduleKind::DualPipe || kind_ == ScheduleKind::DualPipeV ? 2 : 1;
}

int Placement::num_model_copies() const { return kind_ == ScheduleKind::DualPipe ? 2 : 1; }

int Placement::num_stages() const { return kind_ == ScheduleKind::DualPipeV ? 2 * ranks_ : ranks_; }

int Placement::model_copy_of(int dir) const { return kind_ == ScheduleKind::DualPipe ? dir : 0; }

int Placement::stage_of(int rank, int dir) const {
  switch (kind_) {
    case ScheduleKind::OneFOneB:
    case ScheduleKind::ZB1P: return rank;
    case ScheduleKind::DualPipe: return dir == 0 ? rank : ranks_ - 1 - rank;
    case ScheduleKind::DualPipeV: return dir == 0 ? rank : 2 * ranks_ - 1 - rank;
  }
  return -1;
}

Slot Placement::slot_of(int model_copy, int stage) const {
  if (stage < 0 || stage >= num_stages() || model_copy < 0 || model_copy >= num_model_copies()) return {};
  switch (kind_) {
    case ScheduleKind::OneFOneB:
    case ScheduleKind::ZB1P: return {stage, 0};
    case ScheduleKind::DualPipe: return model_copy == 0 ? Slot{stage, 0} : Slot{ranks_ - 1 - stage, 1};
    case ScheduleKind::DualPipeV: return stage < ranks_ ? Slot{stage, 0} : Slot{2 * ranks_ - 1 - stage, 1};
  }
  return {};
}

Slot Placement::next(int rank, int dir) const {
  return slot_of(model_copy_of(dir), stage_of(rank, dir) + 1);
}

Slot Placement::prev(int rank, int dir) const {
  return slot_of(model_copy_of(dir), stage_of(rank, dir) - 1);
}

}  // namespace duet::sched
