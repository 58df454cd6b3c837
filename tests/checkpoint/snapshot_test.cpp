// In-memory snapshots (checkpoint/snapshot.h): the file format and its checks, the choice of
// the newest complete step over own copies and peer replicas, refusals (another lineage, this
// or a later attempt, damage, a superseded attempt), resharding reads, and reclaiming the
// folders of dead runs.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <cstring>

#include "checkpoint/snapshot.h"
#include "tests/checkpoint/test_util.h"

using namespace duet::ckpt;
using duet::ckpt::test::ScratchDir;
namespace fs = std::filesystem;

namespace {

// Two ranks' state of one "model": w (2 x 3) held whole by both, its moment m (6 floats) cut
// [0, 4) on rank 0 and [4, 6) on rank 1 — as ZeRO-1 cuts the moments of a flattened tensor.
struct TwoRanks {
  std::vector<float> w = {1, 2, 3, 4, 5, 6};
  std::vector<float> m = {10, 11, 12, 13, 14, 15};
  std::vector<TensorSlice> slices(int rank, float shift) {
    w_ = w, m_ = m;
    for (auto& x : w_) x += shift;
    for (auto& x : m_) x += shift;
    std::vector<TensorSlice> s;
    s.push_back({"w", {2, 3}, {0, 0}, {2, 3}, w_});
    if (rank == 0) s.push_back({"opt.m/w", {6}, {0}, {4}, std::span<const float>(m_.data(), 4)});
    else s.push_back({"opt.m/w", {6}, {4}, {2}, std::span<const float>(m_.data() + 4, 2)});
    return s;
  }
  std::vector<float> w_, m_;
};

SnapshotMeta meta(int rank, std::int64_t step, std::int64_t generation, const std::string& node,
                  const std::string& lineage = "run-a") {
  SnapshotMeta m;
  m.lineage = lineage, m.step = step, m.generation = generation, m.rank = rank, m.node = node;
  m.layout.world = 2, m.layout.pp = 1, m.layout.dp = 2, m.layout.ep = 1, m.layout.schedule = "1f1b";
  m.layout.model_hash = "model-1", m.layout.lineage = lineage;
  return m;
}

// Writes rank `rank`'s snapshot of `step` into <run>/<holder>/ (its own node, or a peer's).
void put(const fs::path& run, const std::string& holder, int rank, std::int64_t step, std::int64_t generation,
         const std::string& writer_node, const std::string& lineage = "run-a") {
  TwoRanks t;
  ShardState st;
  st.data_position = step * 16;
  st.attributes["optimizer_steps"] = std::to_string(step);
  const auto m = meta(rank, step, generation, writer_node, lineage);
  const auto slices = t.slices(rank, (float)step);
  fs::create_directories(run / holder);
  SnapshotSlot slot((run / holder / snapshot_file_name(rank, snapshot_slot(step, 1))).string());
  const auto file = slot.open_for(encoded_snapshot_size(m, slices, st), {});
  slot.publish(encode_snapshot_payload(file, m, slices, st), {});
}

}  // namespace

TEST(Snapshot, EncodesAndDecodesEverythingAShardHolds) {
  TwoRanks t;
  ShardState st;
  st.data_position = 123, st.rng_state = {1, 2, 3}, st.attributes = {{"optimizer_steps", "7"}, {"config", "a: 1\nb: 2\n"}};
  const SnapshotMeta m = meta(1, 7, 3, "node1");
  const auto s = t.slices(1, 0);
  auto f = decode_snapshot(encode_snapshot(m, s, st));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->meta, m);
  EXPECT_EQ(f->state, st);
  ASSERT_EQ(f->slices.size(), 2u);
  EXPECT_EQ(f->slices[1].name, "opt.m/w");
  EXPECT_EQ(f->slices[1].offset, std::vector<std::int64_t>{4});
  float x = 0;
  std::memcpy(&x, f->bytes.data() + f->slices[1].data, 4);
  EXPECT_EQ(x, 14);
}

TEST(Snapshot, ADamagedOrTruncatedFileIsRejected) {
  TwoRanks t;
  auto bytes = encode_snapshot(meta(0, 1, 1, "node0"), t.slices(0, 0), {});
  auto flipped = bytes;
  flipped[flipped.size() / 2] ^= std::byte{1};
  std::string why;
  EXPECT_FALSE(decode_snapshot(flipped, &why));
  EXPECT_EQ(why, "checksum mismatch");
  auto cut = bytes;
  cut.resize(cut.size() - 5);
  EXPECT_FALSE(decode_snapshot(cut, &why));
  EXPECT_NE(why.find("length"), std::string::npos) << why;
}

