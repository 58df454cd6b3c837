#pragma once
// Command-line options shared by the subcommands that take a run config: --config, --set,
// and one long option per config key (--train.steps 50 ≡ --set train.steps=50).

#include <boost/program_options.hpp>
#include <string>
#include <vector>

#include "io/config.h"

namespace duet::app {

void add_config_options(boost::program_options::options_description& opts);
// The config named by --config (or the embedded default) with every override applied.
io::RunConfig config_from_options(const boost::program_options::variables_map& vm);

}  // namespace duet::app
