#pragma once
// RunConfig: the one validated description of a run, read from YAML (yaml-cpp).
//
// Every key lives in one table (io/config_keys.cpp) that drives parsing, range checks,
// to_yaml, the CLI's long options and their help. The struct members below are named
// exactly like the YAML keys: `model.moe.experts` in YAML is `cfg.model.moe.experts` in C++.
// A default-constructed RunConfig holds the documented defaults.
//
// Typical use:
//   RunConfig cfg = load_config("configs/tiny.yaml", {"train.steps=5"});
//   RunConfig cfg = parse_config(default_config_text(), overrides, "<default config>");
// Both throw ConfigError with a message that names the key, the value and what is allowed.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/layout.h"
#include "core/schedule_kind.h"

namespace duet::io {

// A user error in a configuration: bad key, type, range, file or combination of keys.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The config key nearest a mistyped one ("train.setps" -> "train.steps", "train.experts" ->
// "model.moe.experts"), or "" when none is close: the hint of an unknown key.
std::string closest_key(const std::string& path);
// The name among `names` nearest a mistyped one by the same rule ("levl" -> "level"), or "".
std::string closest_name(const std::string& typed, const std::vector<std::string>& names);
// A ConfigError that every rank of a job throws at the same point, from a decision they took
// together (a collective): the ranks can end with the usage exit code instead of aborting the
// job like a crash, which a supervisor would restart.
struct AgreedConfigError : ConfigError {
  using ConfigError::ConfigError;
};

// parallel.schedule. Names in YAML: 1f1b | zb1p | dualpipe | dualpipev (core/schedule_kind.h).
using core::ScheduleKind;

// model.attention. mha: multi-head attention, head size d_model / heads (what `duet train`
// runs); mla: DeepSeek's multi-head latent attention, dimensions in model.mla.
enum class AttentionKind { kMHA, kMLA };
// model.precision: the number format of the GEMMs of linear layers (the CPU trainer: fp32).
enum class Precision { kFP32, kBF16, kFP8 };
// Who an injected fault strikes (runtime.fail_scope): runtime.fail_rank, or every rank of its
// logical node (launch.ranks_per_node).
enum class FailScope { Rank, Node };
// Where an injected fault strikes (runtime.fail_at): at the start of the step, while the
// rank writes its checkpoint shard of that step, or in rank 0's commit of it (after COMMITTED
// is written, before the checkpoint is moved into place).
enum class FailAt { Step, Save, Commit };

// In-memory snapshots (checkpoint.memory, docs/fault-tolerance.md): auto = on under `duet
// launch` when the memory folder has room (else a warning and HDF5 alone), off for a bare
// `duet train` (nothing restarts it within the job); on = always, and a run that cannot keep
// them refuses to start; off = never.
enum class MemorySnapshots { Auto, On, Off };

// runtime.device: where a rank's model computes. cuda: one GPU through the CUDA backend
// (kernels/cuda), its parameters, gradients, optimizer state and activations in managed memory.
enum class Device { Cpu, Cuda };

// runtime.data_plane: how a pipeline's activations and gradients travel between ranks. mpi:
// through Open MPI (host or managed memory, any device, several ranks per GPU); nccl: GPU to
// GPU through NCCL, one GPU per rank (runtime/comm_nccl.h), with runtime.device: cuda.
enum class DataPlane { Mpi, Nccl };

struct RunSection {
  std::string name = "tiny";  // "" = a timestamp YYYYmmdd-HHMMSS, chosen by make_run_dir
  std::string dir = "runs";   // the run directory is <dir>/<name>
  std::string id;             // lineage id (io/run_dir.h); "" = the run directory's, or a new one
  int lock_lease_s = 60;      // a run lock not renewed for this long, from another host, is stale
  bool operator==(const RunSection&) const = default;
};

struct MoeSection {
  int experts = 8;         // routed experts per MoE layer
  int top_k = 2;           // experts chosen per token, ≤ experts
  int shared_experts = 1;  // always-on experts per MoE layer
  int d_expert = 128;      // hidden width of one expert's SwiGLU
  double bias_update_rate = 1e-3;  // aux-loss-free balancing: bias step per update
  // Group-limited routing: experts form `groups` equal groups (DeepSeek-V3: one per node of
  // the EP group) and a token picks its top_k among at most `group_limit` groups. 1 and 1 =
  // plain top-k, the only routing `duet train` runs.
  int groups = 1;
  int group_limit = 1;
  bool operator==(const MoeSection&) const = default;
};

// Multi-head latent attention (DeepSeek-V2/V3). Used when model.attention is mla; 0 = unset.
struct MlaSection {
  int q_lora_rank = 0;       // compressed query width; 0 = queries are not compressed
  int kv_lora_rank = 0;      // compressed key-value width
  int qk_nope_head_dim = 0;  // per-head query/key width without RoPE
  int qk_rope_head_dim = 0;  // per-head query/key width with RoPE (the key part is shared by heads)
  int v_head_dim = 0;        // per-head value width
  bool operator==(const MlaSection&) const = default;
};

struct ModelSection {
  int vocab = 256;
  int d_model = 128;
  int layers = 4;
  int heads = 4;
  int dense_layers = 1;  // the first dense_layers layers use a dense SwiGLU FFN, the rest MoE
  int d_ff = 384;        // hidden width of the dense FFN
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  AttentionKind attention = AttentionKind::kMHA;
  int mtp_depth = 0;  // multi-token prediction modules (DeepSeek-V3: 1); 0 = off
  Precision precision = Precision::kFP32;
  MoeSection moe;
  MlaSection mla;
  bool operator==(const ModelSection&) const = default;
};

struct ParallelSection {
  int pp = 1;  // pipeline stages
  int dp = 1;  // data-parallel replicas
  int ep = 1;  // expert-parallel group size; divides dp and model.moe.experts
  ScheduleKind schedule = ScheduleKind::DualPipe;
  bool operator==(const ParallelSection&) const = default;
};

struct TrainSection {
  int steps = 300;
  std::uint64_t seed = 1234;
  int seq_len = 128;
  int global_batch = 16;     // sequences per optimizer step, over all data-parallel ranks
  int micro_batch_size = 1;  // sequences per micro-batch
  double lr = 3e-3;          // peak learning rate, reached after warmup_steps
  double min_lr = lr / 10;   // cosine floor; also lr / 10 when absent from the YAML
  int warmup_steps = 20;
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double grad_clip = 1.0;  // global gradient-norm clip; 0 = off
  int log_every = 10;
  int eval_every = 100;  // 0 = evaluate only at the end
  int eval_batches = 8;
  int stop_at = 0;  // stop after this step as if interrupted (for resume tests); 0 = never
  bool operator==(const TrainSection&) const = default;
};

struct DataSection {
  std::string path = "/usr/share/games/fortunes";  // a file, or a directory of text files
  double val_fraction = 0.05;
  bool operator==(const DataSection&) const = default;
};

struct CheckpointSection {
  std::string dir;  // "" = <run dir>/checkpoints
  int every = 0;    // steps between checkpoints; 0 = never
  int keep = 3;     // newest checkpoints kept
  bool async = true;
  bool resume = true;  // resume from the newest valid checkpoint when one exists
  bool allow_changes = false;  // resume despite changed optimizer keys, global batch or seed (io/resume_policy.h)
  MemorySnapshots memory = MemorySnapshots::Auto;  // in-memory snapshots on the node and a peer node
  int memory_every = 1;      // steps between in-memory snapshots
  std::string memory_dir;    // "" = $DUET_MEMORY_DIR, else /dev/shm
  std::uint64_t memory_limit = 0;  // bytes the snapshots may use per node; 0 = the folder's free space
  bool operator==(const CheckpointSection&) const = default;
};

struct RuntimeSection {
  bool overlap = true;  // overlap communication with compute
  int threads = 0;      // compute threads; 0 = auto
  bool trace = true;    // write per-rank event traces
  int comm_delay_us = 0;  // artificial delay added to each message (testing overlap)
  int fail_rank = -1;     // fault injection: this rank fails at fail_step (-1 = none)
  int fail_step = 0;
  int fail_signal = 0;    // 0: the failure is an exception; else this signal (9 kill, 19 stop)
  int fail_attempts = 1;  // attempts of a supervised job that inject it (a restart runs clean)
  bool fail_nan = false;  // the failure is a non-finite loss on that rank instead
  FailAt fail_at = FailAt::Step;
  FailScope fail_scope = FailScope::Rank;
  std::string fail_plan;  // one fault per attempt instead (io/fault_plan.h); "" = none
  // Bytes the ranks of this machine may use together; 0 = what the machine has available
  // (MemAvailable, or the cgroup's limit if lower). YAML accepts 8GiB, 512MiB, 2.5G.
  std::uint64_t memory_limit = 0;
  Device device = Device::Cpu;  // where the model computes
  DataPlane data_plane = DataPlane::Mpi;
  bool operator==(const RuntimeSection&) const = default;
};

// How the supervisor (`duet launch`) watches a job and recovers it (docs/fault-tolerance.md).
struct FaultSection {
  double hang_timeout_s = 0;    // no progress for this long is a hang; 0 = max(10 × median step, 60 s)
  double setup_timeout_s = 900; // launch to the first completed step
  double save_timeout_s = 600;  // one checkpoint save; also the launcher outliving its ranks' end
  double backoff_s = 10;        // first restart delay; doubles to 300 s, reset by progress
  int max_restarts = 3;         // restarts in a row without progress (a new checkpoint or snapshot) before giving up
  int straggler_steps = 5;      // steps in a row at >= 1.5x the peers' median that name a straggler
  double host_timeout_s = 1.0;  // a rank on another host silent this long: its host is lost
  double node_window_s = 600;   // single-rank failures on one node twice within this: node excluded
  bool operator==(const FaultSection&) const = default;
};

// How `duet launch` places ranks.
struct LaunchSection {
  // Ranks per node. On one machine > 0 makes logical nodes of this many ranks, so an elastic
  // job (a node lost → the same training on the nodes left) runs and is tested here; 0 = the
  // hosts mpirun places ranks on.
  int ranks_per_node = 0;
  bool operator==(const LaunchSection&) const = default;
};

// What `duet simulate` assumes of failures and checkpoints at scale, for its expected goodput
// (report/goodput_model.h, docs/fault-tolerance.md). The checkpoint interval it evaluates is
// checkpoint.every (0 = the Young/Daly optimum).
struct GoodputSection {
  // Llama 3 405B: 419 unexpected interruptions on 16,384 GPUs in 54 days.
  double interruptions_per_gpu_day = 419.0 / (16384.0 * 54.0);
  double restart_s = 300;             // fault -> training again (detection ... first step), without lost steps
  double checkpoint_save_s = 0;       // blocking part of one save; 0 = checkpoint bytes / checkpoint_write_gbps
  double checkpoint_write_gbps = 1000;  // aggregate write bandwidth of the checkpoint storage, GB/s
  bool operator==(const GoodputSection&) const = default;
};

// The machines a run is planned for. `duet simulate` reads all of it; `duet train` only gpus.
// Defaults describe one H800 node (DeepSeek-V3 report §3.1, ISCA '25 "Insights into
// DeepSeek-V3"); the efficiencies are measured fractions of peak whose sources are in
// docs/cost-model.md (they equal sched::Efficiencies{}).
struct ClusterSection {
  int gpus = 1;
  int gpus_per_node = 8;
  std::string gpu = "H800";
  double bf16_tflops = 989;    // dense BF16 tensor-core peak per GPU
  double fp8_tflops = 1979;    // dense FP8 tensor-core peak per GPU
  double hbm_gib = 80;         // HBM per GPU
  double hbm_tbps = 3.35;      // HBM bandwidth, TB/s
  int sms = 132;               // streaming multiprocessors per GPU
  int comm_sms = 20;           // SMs given to all-to-all kernels; compute gets the rest
  double nvlink_gbps = 160;    // intra-node bandwidth per GPU, GB/s, one direction
  double ib_gbps = 40;         // inter-node bandwidth per GPU (one NIC), GB/s, effective
  double nvlink_latency_us = 3;
  double ib_latency_us = 5;
  double gemm_efficiency = 0.57;       // forward and input-gradient GEMMs, fraction of peak on compute SMs
  double wgrad_efficiency = 0.35;      // weight-gradient GEMMs (accumulating into FP32)
  double attention_fwd_efficiency = 0.66;
  double attention_bwd_efficiency = 0.48;
  double hbm_efficiency = 0.5;         // memory-bound kernels, fraction of HBM bandwidth
  bool operator==(const ClusterSection&) const = default;
};

struct RunConfig {
  RunSection run;
  ModelSection model;
  ParallelSection parallel;
  TrainSection train;
  DataSection data;
  CheckpointSection checkpoint;
  RuntimeSection runtime;
  FaultSection fault;
  LaunchSection launch;
  GoodputSection goodput;
  ClusterSection cluster;
  bool operator==(const RunConfig&) const = default;
};

// Reads a YAML file, applies overrides ("a.b=c", as from --set) and validates.
RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides = {});

