#pragma once
// Command-line options shared by the subcommands: parsing with --help, and for those that
// take a run config, --config, --set and one long option per config key
// (--train.steps 50 ≡ --set train.steps=50).

#include <boost/program_options.hpp>
#include <string>
#include <vector>

#include "io/config.h"

namespace duet::app {

// Boost's default style without abbreviations: whole option names only. Boost would take a
// unique prefix (--part for --partition), which `duet submit` and `duet launch` would then pass
// on, unrecognised, to the job's command (they strip their own options by name), and which a
// key added later with the same prefix would silently change the meaning of.
int option_style();

void add_config_options(boost::program_options::options_description& opts);

// Stores argv's options into vm (whole option names only: option_style); an unknown option is
// std::invalid_argument naming the option of `visible` (default: opts) it may have meant —
// pass the options a user types when opts also holds hidden ones (positional arguments).
void store_options(const boost::program_options::options_description& opts, int argc, char** argv,
                   boost::program_options::variables_map& vm,
                   const boost::program_options::positional_options_description* positional = nullptr,
                   const boost::program_options::options_description* visible = nullptr);
// Parses argv into vm. Returns false when --help was given (the options were printed): the
// subcommand should return 0.
bool parse_options(const boost::program_options::options_description& opts, int argc, char** argv,
                   boost::program_options::variables_map& vm);
// The config named by --config (or the embedded default) with `extra` overrides, then the
// options', applied.
io::RunConfig config_from_options(const boost::program_options::variables_map& vm,
                                  const std::vector<std::string>& extra = {});
// The layout of a job that names none (no --config, no parallel.pp, .dp or .ep), as
// overrides: the README's default job, PP 4 DualPipe x DP 2, EP 2 (8 ranks), which `duet
// launch` runs and `duet submit` submits (with the user's parallel.schedule, if given). {}
// when the options name a layout.
std::vector<std::string> default_layout(const boost::program_options::variables_map& vm);

}  // namespace duet::app
