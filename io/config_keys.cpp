// The key table: one row per configuration key, and the per-type parsing, range checking
// and formatting that every row shares. To add a key: add the member to io/config.h and one
// row below; parsing, to_yaml, validation, the CLI option and its help follow from the row.
#include <charconv>
#include <cctype>
#include <climits>
#include <cmath>
#include <type_traits>
#include <unordered_map>

#include "io/config_table.h"
#include "io/read_limited.h"

namespace duet::io {
namespace detail {
namespace {

// ---- ranges, as short constructors so each table row reads like the spec -----------------

Range at_least(double lo) { return {.has_lo = true, .lo = lo}; }
Range above(double lo) { return {.has_lo = true, .lo_open = true, .lo = lo}; }
Range between(double lo, double hi) { return {.has_lo = true, .has_hi = true, .lo = lo, .hi = hi}; }
Range from_below(double lo, double hi) {  // lo ≤ x < hi
  return {.has_lo = true, .has_hi = true, .hi_open = true, .lo = lo, .hi = hi};
}
Range above_up_to(double lo, double hi) {  // lo < x ≤ hi
  return {.has_lo = true, .has_hi = true, .lo_open = true, .lo = lo, .hi = hi};
}

const std::vector<std::string>& schedule_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (auto k : {ScheduleKind::OneFOneB, ScheduleKind::ZB1P, ScheduleKind::DualPipe, ScheduleKind::DualPipeV})
      v.push_back(core::format_schedule_kind(k));
    return v;
  }();
  return names;  // in ScheduleKind order
}

// The YAML names of each enum key type, in enum order; make_key finds them by overload.
const std::vector<std::string>& enum_names(ScheduleKind) { return schedule_names(); }
const std::vector<std::string>& enum_names(AttentionKind) {
  static const std::vector<std::string> names = {"mha", "mla"};
  return names;
}
const std::vector<std::string>& enum_names(Precision) {
  static const std::vector<std::string> names = {"fp32", "bf16", "fp8"};
  return names;
}
const std::vector<std::string>& enum_names(FailScope) {
  static const std::vector<std::string> names = {"rank", "node"};
  return names;
}
const std::vector<std::string>& enum_names(MemorySnapshots) {
  static const std::vector<std::string> names = {"auto", "on", "off"};
  return names;
}
const std::vector<std::string>& enum_names(Device) {
  static const std::vector<std::string> names = {"cpu", "cuda"};
  return names;
}
const std::vector<std::string>& enum_names(DataPlane) {
  static const std::vector<std::string> names = {"mpi", "nccl"};
  return names;
}
const std::vector<std::string>& enum_names(FailAt) {
  static const std::vector<std::string> names = {"step", "save", "commit"};
  return names;
}

// ---- building one row from a member accessor ---------------------------------------------

// What a row may add to its type: a range, a derived default, "must not be empty".
struct KeyOptions {
  KeyOptions() = default;
  KeyOptions(Range r) : range(r) {}  // NOLINT: implicit, so a row can pass at_least(1)
  KeyOptions(Range r, DerivedDefault d) : range(r), derived(std::move(d)) {}
  Range range;
  DerivedDefault derived;
  bool non_empty = false;  // String keys: "" is not allowed
  bool bytes = false;      // UInt64 keys: a byte count, units allowed
};

KeyOptions byte_count() {
  KeyOptions o;
  o.bytes = true;
  return o;
}

KeyOptions non_empty_string() {
  KeyOptions o;
  o.non_empty = true;
  return o;
}

// `field` is a generic lambda returning a reference to the member, so one accessor serves
// both reading (const RunConfig&) and writing (RunConfig&).
template <class Field>
KeyDef make_key(const char* path, Field field, std::string help, KeyOptions opt = {}) {
  using T = std::remove_cvref_t<decltype(field(std::declval<RunConfig&>()))>;
  KeyDef k;
  k.path = path;
  k.help = std::move(help);
  k.range = opt.range;
  k.derived = std::move(opt.derived);
  k.non_empty = opt.non_empty;
  k.bytes = opt.bytes;
  if constexpr (std::is_same_v<T, int>) {
    k.kind = KeyKind::Int;
    k.get = [field](const RunConfig& c) { return Value{std::int64_t{field(c)}}; };
    k.set = [field](RunConfig& c, const Value& v) { field(c) = static_cast<int>(std::get<std::int64_t>(v)); };
  } else if constexpr (std::is_same_v<T, std::uint64_t>) {
    k.kind = KeyKind::UInt64;
    k.get = [field](const RunConfig& c) { return Value{std::uint64_t{field(c)}}; };
    k.set = [field](RunConfig& c, const Value& v) { field(c) = std::get<std::uint64_t>(v); };
  } else if constexpr (std::is_same_v<T, double>) {
    k.kind = KeyKind::Float;
    k.get = [field](const RunConfig& c) { return Value{double{field(c)}}; };
    k.set = [field](RunConfig& c, const Value& v) { field(c) = std::get<double>(v); };
  } else if constexpr (std::is_same_v<T, bool>) {
    k.kind = KeyKind::Bool;
    k.get = [field](const RunConfig& c) { return Value{bool{field(c)}}; };
    k.set = [field](RunConfig& c, const Value& v) { field(c) = std::get<bool>(v); };
  } else if constexpr (std::is_same_v<T, std::string>) {
    k.kind = KeyKind::String;
    k.get = [field](const RunConfig& c) { return Value{std::string{field(c)}}; };
    k.set = [field](RunConfig& c, const Value& v) { field(c) = std::get<std::string>(v); };
  } else if constexpr (std::is_enum_v<T>) {
    k.kind = KeyKind::Enum;
    k.choices = enum_names(T{});
    k.get = [field](const RunConfig& c) { return Value{enum_names(T{}).at(static_cast<std::size_t>(field(c)))}; };
    k.set = [field](RunConfig& c, const Value& v) {
      const auto& names = enum_names(T{});
      for (std::size_t i = 0; i < names.size(); ++i)
        if (names[i] == std::get<std::string>(v)) field(c) = static_cast<T>(i);
    };
  } else {
    static_assert(sizeof(T) == 0, "config key of an unsupported type");
  }
  return k;
}

// The member path is written once and becomes both the YAML path and the accessor.
#define DUET_KEY(member) #member, [](auto& c) -> auto& { return c.member; }

std::vector<KeyDef> build_table() {
  // Rows are grouped by section, in the order to_yaml writes them; a section's own keys
  // come before its subsections (model.* before model.moe.*).
  return {
      make_key(DUET_KEY(run.name), "run name; the run directory is <run.dir>/<run.name>; \"\" = a timestamp"),
      make_key(DUET_KEY(run.dir), "folder that holds run directories", non_empty_string()),
      make_key(DUET_KEY(run.id), "the run's lineage id, recorded in config.yaml, metrics.jsonl and every checkpoint; "
                                 "\"\" = adopt the run directory's, or a new one; letters, digits, - and _ (at most 64)"),
      make_key(DUET_KEY(run.lock_lease_s),
               "seconds after which the lock of a job on another host that stopped renewing it is stale",
               at_least(1)),

      make_key(DUET_KEY(model.vocab), "vocabulary size (byte-level data uses 256)", at_least(2)),
      make_key(DUET_KEY(model.d_model), "model width; divisible by model.heads, head size even", at_least(8)),
      make_key(DUET_KEY(model.layers), "transformer layers", at_least(1)),
      make_key(DUET_KEY(model.heads), "attention heads", at_least(1)),
      make_key(DUET_KEY(model.dense_layers), "leading layers with a dense FFN (the rest are MoE); ≤ model.layers",
               at_least(0)),
      make_key(DUET_KEY(model.d_ff), "hidden width of the dense SwiGLU FFN", at_least(1)),
      make_key(DUET_KEY(model.rope_theta), "RoPE base frequency", above(0)),
      make_key(DUET_KEY(model.norm_eps), "RMSNorm epsilon", above(0)),
      make_key(DUET_KEY(model.attention), "attention: mha (head size d_model / heads) or mla (latent, model.mla.*)"),
      make_key(DUET_KEY(model.mtp_depth), "multi-token prediction modules after the last layer; 0 = off",
               between(0, 8)),
      make_key(DUET_KEY(model.precision),
               "number format of the GEMMs of linear layers: fp32; bf16 with runtime.device: cuda (FP32 "
               "accumulation, master weights and optimizer); fp8 is simulated only"),
      make_key(DUET_KEY(model.moe.experts), "routed experts per MoE layer", at_least(1)),
      make_key(DUET_KEY(model.moe.top_k), "routed experts chosen per token; ≤ model.moe.experts", at_least(1)),
      make_key(DUET_KEY(model.moe.shared_experts), "always-active experts per MoE layer", between(0, 8)),
      make_key(DUET_KEY(model.moe.d_expert), "hidden width of one expert's SwiGLU", at_least(1)),
      make_key(DUET_KEY(model.moe.bias_update_rate),
               "auxiliary-loss-free balancing: step of the per-expert routing bias", at_least(0)),
      make_key(DUET_KEY(model.moe.groups), "expert groups for group-limited routing; divides model.moe.experts",
               at_least(1)),
      make_key(DUET_KEY(model.moe.group_limit), "groups a token's experts may come from; ≤ model.moe.groups",
               at_least(1)),
      make_key(DUET_KEY(model.mla.q_lora_rank), "MLA compressed query width; 0 = queries not compressed", at_least(0)),
      make_key(DUET_KEY(model.mla.kv_lora_rank), "MLA compressed key-value width; ≥ 1 when model.attention is mla",
               at_least(0)),
      make_key(DUET_KEY(model.mla.qk_nope_head_dim), "MLA per-head query/key width without RoPE", at_least(0)),
      make_key(DUET_KEY(model.mla.qk_rope_head_dim), "MLA per-head query/key width with RoPE; even", at_least(0)),
      make_key(DUET_KEY(model.mla.v_head_dim), "MLA per-head value width", at_least(0)),

      make_key(DUET_KEY(parallel.pp), "pipeline-parallel ranks", at_least(1)),
      make_key(DUET_KEY(parallel.dp), "data-parallel ranks", at_least(1)),
      make_key(DUET_KEY(parallel.ep), "expert-parallel ranks; divides parallel.dp and model.moe.experts",
               at_least(1)),
      make_key(DUET_KEY(parallel.schedule), "pipeline schedule"),

      make_key(DUET_KEY(train.steps), "optimizer steps", at_least(1)),
      make_key(DUET_KEY(train.seed), "seed of initialization and data sampling"),
      make_key(DUET_KEY(train.seq_len), "tokens per sequence", at_least(2)),
      make_key(DUET_KEY(train.global_batch), "sequences per optimizer step over all data-parallel ranks",
               at_least(1)),
      make_key(DUET_KEY(train.micro_batch_size), "sequences per micro-batch; divides train.global_batch",
               at_least(1)),
      make_key(DUET_KEY(train.lr), "peak learning rate (after warm-up)", above(0)),
      make_key(DUET_KEY(train.min_lr), "learning rate at the end of the cosine decay; ≤ train.lr",
               {at_least(0), DerivedDefault{"train.lr / 10", [](RunConfig& c) { c.train.min_lr = c.train.lr / 10; }}}),
      make_key(DUET_KEY(train.warmup_steps), "steps of linear learning-rate warm-up", at_least(0)),
      make_key(DUET_KEY(train.weight_decay), "AdamW decoupled weight decay", at_least(0)),
      make_key(DUET_KEY(train.beta1), "AdamW first-moment decay", from_below(0, 1)),
      make_key(DUET_KEY(train.beta2), "AdamW second-moment decay", from_below(0, 1)),
      make_key(DUET_KEY(train.eps), "AdamW epsilon", above(0)),
      make_key(DUET_KEY(train.grad_clip), "clip the global gradient norm to this; 0 = off", at_least(0)),
      make_key(DUET_KEY(train.log_every), "steps between progress lines", at_least(1)),
      make_key(DUET_KEY(train.eval_every), "steps between validation passes; 0 = only at the end", at_least(0)),
      make_key(DUET_KEY(train.eval_batches), "global batches per validation pass", at_least(1)),
      make_key(DUET_KEY(train.stop_at), "stop after this step as if interrupted; 0 = run to train.steps",
               at_least(0)),

      make_key(DUET_KEY(data.path), "a text file, or a directory whose regular files are concatenated",
               non_empty_string()),
      make_key(DUET_KEY(data.val_fraction), "fraction of each file held out for validation (its tail)",
               above_up_to(0, 0.5)),

      make_key(DUET_KEY(checkpoint.dir), "checkpoint folder; \"\" = <run dir>/checkpoints"),
      make_key(DUET_KEY(checkpoint.every), "steps between checkpoints; 0 = never", at_least(0)),
      make_key(DUET_KEY(checkpoint.keep), "newest checkpoints to keep", at_least(1)),
      make_key(DUET_KEY(checkpoint.async), "write checkpoints in the background"),
      make_key(DUET_KEY(checkpoint.resume), "resume from the newest valid checkpoint if there is one"),
      make_key(DUET_KEY(checkpoint.allow_changes),
               "resume even if optimizer keys, train.global_batch or train.seed differ from the checkpoint's run"),
      make_key(DUET_KEY(checkpoint.memory),
               "in-memory snapshots of every rank on its node and a peer node: auto = under duet launch when "
               "there is room, on = required, off = never"),
      make_key(DUET_KEY(checkpoint.memory_every), "steps between in-memory snapshots", at_least(1)),
      make_key(DUET_KEY(checkpoint.memory_dir), "folder of the in-memory snapshots; \"\" = $DUET_MEMORY_DIR or /dev/shm"),
      make_key(DUET_KEY(checkpoint.memory_limit),
               "bytes the in-memory snapshots may use per node; 0 = the free space of checkpoint.memory_dir",
               byte_count()),

      make_key(DUET_KEY(runtime.device),
               "where the model computes: cpu, or cuda (one GPU per rank's model; several ranks may share one)"),
      make_key(DUET_KEY(runtime.data_plane),
               "how pipeline activations and gradients travel: mpi, or nccl (GPU to GPU, one GPU per rank, "
               "runtime.device: cuda)"),
      make_key(DUET_KEY(runtime.overlap), "overlap communication with computation"),
      make_key(DUET_KEY(runtime.threads), "compute threads per rank; 0 = automatic", at_least(0)),
      make_key(DUET_KEY(runtime.trace), "record per-rank event traces"),
      make_key(DUET_KEY(runtime.comm_delay_us), "artificial delay per message in microseconds (testing)",
               at_least(0)),
      make_key(DUET_KEY(runtime.fail_rank), "fault injection (testing): this rank fails at runtime.fail_step; -1 = none",
               at_least(-1)),
      make_key(DUET_KEY(runtime.fail_step), "fault injection (testing): the step at which runtime.fail_rank fails",
               at_least(0)),
      make_key(DUET_KEY(runtime.fail_signal),
               "fault injection (testing): 0 = an exception; else the signal the rank sends itself (9 kill, 19 stop)",
               between(0, 64)),
      make_key(DUET_KEY(runtime.fail_nan), "fault injection (testing): the failure is a non-finite loss instead"),
      make_key(DUET_KEY(runtime.fail_at),
               "fault injection (testing): where it strikes: step (its start), save (while runtime.fail_rank writes "
               "its checkpoint shard of runtime.fail_step), commit (in rank 0's commit of that checkpoint)"),
      make_key(DUET_KEY(runtime.fail_scope),
               "fault injection (testing): rank (runtime.fail_rank) or node (every rank of its node, "
               "launch.ranks_per_node)"),
      make_key(DUET_KEY(runtime.fail_plan),
               "fault injection (testing): one fault per attempt, attempt:kind:rank:step,... (io/fault_plan.h); "
               "\"\" = none"),
      make_key(DUET_KEY(runtime.fail_attempts),
               "fault injection (testing): the first N attempts of a supervised job fail; later ones run clean",
               at_least(1)),

      make_key(DUET_KEY(runtime.memory_limit),
               "bytes this machine's ranks may use together, checked before allocating; 0 = what the machine has",
               byte_count()),

      make_key(DUET_KEY(fault.hang_timeout_s),
               "no progress for this long is a hang (seconds); 0 = max(10 x median step time, 60 s)", at_least(0)),
      make_key(DUET_KEY(fault.setup_timeout_s), "seconds from launch to the first completed step", above(0)),
      make_key(DUET_KEY(fault.save_timeout_s),
               "seconds one checkpoint save may take; also how long the launcher may outlive its ranks' end", above(0)),
      make_key(DUET_KEY(fault.backoff_s), "first restart delay (seconds); doubles to 300, reset by progress",
               at_least(0)),
      make_key(DUET_KEY(fault.max_restarts), "restarts in a row without progress (a new checkpoint, or a restart from a newer in-memory snapshot) before the next failure gives up", at_least(0)),
      make_key(DUET_KEY(fault.straggler_steps), "steps in a row at >= 1.5x the peers' median step that name a straggler",
               at_least(1)),
      make_key(DUET_KEY(fault.host_timeout_s),
               "seconds without a heartbeat from every rank of a node (another host, or a logical node) before the "
               "node counts as lost",
               at_least(0.1)),
      make_key(DUET_KEY(fault.node_window_s),
               "a node on which single ranks fail twice within this many seconds is excluded", at_least(0)),

      make_key(DUET_KEY(launch.ranks_per_node),
               "ranks per node; > 0 makes logical nodes on one machine (elastic jobs: a lost node is left out and "
               "the job continues on the others); 0 = the hosts mpirun uses",
               at_least(0)),

      make_key(DUET_KEY(goodput.interruptions_per_gpu_day),
               "duet simulate: expected interruptions per GPU and day (Llama 3: 419 / (16384 GPUs x 54 days)); "
               "0 = no failures",
               at_least(0)),
      make_key(DUET_KEY(goodput.restart_s),
               "duet simulate: seconds from a fault to training again (detection, teardown, relaunch, "
               "communicator set-up, checkpoint load, first step), without the steps lost",
               at_least(0)),
      make_key(DUET_KEY(goodput.checkpoint_save_s),
               "duet simulate: seconds one checkpoint save blocks training; 0 = checkpoint bytes / "
               "goodput.checkpoint_write_gbps",
               at_least(0)),
      make_key(DUET_KEY(goodput.checkpoint_write_gbps),
               "duet simulate: aggregate checkpoint write bandwidth, GB/s (used when goodput.checkpoint_save_s is 0)",
               above(0)),

      make_key(DUET_KEY(cluster.gpus), "GPUs (or ranks) available to the job", at_least(1)),
      make_key(DUET_KEY(cluster.gpus_per_node), "GPUs per node", at_least(1)),
      make_key(DUET_KEY(cluster.gpu), "GPU model, for reports", non_empty_string()),
      make_key(DUET_KEY(cluster.bf16_tflops), "dense BF16 tensor-core peak per GPU, TFLOP/s", above(0)),
      make_key(DUET_KEY(cluster.fp8_tflops), "dense FP8 tensor-core peak per GPU, TFLOP/s", above(0)),
      make_key(DUET_KEY(cluster.hbm_gib), "HBM per GPU, GiB", above(0)),
      make_key(DUET_KEY(cluster.hbm_tbps), "HBM bandwidth per GPU, TB/s", above(0)),
      make_key(DUET_KEY(cluster.sms), "streaming multiprocessors per GPU", at_least(1)),
      make_key(DUET_KEY(cluster.comm_sms), "SMs reserved for all-to-all communication; < cluster.sms", at_least(0)),
      make_key(DUET_KEY(cluster.nvlink_gbps), "intra-node (NVLink) bandwidth per GPU, GB/s, one direction", above(0)),
      make_key(DUET_KEY(cluster.ib_gbps), "inter-node (InfiniBand) bandwidth per GPU, GB/s, effective", above(0)),
      make_key(DUET_KEY(cluster.nvlink_latency_us), "latency of one intra-node message, microseconds", at_least(0)),
      make_key(DUET_KEY(cluster.ib_latency_us), "latency of one inter-node message, microseconds", at_least(0)),
      make_key(DUET_KEY(cluster.gemm_efficiency),
               "achieved fraction of peak of forward and input-gradient GEMMs (docs/cost-model.md)", above_up_to(0, 1)),
      make_key(DUET_KEY(cluster.wgrad_efficiency), "achieved fraction of peak of weight-gradient GEMMs",
               above_up_to(0, 1)),
      make_key(DUET_KEY(cluster.attention_fwd_efficiency), "achieved fraction of BF16 peak of attention forward",
               above_up_to(0, 1)),
      make_key(DUET_KEY(cluster.attention_bwd_efficiency), "achieved fraction of BF16 peak of attention backward",
               above_up_to(0, 1)),
      make_key(DUET_KEY(cluster.hbm_efficiency), "achieved fraction of HBM bandwidth of memory-bound kernels",
               above_up_to(0, 1)),
  };
}
#undef DUET_KEY

// ---- text helpers -----------------------------------------------------------------------

std::string number_text(double x) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, x);  // shortest text that round-trips
  return std::string(buf, r.ptr);
}

