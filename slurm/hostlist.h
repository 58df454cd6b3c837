#pragma once
// Slurm hostlist expressions: "n[1-4,7],gpu-[001-128]" <-> the host names they stand for.
//
// Our own parser, checked against `scontrol show hostnames` on the same inputs
// (tests/slurm/hostlist_test.cpp). Grammar, as Slurm writes and reads it:
//   list   := item ("," item)*                  commas inside [...] do not split items
//   item   := text ("[" ranges "]" text)*       several bracket groups multiply out
//   ranges := range ("," range)*
//   range  := number | number "-" number        zero padding of the low end is kept: 001-128
// Compression groups names that differ only in a trailing number with the same prefix and
// the same padding, and writes consecutive numbers as ranges; order of first appearance of
// each prefix is kept, numbers within a prefix are sorted and deduplicated.

#include <string>
#include <string_view>
#include <vector>

namespace duet::slurm {

// Throws std::invalid_argument naming the expression and what is wrong (an unclosed '[',
// a range running backwards, ...).
std::vector<std::string> hostlist_expand(std::string_view expression);

std::string hostlist_compress(const std::vector<std::string>& hosts);

}  // namespace duet::slurm