// Same from text; source_name prefixes error locations ("configs/tiny.yaml:12:3: ...").
RunConfig parse_config(std::string_view yaml_text, const std::vector<std::string>& overrides = {},
                       std::string_view source_name = "<config>");

// The text of configs/tiny.yaml, embedded at build time (works from any directory).
std::string default_config_text();

// The resolved config, every key, in table order. parse_config(to_yaml(c)) == c.
std::string to_yaml(const RunConfig& cfg);

// Range checks of every key plus the rules that join keys (d_model % heads, ep | dp, ...).
// parse_config calls it; call it again after changing a RunConfig in code.
void validate(const RunConfig& cfg);

// What the config fixes that every parallel layout must fit (core/layout.h), and the layout it
// asks for: valid_layouts(world, layout_rules(cfg)) lists the alternatives.
core::LayoutRules layout_rules(const RunConfig& cfg);
core::Layout configured_layout(const RunConfig& cfg);

// Throws ConfigError naming the first key set to something the CPU trainer (`duet train`)
// cannot run: model.attention=mla, model.mtp_depth > 0, model.precision other than fp32,
// group-limited routing (model.moe.group_limit < model.moe.groups). `duet simulate` accepts
// them all; the trainer calls this before building the model.
void require_trainable(const RunConfig& cfg);

// Stable hex digest (FNV-1a 64 of to_yaml), e.g. for checkpoint manifests.
std::string config_hash(const RunConfig& cfg);

// One row per key, in table order; the CLI makes `--<path> VALUE` from each.
struct ConfigKey {
  std::string path;           // "train.steps"
  std::string type;           // int | uint64 | float | bool | string | a|b|c (enum choices)
  std::string help;           // "optimizer steps; an integer ≥ 1 (default 300)"
  std::string allowed;        // "an integer ≥ 1"
  std::string default_value;  // "300", as written by to_yaml ("train.lr / 10" for derived)
};
const std::vector<ConfigKey>& config_keys();

// Splits "a.b=c" into {"a.b", "c"}; throws ConfigError when there is no '=' or no key.
std::pair<std::string, std::string> split_override(std::string_view text);

}  // namespace duet::io