std::string bound_text(double x, KeyKind kind) {
  return kind == KeyKind::Int ? std::to_string(static_cast<long long>(x)) : number_text(x);
}

[[noreturn]] void fail_value(const KeyDef& key, const std::string& where, const std::string& got) {
  throw ConfigError(where + key.path + ": expected " + allowed_text(key) + ", got " + got);
}

std::string quoted(std::string_view text) { return "'" + std::string(text) + "'"; }

// Whole-string parses: trailing characters make them fail.
template <class T>
bool parse_integer(std::string_view s, T& out) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

bool parse_number(std::string_view s, double& out) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && std::isfinite(out);
}

bool parse_bool(std::string_view s, bool& out) {
  std::string lower(s);
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  // YAML 1.1 spellings, which yaml-cpp also reads as booleans.
  if (lower == "true" || lower == "yes" || lower == "on") return out = true, true;
  if (lower == "false" || lower == "no" || lower == "off") return out = false, true;
  return false;
}

bool in_range(const Range& r, double x) {
  if (r.has_lo && (r.lo_open ? !(x > r.lo) : !(x >= r.lo))) return false;
  if (r.has_hi && (r.hi_open ? !(x < r.hi) : !(x <= r.hi))) return false;
  return true;
}

// "" when v is allowed; otherwise what is allowed, for the error message.
std::string range_violation(const KeyDef& key, const Value& v) {
  switch (key.kind) {
    case KeyKind::Int: {
      const std::int64_t x = std::get<std::int64_t>(v);
      if (x < INT_MIN || x > INT_MAX)  // the key's range may not say that it is an `int`
        return allowed_text(key) + " (and between " + std::to_string(INT_MIN) + " and " + std::to_string(INT_MAX) + ")";
      return in_range(key.range, static_cast<double>(x)) ? "" : allowed_text(key);
    }
    case KeyKind::Float: {
      const double x = std::get<double>(v);
      return std::isfinite(x) && in_range(key.range, x) ? "" : allowed_text(key);
    }
    case KeyKind::String:
      return key.non_empty && std::get<std::string>(v).empty() ? allowed_text(key) : "";
    case KeyKind::Enum:
      for (const auto& c : key.choices)
        if (c == std::get<std::string>(v)) return "";
      return allowed_text(key);
    case KeyKind::UInt64:
    case KeyKind::Bool: return "";
  }
  return "";
}

}  // namespace

