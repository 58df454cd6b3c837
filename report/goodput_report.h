#pragma once
// Goodput in a Report: the measured accounting of a supervised run (report/goodput.h) and the
// expected goodput of a simulated job (report/goodput_model.h), as headline fields, tables,
// notes and, for a run, the timeline of its attempts.

#include "report/goodput.h"
#include "report/goodput_model.h"
#include "report/report.h"

namespace duet::report {

// Headline: effective training time, wall, productive and lost time, interruptions. Tables:
// where the wall time went; badput per interruption. The attempts' timeline.
void add_goodput(Report& r, const Goodput& g);

// The run had no supervisor's record (events.jsonl): a note saying so, nothing else.
void add_goodput_absent(Report& r, const std::string& events_path);

// Headline: expected effective training time, tokens/day and GPU-hours per trillion tokens
// with failures, the Young/Daly interval. A table of the inputs, assumptions in the notes.
void add_expected_goodput(Report& r, const GoodputModelInputs& in, const GoodputModel& m, const std::string& save_source);

}  // namespace duet::report
