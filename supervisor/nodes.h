#pragma once
// Which nodes the next attempt runs on, and in what layout — pure rules, unit-tested
// (tests/supervisor/nodes_test.cpp). A node is a host mpirun/srun places ranks on or, on one
// machine, a logical node of `launch.ranks_per_node` ranks. Ranks are placed in order: rank r
// of an attempt runs on the (r / ranks_per_node)-th node the attempt uses.
//
// A node is excluded at once when it is lost (every rank on it died together, or fell silent),
// when the resource manager reports it down, or when single ranks on it failed twice within
// `window_s`. The next attempt keeps PP (and EP where it still divides), and takes the
// largest valid DP that fits on the healthy nodes; the global batch stays the same (more
// micro-batches per pipeline), so training is the same. An excluded node that comes back
// (re-enabled) is used again at the next attempt and the layout grows back.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/layout.h"

namespace duet::supervisor {

class NodePool {
 public:
  NodePool(std::vector<std::string> nodes, int ranks_per_node, double window_s);

  const std::vector<std::string>& all() const { return nodes_; }
  int ranks_per_node() const { return ranks_per_node_; }
  std::vector<std::string> healthy() const;  // in order
  // Excluded nodes and why.
  const std::map<std::string, std::string>& excluded() const { return excluded_; }

  // The node of rank `rank` in an attempt that runs on `nodes` ("" past the last).
  std::string node_of(int rank, const std::vector<std::string>& nodes) const;

  // The node is gone (all its ranks died or fell silent, or it is reported down): excluded.
  // Returns true if it was not excluded before.
  bool lost(const std::string& node, const std::string& why);
  // A single rank on `node` failed at time t; the second within window_s excludes the node.
  // Returns true when this excluded it. `signature` says which failure it was (the step it
  // struck at; "" for one before the attempt's first step, a set-up failure, which is a
  // node's classic symptom): a failure with the signature of one seen on another node within
  // window_s follows the work,
  // not the node (a bug, bad data) — it counts against no node, and nodes excluded for
  // failures of that signature come back (`restored`), so a crash loop ends as one (the
  // supervisor gives up) instead of excluding every node in turn.
  bool rank_failed(const std::string& node, double t, const std::string& signature = "",
                   std::vector<std::string>* restored = nullptr);
  // Brings an excluded node back (it answers again, or a person re-enabled it).
  bool restore(const std::string& node);

 private:
  std::vector<std::string> nodes_;
  int ranks_per_node_;
  double window_s_;
  std::map<std::string, std::string> excluded_;
  struct Failure {
    double t;
    std::string signature;
  };
  std::map<std::string, std::vector<Failure>> failures_;       // in the window, per node
  std::map<std::string, std::vector<Failure>> seen_on_;        // signatures seen (within the window), per node
  std::map<std::string, std::vector<std::string>> excluded_for_;  // the signatures that excluded a node
};

// The layout of an attempt with `slots` ranks available: the configured PP, the largest DP
// (≤ the configured one) such that PP × DP fits and the layout is valid, and the largest EP
// dividing the configured EP that the layout allows. nullopt when not even DP 1 fits.
std::optional<core::Layout> elastic_layout(int slots, const core::Layout& configured, const core::LayoutRules& rules);

}  // namespace duet::supervisor