const std::vector<KeyDef>& key_table() {
  static const std::vector<KeyDef> table = build_table();
  return table;
}

const KeyDef* find_key(std::string_view path) {
  static const auto index = [] {
    std::unordered_map<std::string_view, const KeyDef*> m;
    for (const auto& k : key_table()) m.emplace(k.path, &k);
    return m;
  }();
  auto it = index.find(path);
  return it == index.end() ? nullptr : it->second;
}

std::string allowed_text(const KeyDef& key) {
  const Range& r = key.range;
  const auto lo_op = [&] { return std::string(r.lo_open ? "<" : "≤"); };
  const auto hi_op = [&] { return std::string(r.hi_open ? "<" : "≤"); };
  switch (key.kind) {
    case KeyKind::Int:
    case KeyKind::Float: {
      const std::string what = key.kind == KeyKind::Int ? "an integer" : "a number";
      const std::string lo = bound_text(r.lo, key.kind), hi = bound_text(r.hi, key.kind);
      if (r.has_lo && r.has_hi) {
        if (key.kind == KeyKind::Int) return what + " between " + lo + " and " + hi;
        return what + " with " + lo + " " + lo_op() + " x " + hi_op() + " " + hi;
      }
      if (r.has_lo) return what + (r.lo_open ? " > " : " ≥ ") + lo;
      if (r.has_hi) return what + (r.hi_open ? " < " : " ≤ ") + hi;
      return what;
    }
    case KeyKind::UInt64:
      return key.bytes ? "a byte count (e.g. 8589934592, 8GiB, 512MiB)" : "an integer between 0 and 18446744073709551615";
    case KeyKind::Bool: return "true or false";
    case KeyKind::String: return key.non_empty ? "a non-empty string" : "a string";
    case KeyKind::Enum: {
      std::string s = "one of ";
      for (std::size_t i = 0; i < key.choices.size(); ++i) s += (i ? ", " : "") + key.choices[i];
      return s;
    }
  }
  return "";
}

