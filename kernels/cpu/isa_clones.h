#pragma once
// The elementwise kernels that take a noticeable share of a training step (softmax, SwiGLU,
// RMSNorm, cross-entropy, AdamW) are compiled three times — AVX-512 (x86-64-v4), AVX2 + FMA
// (x86-64-v3) and the build's baseline — and the loader picks the widest this CPU has (GCC
// function multiversioning), so a portable build keeps their speed. Like the GEMM's, their
// results may then depend on the CPU's features (vector width orders the sums), never on a
// timing.
#if defined(__x86_64__) && defined(__GNUC__)
#define DUET_ISA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DUET_ISA_CLONES
#endif
