#pragma once
// Reads back the per-rank trace files that io/trace.h writes (Chrome trace-event JSON, one
// event a line):
//
//   {"name":"F0:3","cat":"compute","ph":"X","pid":0,"tid":1,"ts":12.500,"dur":3.250,
//    "args":{"step":3,"op":"F","dir":0,"mb":3}}
//
// ts and dur in microseconds, tid a core::TraceThread, and "op"/"dir"/"mb" present for the
// events of schedule ops. Metadata lines ("ph":"M") and anything else are skipped.

#include <string>
#include <vector>

#include "core/trace_event.h"

namespace duet::report {

// Every complete event of the file, in file order (times in seconds). Throws
// std::runtime_error naming the path when it cannot be read.
std::vector<core::TraceEvent> read_trace(const std::string& path);

}  // namespace duet::report
