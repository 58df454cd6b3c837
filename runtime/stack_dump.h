#pragma once
// Every thread's stack of this process, on request, while it runs — the diagnosis of a hang.
// install() sets a handler for one real-time signal; write_all_stacks() sends that signal to
// each thread of the process in turn (tgkill), whose handler records its own stack
// (Boost.Stacktrace's async-signal-safe dump) into a slot, then symbolises the slots outside
// any handler and writes one file. A thread that does not answer within the deadline (it
// blocks the signal, or is stuck in the kernel) is listed with its /proc state instead.

#include <string>

namespace duet::runtime {

// Installs the handler (idempotent). Call once, early, from any thread.
void install_stack_dump_handler();

// Writes the stacks of every other thread of this process into `path` (through a temporary
// name); `title` heads the file. Returns the number of threads that answered. Never called
// from a signal handler; one call at a time per process.
int write_all_stacks(const std::string& path, const std::string& title, double deadline_s = 2.0);

}  // namespace duet::runtime
