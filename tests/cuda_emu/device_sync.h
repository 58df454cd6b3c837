#pragma once
// What the emulated cudaDeviceSynchronize also waits for: work other emulations queue on
// streams of their own (tests/nccl_emu installs it: its NCCL operations). nullptr = nothing.
namespace duet_emu {
inline void (*device_synchronize_hook)() = nullptr;
}