// The newest step every rank has wins; a step only one rank reached (the other died while
// writing it) is not complete and is passed over.
TEST(Snapshot, TheNewestCompleteStepIsChosen) {
  ScratchDir d("snap-newest");
  put(d.path, "node0", 0, 4, 1, "node0"), put(d.path, "node1", 1, 4, 1, "node1");
  put(d.path, "node0", 0, 5, 1, "node0"), put(d.path, "node1", 1, 5, 1, "node1");
  put(d.path, "node0", 0, 6, 1, "node0");  // rank 1 died before its step 6 landed: slot 0 still holds 4
  SnapshotSearch s;
  s.lineage = "run-a", s.below_generation = 2, s.model_hash = "model-1";
  const SnapshotSet set = find_snapshot_set(d.path.string(), s);
  ASSERT_TRUE(set.found());
  EXPECT_EQ(set.step, 5);
  EXPECT_EQ(set.own_copies, 2);
  EXPECT_EQ(set.replicas, 0);
}

// A node's folder is gone (the node was lost): its ranks' replicas on the other node complete
// the set.
TEST(Snapshot, ALostNodesRanksComeFromTheirReplicas) {
  ScratchDir d("snap-replica");
  put(d.path, "node0", 0, 3, 1, "node0");
  put(d.path, "node0", 1, 3, 1, "node1");  // rank 1's replica, held by node 0
  put(d.path, "node1", 0, 3, 1, "node0");  // rank 0's replica, held by node 1
  put(d.path, "node1", 1, 3, 1, "node1");
  fs::remove_all(d.path / "node1");
  SnapshotSearch s;
  s.lineage = "run-a", s.below_generation = 2;
  const SnapshotSet set = find_snapshot_set(d.path.string(), s);
  ASSERT_TRUE(set.found());
  EXPECT_EQ(set.step, 3);
  EXPECT_EQ(set.own_copies, 1);
  EXPECT_EQ(set.replicas, 1);
  // Without the replica nothing is complete.
  fs::remove(d.path / "node0" / snapshot_file_name(1, snapshot_slot(3, 1)));
  EXPECT_FALSE(find_snapshot_set(d.path.string(), s).found());
}

// Separate hosts: each node's first rank scans only its own folder; the lists, exchanged as
// text, give every rank the same choice in any order, and say which rank can read each file.
TEST(Snapshot, EachNodeScansItsOwnFolderAndAllChooseTheSameSet) {
  ScratchDir d("snap-nodes");
  for (int step : {2, 3}) {
    put(d.path, "node0", 0, step, 1, "node0");
    put(d.path, "node0", 1, step, 1, "node1");  // rank 1's replica
    put(d.path, "node1", 1, step, 1, "node1");
  }
  SnapshotSearch s;
  s.lineage = "run-a", s.below_generation = 2;
  const auto node0 = scan_snapshot_folder((d.path / "node0").string(), 0, s);
  const auto node1 = scan_snapshot_folder((d.path / "node1").string(), 4, s);
  ASSERT_EQ(node0.size(), 4u);
  ASSERT_EQ(node1.size(), 2u);
  EXPECT_TRUE(node1[0].own);
  EXPECT_EQ(node1[0].holder, 4);
  auto text = format_snapshot_candidates(node1) + format_snapshot_candidates(node0);
  const auto parsed = parse_snapshot_candidates(text);
  ASSERT_EQ(parsed.size(), 6u);
  EXPECT_EQ(parsed[0], node1[0]);
  EXPECT_EQ(parsed[5], node0[3]);
  std::vector<SnapshotCandidate> a = node0, b = parsed;
  a.insert(a.end(), node1.begin(), node1.end());
  const SnapshotSet x = choose_snapshot_set(a), y = choose_snapshot_set(b);
  ASSERT_TRUE(x.found());
  EXPECT_EQ(x.step, 3);
  EXPECT_EQ(x.paths, y.paths);
  EXPECT_EQ(x.holders, y.holders);
  // Rank 1's own copy on node 1 is preferred over its replica on node 0.
  EXPECT_EQ(x.holders, (std::vector<int>{0, 4}));
  EXPECT_EQ(x.own_copies, 2);
  // Node 0 alone (node 1's list never arrives) still completes the set, from the replica.
  const SnapshotSet alone = choose_snapshot_set(node0);
  ASSERT_TRUE(alone.found());
  EXPECT_EQ(alone.holders, (std::vector<int>{0, 0}));
  EXPECT_EQ(alone.replicas, 1);
  EXPECT_THROW(parse_snapshot_candidates("a\tb\n"), std::invalid_argument);
}

