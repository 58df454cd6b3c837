#pragma once
// One function per `duet` subcommand. Each parses its own options with
// Boost.Program_options (argv[0] is the subcommand name) and returns the exit code.
// User errors are thrown as std::exception and reported once, in main().

#include <string>

namespace duet::app {

// The path of the running `duet` executable (/proc/self/exe): what a job's ranks run.
std::string self_exe();

int cmd_train(int argc, char** argv);
int cmd_schedule(int argc, char** argv);
int cmd_simulate(int argc, char** argv);
int cmd_launch(int argc, char** argv);
int cmd_report(int argc, char** argv);
int cmd_ckpt(int argc, char** argv);
int cmd_submit(int argc, char** argv);
int cmd_status(int argc, char** argv);

}  // namespace duet::app
