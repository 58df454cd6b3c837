#pragma once
// Draws a simulated step as an SVG timeline, like the figure in DualPipe's README: one row
// per rank, one cell per op at its simulated time, coloured by kind (forward orange,
// backward green, input-only backward light green, weight blue; direction 1 in darker
// shades with white labels), labelled with the micro-batch, overlapped F&B pairs outlined
// in black. Idle time stays white.
#include <string>

#include "scheduler/schedule.h"
#include "scheduler/simulate.h"

namespace duet::sched {

struct SvgOptions {
  int pipeline = 0;           // which pipeline of the simulation to draw
  double px_per_unit = 0;     // horizontal scale; 0 = chosen so the shortest op fits a label
  std::string title;          // drawn above the rows when not empty
};

// `result` must come from simulate(schedule, ...) with record_timeline = true.
std::string render_timeline_svg(const Schedule& schedule, const SimResult& result, const SvgOptions& options = {});

}  // namespace duet::sched
