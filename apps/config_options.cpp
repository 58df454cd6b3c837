#include "apps/config_options.h"

#include <algorithm>
#include <iostream>
#include <stdexcept>

namespace po = boost::program_options;

namespace duet::app {

namespace {

// "unrecognised option '--part' (did you mean '--partition'? option names are not abbreviated)": the
// options the text begins, else (for a config key) the key nearest it.
std::string unknown_option_message(const po::options_description& opts, const std::string& option) {
  std::string msg = "unrecognised option '" + option + "'";
  const std::string name = option.substr(std::min(option.find_first_not_of('-'), option.size()));
  if (name.empty() || option.rfind("--", 0) != 0) return msg;
  std::vector<std::string> longer;
  for (const auto& o : opts.options())
    if (o->long_name().rfind(name, 0) == 0) longer.push_back("'--" + o->long_name() + "'");
  if (!longer.empty()) {
    std::string list;
    for (size_t i = 0; i < longer.size() && i < 4; ++i) list += (i ? ", " : "") + longer[i];
    return msg + " (did you mean " + (longer.size() == 1 ? "" : "one of ") + list + (longer.size() > 4 ? ", ..." : "") +
           "? option names are not abbreviated)";
  }
  // A typo of a config key ("--train.setps"), else of one of the command's own options ("--levl").
  std::string key = name.find('.') != std::string::npos ? io::closest_key(name) : "";
  if (key.empty()) {
    std::vector<std::string> names;
    for (const auto& o : opts.options())
      if (!o->long_name().empty() && o->long_name().find('.') == std::string::npos) names.push_back(o->long_name());
    key = io::closest_name(name, names);
  }
  if (!key.empty()) return msg + " (did you mean '--" + key + "'?)";
  return msg + " (--help lists the options)";
}

}  // namespace

int option_style() {
  return po::command_line_style::default_style & ~po::command_line_style::allow_guessing;
}

void add_config_options(po::options_description& opts) {
  opts.add_options()
      ("config,c", po::value<std::string>(), "YAML run config (default: the embedded configs/tiny.yaml)")
      ("set,s", po::value<std::vector<std::string>>()->composing(), "override a key: --set train.steps=50 (repeatable)");
  po::options_description keys("Config keys (each also settable as --<key> VALUE)");
  for (const auto& k : io::config_keys())
    keys.add_options()(k.path.c_str(), po::value<std::string>()->value_name(k.type), k.help.c_str());
  opts.add(keys);
}

void store_options(const po::options_description& opts, int argc, char** argv, po::variables_map& vm,
                   const po::positional_options_description* positional, const po::options_description* visible) {
  po::command_line_parser parser(argc, argv);
  parser.options(opts).style(option_style());
  if (positional) parser.positional(*positional);
  try {
    po::store(parser.run(), vm);
  } catch (const po::unknown_option& e) {
    throw std::invalid_argument(unknown_option_message(visible ? *visible : opts, e.get_option_name()));
  }
}

bool parse_options(const po::options_description& opts, int argc, char** argv, po::variables_map& vm) {
  store_options(opts, argc, argv, vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << opts << "\n";
    return false;
  }
  return true;
}

std::vector<std::string> default_layout(const po::variables_map& vm) {
  // Whether the options set `key` (--<key> VALUE, or --set/-s key=VALUE).
  auto given = [&](const std::string& key) {
    if (vm.count(key)) return true;
    if (vm.count("set"))
      for (const auto& s : vm["set"].as<std::vector<std::string>>())
        if (s.rfind(key + "=", 0) == 0) return true;
    return false;
  };
  if (vm.count("config") || given("parallel.pp") || given("parallel.dp") || given("parallel.ep")) return {};
  std::vector<std::string> layout = {"parallel.pp=4", "parallel.dp=2", "parallel.ep=2"};
  // A schedule the user gave is theirs (a key set twice is an error).
  if (!given("parallel.schedule")) layout.push_back("parallel.schedule=dualpipe");
  return layout;
}

io::RunConfig config_from_options(const po::variables_map& vm, const std::vector<std::string>& extra) {
  std::vector<std::string> overrides = extra;
  if (vm.count("set")) {
    const auto& set = vm["set"].as<std::vector<std::string>>();
    overrides.insert(overrides.end(), set.begin(), set.end());
  }
  for (const auto& k : io::config_keys())
    if (vm.count(k.path)) overrides.push_back(k.path + "=" + vm[k.path].as<std::string>());
  if (vm.count("config")) return io::load_config(vm["config"].as<std::string>(), overrides);
  return io::parse_config(io::default_config_text(), overrides, "<default config: configs/tiny.yaml>");
}

}  // namespace duet::app
