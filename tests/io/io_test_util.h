#pragma once
// Shared by the io tests: readable failure output for RunConfig comparisons.
#include <ostream>

#include "io/config.h"

namespace duet::io {
// GoogleTest prints a RunConfig that differs as its YAML instead of raw bytes.
inline void PrintTo(const RunConfig& cfg, std::ostream* os) { *os << "\n" << to_yaml(cfg); }
}  // namespace duet::io
