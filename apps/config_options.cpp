#include "apps/config_options.h"

#include <iostream>

namespace po = boost::program_options;

namespace duet::app {

void add_config_options(po::options_description& opts) {
  opts.add_options()
      ("config,c", po::value<std::string>(), "YAML run config (default: the embedded configs/tiny.yaml)")
      ("set,s", po::value<std::vector<std::string>>()->composing(), "override a key: --set train.steps=50 (repeatable)");
  po::options_description keys("Config keys (each also settable as --<key> VALUE)");
  for (const auto& k : io::config_keys())
    keys.add_options()(k.path.c_str(), po::value<std::string>()->value_name(k.type), k.help.c_str());
  opts.add(keys);
}

bool parse_options(const po::options_description& opts, int argc, char** argv, po::variables_map& vm) {
  po::store(po::command_line_parser(argc, argv).options(opts).run(), vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << opts << "\n";
    return false;
  }
  return true;
}

io::RunConfig config_from_options(const po::variables_map& vm) {
  std::vector<std::string> overrides;
  if (vm.count("set")) overrides = vm["set"].as<std::vector<std::string>>();
  for (const auto& k : io::config_keys())
    if (vm.count(k.path)) overrides.push_back(k.path + "=" + vm[k.path].as<std::string>());
  if (vm.count("config")) return io::load_config(vm["config"].as<std::string>(), overrides);
  return io::parse_config(io::default_config_text(), overrides, "<default config: configs/tiny.yaml>");
}

}  // namespace duet::app
