#pragma once
// Time per op of a backend table, for benchmarks: op_profiled(base) is `base` with every op
// wrapped. While profiling is off (the default) a wrapped op is the base op plus one relaxed
// load; while on, each op is timed alone — on a device backend by its CUDA events
// (timing_begin / timing_end around the one op: its kernels' busy time, and the host waits for
// it), on a host backend by the steady clock. So a profiled pass tells where the GPU time goes
// and an unprofiled one how long a step takes; the benchmark divides the first by the second.
//
// An op on a thread that is device-timing a longer stretch already (timing_begin false) is not
// counted. Ops that ran at once on two threads (an overlapped pair's executors) both count, so
// their shares of a step can add past 100%. `base` must outlive the program's use of the table
// (the built-in backends are static). One profiled table per process (the tables are static): op_profiled of a second, different
// base throws std::logic_error. Totals are summed over all threads.
#include <map>
#include <string>

#include "kernels/backend.h"

namespace duet::kernels {

const Backend& op_profiled(const Backend& base);

void op_profile_enable(bool on);
void op_profile_reset();

struct OpTime {
  double seconds = 0;  // device busy time (device backends) or wall time (host backends)
  long calls = 0;
};
// Per op name since the last reset; ops never called are absent.
std::map<std::string, OpTime> op_profile_totals();

// True for the GEMM family (gemm, linear_*): what the benchmark's "non-GEMM kernel" excludes.
bool is_gemm_op(const std::string& op);

}  // namespace duet::kernels
