#pragma once
// Reads back the per-rank trace files that io/trace.h writes (Chrome trace-event JSON, one
// event a line):
//
//   {"name":"F0:3","cat":"compute","ph":"X","pid":0,"tid":1,"ts":12.500,"dur":3.250,
//    "args":{"step":3,"op":"F","dir":0,"mb":3,"core_wait_us":41.5}}
//
// ts and dur in microseconds, tid a core::TraceThread, "op"/"dir"/"mb" present for the
// events of schedule ops, "core_wait_us" for events whose thread waited for a core (absent:
// 0, as in traces written before it existed), "gpu_busy_us" for the GPU thread's events (the
// time the op's kernels ran). Metadata lines ("ph":"M") are skipped.
//
// Traces are streamed while a run goes, so a killed run leaves a file without its closing
// "]}", perhaps cut inside an event: it is read up to its last complete event, with a
// warning. A file that is not a trace at all (no "traceEvents" header, or no event in it) is
// refused: a report computed from it would be all zeros.

#include <string>
#include <vector>

#include "core/trace_event.h"

namespace duet::report {

struct TraceFile {
  std::vector<core::TraceEvent> events;  // in file order, times in seconds
  std::string warning;                   // "" or what was wrong but tolerated (a cut-off end)
};

// Throws std::runtime_error naming the path and the reason when it cannot be read, is not a
// trace, or holds no complete event.
TraceFile read_trace_file(const std::string& path);

// read_trace_file(path).events.
std::vector<core::TraceEvent> read_trace(const std::string& path);

}  // namespace duet::report
