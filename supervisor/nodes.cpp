#include "supervisor/nodes.h"

#include <algorithm>
#include <stdexcept>

namespace duet::supervisor {

NodePool::NodePool(std::vector<std::string> nodes, int ranks_per_node, double window_s)
    : nodes_(std::move(nodes)), ranks_per_node_(ranks_per_node), window_s_(window_s) {
  if (nodes_.empty() || ranks_per_node_ < 1) throw std::invalid_argument("node pool: no nodes, or ranks_per_node < 1");
}

std::vector<std::string> NodePool::healthy() const {
  std::vector<std::string> out;
  for (const auto& n : nodes_)
    if (!excluded_.count(n)) out.push_back(n);
  return out;
}

std::string NodePool::node_of(int rank, const std::vector<std::string>& nodes) const {
  const int i = rank / ranks_per_node_;
  return rank >= 0 && i < (int)nodes.size() ? nodes[i] : "";
}

bool NodePool::lost(const std::string& node, const std::string& why) {
  if (std::find(nodes_.begin(), nodes_.end(), node) == nodes_.end()) return false;
  return excluded_.emplace(node, why).second;
}

bool NodePool::rank_failed(const std::string& node, double t, const std::string& signature,
                           std::vector<std::string>* restored) {
  for (auto& [n, seen] : seen_on_) std::erase_if(seen, [&](const Failure& x) { return t - x.t > window_s_; });
  auto seen = [&](const std::string& n) {
    const auto it = seen_on_.find(n);
    return it != seen_on_.end() && std::any_of(it->second.begin(), it->second.end(),
                                               [&](const Failure& x) { return x.signature == signature; });
  };
  bool elsewhere = false;
  if (!signature.empty()) {
    for (const auto& n : nodes_) elsewhere = elsewhere || (n != node && seen(n));
    seen_on_[node].push_back({t, signature});
  }
  if (elsewhere) {  // it follows the work: no node's fault, and none stays out for it
    std::vector<std::string> back;
    for (const auto& [n, sigs] : excluded_for_)
      if (std::find(sigs.begin(), sigs.end(), signature) != sigs.end()) back.push_back(n);
    for (const auto& n : back)
      if (restore(n) && restored) restored->push_back(n);
    return false;
  }
  auto& f = failures_[node];
  f.push_back({t, signature});
  std::erase_if(f, [&](const Failure& x) { return t - x.t > window_s_; });
  if (f.size() < 2) return false;
  std::vector<std::string> sigs;
  for (const Failure& x : f) sigs.push_back(x.signature);
  f.clear();
  if (!lost(node, "ranks on it failed twice within fault.node_window_s")) return false;
  excluded_for_[node] = std::move(sigs);
  return true;
}

bool NodePool::restore(const std::string& node) {
  failures_.erase(node);
  excluded_for_.erase(node);
  return excluded_.erase(node) > 0;
}

std::optional<core::Layout> elastic_layout(int slots, const core::Layout& configured, const core::LayoutRules& rules) {
  for (int dp = std::min(configured.dp, slots / std::max(1, configured.pp)); dp >= 1; --dp)
    for (int ep = configured.ep; ep >= 1; --ep) {
      if (configured.ep % ep != 0) continue;
      const core::Layout l{configured.pp, dp, ep};
      if (core::layout_violation(configured.pp * dp, l, rules).empty()) return l;
    }
  return std::nullopt;
}

}  // namespace duet::supervisor