Value parse_value(const KeyDef& key, const Scalar& s) {
  if (s.is_null) {
    if (key.kind == KeyKind::String && !key.non_empty) return Value{std::string()};
    fail_value(key, s.where, "an empty value");
  }
  Value v;
  switch (key.kind) {
    case KeyKind::Int: {
      std::int64_t x = 0;
      if (!parse_integer(s.text, x)) fail_value(key, s.where, quoted(s.text));
      v = x;
      break;
    }
    case KeyKind::UInt64: {
      std::uint64_t x = 0;
      if (!parse_integer(s.text, x) && !(key.bytes && parse_bytes(s.text, x))) fail_value(key, s.where, quoted(s.text));
      v = x;
      break;
    }
    case KeyKind::Float: {
      double x = 0;
      if (!parse_number(s.text, x)) fail_value(key, s.where, quoted(s.text));
      v = x;
      break;
    }
    case KeyKind::Bool: {
      bool x = false;
      if (!parse_bool(s.text, x)) fail_value(key, s.where, quoted(s.text));
      v = x;
      break;
    }
    case KeyKind::String: v = s.text; break;
    case KeyKind::Enum: v = s.text; break;  // membership is a range check
  }
  if (auto allowed = range_violation(key, v); !allowed.empty())
    throw ConfigError(s.where + key.path + ": expected " + allowed + ", got " + quoted(s.text));
  return v;
}

