#pragma once
// Time a thread was runnable but not running: waiting for a core.
//
// When ranks share cores (8 ranks on 2 cores), a thread whose message has arrived, or whose
// op could compute, often sits in the scheduler's run queue until another rank's thread
// yields the core. Wall-clock spans count that as computing or as waiting on communication;
// the run report separates it out. Linux keeps it per thread: the second field of
// /proc/thread-self/schedstat is the time, in ns, the thread spent runnable on a run queue.
//
// Reading it costs one pread on a file kept open per thread (a few µs at most), so the
// trace reads it at the start and end of every event (io/trace.h) and the engine at the
// start and end of every step.

namespace duet::io {

// The calling thread's run-queue time so far, in seconds (monotonic for a thread; compare
// two readings of one thread). 0 where the kernel does not report it (then every reading
// is 0, and so is every difference).
double thread_core_wait_s();

// Both figures of the calling thread from one read: seconds on a CPU and seconds runnable
// but not running, so far (0 and 0 where the kernel does not report them).
struct ThreadTimes {
  double on_cpu_s = 0, core_wait_s = 0;
};
ThreadTimes thread_times();

// Whether this kernel reports run-queue time (false: thread_core_wait_s() is always 0).
bool core_wait_available();

}  // namespace duet::io