// Attempt 1 reached step 6; attempt 2 resumed from step 4 (say, an HDF5 checkpoint) and
// failed before its own snapshots replaced both slots. Its steps 5 and 6 are another history:
// once attempt 2 resumes, attempt 1's snapshots after step 4 are removed, and a restart after
// attempt 2's failure chooses attempt 2's step 5, not attempt 1's step 6.
TEST(Snapshot, SnapshotsOfAReplacedHistoryAreDiscarded) {
  ScratchDir d("snap-history");
  for (int rank : {0, 1}) {
    put(d.path, "node0", rank, 6, 1, "node0");
    put(d.path, "node0", rank, 5, 1, "node0");
  }
  SnapshotSearch at2;
  at2.lineage = "run-a", at2.below_generation = 2;
  const auto removed = discard_snapshots_after((d.path / "node0").string(), at2, 4);
  EXPECT_EQ(removed.size(), 4u);
  for (int rank : {0, 1}) put(d.path, "node0", rank, 5, 2, "node0");  // attempt 2's step 5 (slot 1)
  SnapshotSearch at3;
  at3.lineage = "run-a", at3.below_generation = 3;
  const SnapshotSet set = find_snapshot_set(d.path.string(), at3);
  ASSERT_TRUE(set.found());
  EXPECT_EQ(set.step, 5);
  EXPECT_EQ(set.generation, 2);
  // Nor does a discard touch this attempt's own snapshots or another lineage's.
  EXPECT_TRUE(discard_snapshots_after((d.path / "node0").string(), at2, 0).empty());  // attempt 2's own
  put(d.path, "node1", 0, 9, 1, "node1", "run-b");
  EXPECT_TRUE(discard_snapshots_after((d.path / "node1").string(), at2, 0).empty());
  EXPECT_TRUE(fs::exists(d.path / "node1" / snapshot_file_name(0, snapshot_slot(9, 1))));
}

// Another run's snapshots, this attempt's own (or a later one's), damaged files and another
// model's are never chosen, and each is named.
TEST(Snapshot, OtherLineagesAttemptsAndDamagedFilesAreRefused) {
  ScratchDir d("snap-refuse");
  put(d.path, "node0", 0, 2, 1, "node0"), put(d.path, "node0", 1, 2, 1, "node0");  // the good set
  put(d.path, "node1", 0, 3, 1, "node1", "run-b"), put(d.path, "node1", 1, 3, 1, "node1", "run-b");
  put(d.path, "node2", 0, 5, 4, "node2"), put(d.path, "node2", 1, 5, 4, "node2");  // generation 4 ≥ 4
  std::vector<std::string> lines;
  SnapshotSearch s;
  s.lineage = "run-a", s.below_generation = 4, s.model_hash = "model-1";
  auto log = [&](std::string_view l) { lines.emplace_back(l); };
  SnapshotSet set = find_snapshot_set(d.path.string(), s, log);
  ASSERT_TRUE(set.found());
  EXPECT_EQ(set.step, 2);
  std::string all;
  for (const auto& l : lines) all += l + "\n";
  EXPECT_NE(all.find("run run-b, not this run (run-a)"), std::string::npos) << all;
  EXPECT_NE(all.find("attempt generation 4, not older than this attempt's 4"), std::string::npos) << all;
  // Damage rank 1's step-2 file: nothing complete is left.
  const fs::path f = d.path / "node0" / snapshot_file_name(1, snapshot_slot(2, 1));
  {
    std::fstream io(f, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(40);
    io.put('\x7f');
  }
  lines.clear();
  EXPECT_FALSE(find_snapshot_set(d.path.string(), s, log).found());
  all.clear();
  for (const auto& l : lines) all += l + "\n";
  EXPECT_NE(all.find("checksum mismatch"), std::string::npos) << all;
  s.model_hash = "model-2";
  put(d.path, "node0", 1, 2, 1, "node0");
  EXPECT_FALSE(find_snapshot_set(d.path.string(), s).found());
}

// A half-written snapshot is never visible under its slot name, and an attempt that has been
// superseded cannot publish one.
TEST(Snapshot, WritesAreAtomicAndFenced) {
  ScratchDir d("snap-fence");
  const std::string fence_path = (d.path / "fence").string();
  advance_fence(fence_path);  // generation 1
  Fence old{fence_path, 1};
  TwoRanks t;
  const auto m = meta(0, 1, 1, "node0");
  const auto slices = t.slices(0, 0);
  const std::string path = (d.path / "a.snap").string();
  SnapshotSlot slot(path);
  slot.publish(encode_snapshot_payload(slot.open_for(encoded_snapshot_size(m, slices, {}), old), m, slices, {}), old);
  const auto first = read_snapshot(path);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->meta, m);
  // The same bytes as encode_snapshot's, then the slot's spare room.
  const auto whole = encode_snapshot(m, slices, {});
  ASSERT_GE(first->bytes.size(), whole.size());
  EXPECT_EQ(std::memcmp(first->bytes.data(), whole.data(), whole.size()), 0);

  // Rewriting in place: while the new snapshot goes in, the slot is not a snapshot.
  auto m2 = m;
  m2.step = 3;
  const auto file = slot.open_for(encoded_snapshot_size(m2, slices, {}), old);
  std::string why;
  EXPECT_FALSE(read_snapshot(path, &why));
  EXPECT_EQ(why, "not a snapshot");
  const SnapshotHeader h = encode_snapshot_payload(file, m2, slices, {});
  EXPECT_FALSE(read_snapshot(path));  // payload in, header not yet
  advance_fence(fence_path);          // a new attempt started: the old one cannot publish
  EXPECT_THROW(slot.publish(h, old), std::runtime_error);
  EXPECT_FALSE(read_snapshot(path));
  slot.publish(h, {fence_path, 2});  // the current attempt can
  // Nor can the old attempt clear a published snapshot.
  EXPECT_THROW(slot.open_for(encoded_snapshot_size(m2, slices, {}), old), std::runtime_error);
  EXPECT_TRUE(read_snapshot(path));
  const auto second = read_snapshot(path);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->meta.step, 3);

  // A larger snapshot grows the file; a damaged byte in it is still caught.
  TwoRanks big;
  big.w.assign(3000, 1.5f);
  std::vector<TensorSlice> large = {{"w", {3000}, {0}, {3000}, big.w}};
  slot.publish(encode_snapshot_payload(slot.open_for(encoded_snapshot_size(m2, large, {}), {}), m2, large, {}), {});
  auto grown = read_snapshot(path);
  ASSERT_TRUE(grown);
  EXPECT_EQ(grown->slices.at(0).count, 3000);
  slot.close();
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(kSnapshotHeaderBytes + 200);
    f.put('\x7f');
  }
  EXPECT_FALSE(read_snapshot(path, &why));
  EXPECT_EQ(why, "checksum mismatch");
}

