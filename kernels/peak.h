#pragma once
// The machine's floating-point peak, measured: an FMA loop at the widest vector instruction
// set this CPU has (AVX-512, else AVX2, else SSE2 multiply + add), on `threads` threads at
// once. GEMM-bound speed is reported against this (docs/PERFORMANCE.md): a GEMM library
// compared only with itself cannot notice that it runs generic kernels.
//
// Only for reports: nothing chooses kernels from a timing (results stay bit-identical).

namespace duet::cpu {

struct FmaPeak {
  const char* isa = "";  // "AVX-512", "AVX2", "SSE2"
  int threads = 0;
  double flops = 0;  // FLOP/s of all threads together; an FMA counts 2
  double per_thread() const { return threads > 0 ? flops / threads : 0; }
};

// The widest of AVX-512 / AVX2 / SSE2 that this CPU and the OS support.
const char* widest_fma_isa();

// Best of `repeats` runs, each about `seconds` long, all threads starting together, on at most
// as many threads as the calling thread has CPUs to run on. A thread's rate counts only the CPU
// time it ran, so a thread that waits for a core (other processes) does not read as a slow
// core; several threads count that way only in a run where they all ran at the same time.
// Short runs, many of them (~0.1 s in all by default for one thread): the best one is the
// machine's rate. Several threads reading less than 0.85 of one thread's rate each probe again
// for up to 1.5 s more (a hypervisor can put two vCPUs on one core for a while). Two threads,
// each on its own CPU, at twice one thread's rate means two real cores; at one thread's rate,
// two hyperthreads (or vCPUs) sharing one core's units.
FmaPeak measure_fma_peak(int threads, double seconds = 0.002, int repeats = 50);

}  // namespace duet::cpu
