#include "model/arena.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>
#include <thread>
#include <vector>

namespace duet::model {

ParamArena::ParamArena(std::vector<TensorSpec> specs, const kernels::Backend& backend)
    : specs_(std::move(specs)), backend_(&backend) {
  int64_t offset = 0;
  for (size_t i = 0; i < specs_.size(); ++i) {
    // Align every tensor to 16 floats (64 bytes) so vector loads never straddle tensors.
    offset = (offset + 15) / 16 * 16;
    specs_[i].offset = offset;
    offset += specs_[i].numel();
    if (!index_.emplace(specs_[i].name, i).second)
      throw std::logic_error("ParamArena: duplicate tensor " + specs_[i].name);
  }
  // One allocation per buffer. The parameters are zeroed on the host, which writes them next
  // (init_parameters, a checkpoint); the gradients by the backend: on a GPU their pages are
  // then made on the device and never cross to the host (10 GB for a model sized for one GPU).
  auto buffer = [&](std::unique_ptr<float[], Free>& mem, std::span<float>& view, bool on_backend) {
    mem = std::unique_ptr<float[], Free>(static_cast<float*>(backend.alloc(sizeof(float) * offset)),
                                         Free{&backend});
    view = std::span<float>(mem.get(), (size_t)offset);
    if (on_backend && backend.vec_fill) {
      backend.vec_fill(view.data(), (long)view.size(), 0.0f);
      backend.synchronize();
    } else {
      std::fill(view.begin(), view.end(), 0.0f);
    }
  };
  buffer(params_mem_, params_, false);
  buffer(grads_mem_, grads_, true);
}

const TensorSpec& ParamArena::spec(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw std::logic_error("ParamArena: no tensor named " + name);
  return specs_[it->second];
}

// On the backend: on a GPU the gradients are device-resident managed memory, and a host fill
// would pull all of them across to the host and back every step. Then a wait, because the
// step's kernels may run on other threads' streams (the engine's second executor), and host
// reductions read what they accumulate.
void ParamArena::zero_grads() {
  if (!backend_->vec_fill) {
    std::fill(grads_.begin(), grads_.end(), 0.0f);
    return;
  }
  backend_->vec_fill(grads_.data(), (long)grads_.size(), 0.0f);
  backend_->synchronize();
}

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

bool is_output_projection(const std::string& name) {
  auto ends = [&](const char* suf) {
    const std::string s(suf);
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  return ends(".wo") || ends(".w2");
}

}  // namespace

namespace {

// What init_value needs of a tensor, computed once per tensor rather than per element.
struct InitKey {
  TensorRole role;
  double std;
  uint64_t key;
};

InitKey init_key(const TensorSpec& spec, const ModelConfig& cfg, uint64_t seed) {
  double std = 0.02;
  if (is_output_projection(spec.name)) std /= std::sqrt(2.0 * cfg.layers);
  return {spec.role, std, splitmix64(seed ^ fnv1a(spec.name))};
}

float keyed_value(const InitKey& k, int64_t i) {
  switch (k.role) {
    case TensorRole::Norm: return 1.0f;
    case TensorRole::State: return 0.0f;
    case TensorRole::Weight: break;
  }
  // Box–Muller on two counter-based uniforms.
  const uint64_t a = splitmix64(k.key + 2 * (uint64_t)i), b = splitmix64(k.key + 2 * (uint64_t)i + 1);
  const double u1 = ((a >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
  const double u2 = (b >> 11) * 0x1.0p-53;
  return (float)(k.std * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
}

}  // namespace

float init_value(const TensorSpec& spec, const ModelConfig& cfg, uint64_t seed, int64_t i) {
  return keyed_value(init_key(spec, cfg, seed), i);
}

// Every element is a function of (tensor, seed, index) alone, so the model is cut into chunks
// of at most 1 Mi elements (a tensor's, in order) that several threads take in turn, with the
// same result (a 2.6 B-parameter model: ~3 min on one thread). Models of fewer elements than
// two chunks stay on the calling thread.
void init_parameters(ParamArena& arena, const ModelConfig& cfg, uint64_t seed) {
  constexpr int64_t kChunk = 1 << 20;
  struct Chunk {
    float* p;
    const InitKey* key;
    int64_t lo, hi;
  };
  std::vector<InitKey> keys;
  keys.reserve(arena.specs().size());
  std::vector<Chunk> chunks;
  for (const auto& s : arena.specs()) {
    keys.push_back(init_key(s, cfg, seed));
    for (int64_t lo = 0; lo < s.numel(); lo += kChunk)
      chunks.push_back({arena.param(s.name), &keys.back(), lo, std::min(s.numel(), lo + kChunk)});
  }
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < chunks.size();) {
      const Chunk& c = chunks[i];
      for (int64_t j = c.lo; j < c.hi; ++j) c.p[j] = keyed_value(*c.key, j);
    }
  };
  const size_t threads = std::min<size_t>({std::max(1u, std::thread::hardware_concurrency()), 32, chunks.size() / 2});
  std::vector<std::thread> pool;
  try {
    for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  } catch (...) {  // no more threads: the ones made and this one share the work
  }
  work();
  for (auto& th : pool) th.join();
}

}  // namespace duet::model