// Loading into another layout: whole tensors from any rank, moment ranges stitched across
// the ranks that held them.
TEST(Snapshot, TheReaderReshards) {
  ScratchDir d("snap-reshard");
  put(d.path, "node0", 0, 2, 1, "node0"), put(d.path, "node1", 1, 2, 1, "node1");
  SnapshotSearch s;
  s.lineage = "run-a", s.below_generation = 2;
  const SnapshotReader r(find_snapshot_set(d.path.string(), s));
  EXPECT_EQ(r.read("w"), (std::vector<float>{3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(r.read("opt.m/w"), (std::vector<float>{12, 13, 14, 15, 16, 17}));
  std::vector<float> mid(3);
  r.read_range("opt.m/w", 2, mid);  // [2, 5): across ranks 0 and 1
  EXPECT_EQ(mid, (std::vector<float>{14, 15, 16}));
  std::vector<float> past(2);
  EXPECT_THROW(r.read_range("opt.m/w", 5, past), std::runtime_error);
  EXPECT_EQ(r.state(1).data_position, 32);
  EXPECT_THROW(r.read("nope"), std::runtime_error);
}

// A run folder whose owner lock nobody holds belongs to a dead run and is reclaimed; a live
// run's (lock held) and our own are kept.
TEST(Snapshot, DeadRunsAreReclaimedLiveOnesKept) {
  ScratchDir d("snap-reclaim");
  const std::string base = d.path.string();
  fs::create_directories(snapshot_run_dir(base, "dead") + "/node0");
  { std::ofstream(snapshot_run_dir(base, "dead") + "/owner.lock"); }
  { std::ofstream(snapshot_run_dir(base, "dead") + "/node0/rank-00000.slot0.snap") << "x"; }
  auto live = std::make_unique<SnapshotOwnerLock>(snapshot_run_dir(base, "live"));
  fs::create_directories(snapshot_run_dir(base, "mine") + "/node0");
  { std::ofstream(snapshot_run_dir(base, "mine") + "/owner.lock"); }
  const auto removed = reclaim_dead_snapshots(base, "mine");
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0], snapshot_run_dir(base, "dead"));
  EXPECT_FALSE(fs::exists(snapshot_run_dir(base, "dead")));
  EXPECT_TRUE(fs::exists(snapshot_run_dir(base, "live")));
  EXPECT_TRUE(fs::exists(snapshot_run_dir(base, "mine")));
  live.reset();  // the live run ends without cleaning up: now it is dead too
  EXPECT_EQ(reclaim_dead_snapshots(base, "mine").size(), 1u);
  EXPECT_FALSE(fs::exists(snapshot_run_dir(base, "live")));
}
