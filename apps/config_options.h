#pragma once
// Command-line options shared by the subcommands: parsing with --help, and for those that
// take a run config, --config, --set and one long option per config key
// (--train.steps 50 ≡ --set train.steps=50).

#include <boost/program_options.hpp>
#include <string>
#include <vector>

#include "io/config.h"

namespace duet::app {

void add_config_options(boost::program_options::options_description& opts);

// Parses argv into vm. Returns false when --help was given (the options were printed): the
// subcommand should return 0.
bool parse_options(const boost::program_options::options_description& opts, int argc, char** argv,
                   boost::program_options::variables_map& vm);
// The config named by --config (or the embedded default) with every override applied.
io::RunConfig config_from_options(const boost::program_options::variables_map& vm);

}  // namespace duet::app
