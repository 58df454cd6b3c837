#pragma once
// One number printed with a printf format, for the renderers and the report builders.
#include <cstdio>
#include <string>

namespace duet::report {

inline std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

}  // namespace duet::report