void check_range(const KeyDef& key, const Value& v) {
  if (auto allowed = range_violation(key, v); !allowed.empty())
    throw ConfigError(key.path + ": expected " + allowed + ", got " + quoted(format_value(key, v)));
}

std::string format_value(const KeyDef& key, const Value& v) {
  switch (key.kind) {
    case KeyKind::Int: return std::to_string(std::get<std::int64_t>(v));
    case KeyKind::UInt64: return std::to_string(std::get<std::uint64_t>(v));
    case KeyKind::Float: return number_text(std::get<double>(v));
    case KeyKind::Bool: return std::get<bool>(v) ? "true" : "false";
    case KeyKind::Enum: return std::get<std::string>(v);
    case KeyKind::String: {
      // Always double-quoted, so "", "123", "true" or "a: b" stay strings on reload.
      std::string out = "\"";
      for (unsigned char ch : std::get<std::string>(v)) {
        if (ch == '"' || ch == '\\') {
          out += '\\';
          out += static_cast<char>(ch);
        } else if (ch < 0x20 || ch == 0x7f) {
          static const char* hex = "0123456789abcdef";
          out += "\\x";
          out += hex[ch >> 4];
          out += hex[ch & 15];
        } else {
          out += static_cast<char>(ch);
        }
      }
      return out + "\"";
    }
  }
  return "";
}

}  // namespace detail

}  // namespace duet::io
