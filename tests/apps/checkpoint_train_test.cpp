// Checkpoints in training: train.stop_at ends a run with a checkpoint, running again resumes
// it — bit-identical on the same layout, and within 1e-4 on another layout (the checkpoint is
// resharded by tensor name on load).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <regex>
#include <vector>

#include "tests/apps/cli_util.h"

using namespace duet::test;
namespace fs = std::filesystem;

TEST(CheckpointTrain, StopAndResumeIsBitIdentical) {
  const auto dir = scratch_dir("ckpt-same");
  const std::string args = " --train.steps 8 --train.eval_batches 1 --run.dir " + dir.string();
  ASSERT_EQ(run_duet("train" + args + " --run.name a").exit_code, 0);
  auto r = run_duet("train" + args + " --run.name b --train.stop_at 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("stopping after step 4"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(dir / "b/checkpoints/step-000004/COMMITTED"));
  EXPECT_EQ(loss_texts(dir / "b/metrics.jsonl").size(), 4u);
  r = run_duet("train" + args + " --run.name b");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resuming from"), std::string::npos) << r.output;
  const auto a = loss_texts(dir / "a/metrics.jsonl"), b = loss_texts(dir / "b/metrics.jsonl");
  ASSERT_EQ(a.size(), 8u);
  EXPECT_EQ(a, b);  // the same text: bit-identical losses, steps 1-4 before and 5-8 after
  // The same with synchronous saves (the default, checkpoint.async: true, writes in the
  // background).
  ASSERT_EQ(run_duet("train" + args + " --run.name c --train.stop_at 4 --checkpoint.async false").exit_code, 0);
  ASSERT_EQ(run_duet("train" + args + " --run.name c --checkpoint.async false").exit_code, 0);
  EXPECT_EQ(loss_texts(dir / "c/metrics.jsonl"), a);
  // checkpoint.resume: false starts afresh even with a checkpoint present.
  r = run_duet("train --train.steps 2 --train.eval_batches 1 --run.dir " + dir.string() + " --run.name b --checkpoint.resume false");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("resuming from"), std::string::npos) << r.output;
  fs::remove_all(dir);
}

// Saved by PP 4 x DP 2 DualPipe with EP 2 (8 ranks); continued on PP 2 x DP 4, on one
// process, and on PP 4 DualPipeV.
TEST(CheckpointTrain, ResumeOnOtherLayouts) {
  const auto dir = scratch_dir("ckpt-layouts");
  const std::string ck = (dir / "ck").string();
  const std::string args = " --train.steps 6 --train.global_batch 32 --train.eval_batches 1 --run.dir " + dir.string();
  ASSERT_EQ(run_duet("train" + args + " --run.name ref").exit_code, 0);
  const auto ref = loss_texts(dir / "ref/metrics.jsonl");
  ASSERT_EQ(ref.size(), 6u);
  auto r = run_command(mpirun_train(8) + args + " --run.name save --train.stop_at 3 --checkpoint.dir " + ck +
                       " --parallel.pp 4 --parallel.dp 2 --parallel.ep 2 --parallel.schedule dualpipe");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The continuations are other run directories of the same run: they adopt its id (run.id),
  // so its checkpoints are theirs to resume from.
  const std::string config = read_file(dir / "save/config.yaml");
  const auto at = config.find("\n  id: ");
  ASSERT_NE(at, std::string::npos) << config;
  std::string id = config.substr(at + 7, config.find('\n', at + 1) - at - 7);
  id.erase(std::remove(id.begin(), id.end(), '"'), id.end());
  struct Layout {
    const char* name;
    int np;
    const char* args;
  };
  for (const Layout& l : {Layout{"pp2dp4", 8, " --parallel.pp 2 --parallel.dp 4 --parallel.ep 2"},
                          Layout{"single", 1, ""},
                          Layout{"dualpipev", 4, " --parallel.pp 4 --parallel.schedule dualpipev"}}) {
    r = run_command((l.np == 1 ? std::string(DUET_BINARY) + " train" : mpirun_train(l.np)) + args + " --run.name " + l.name +
                    " --run.id " + id + " --checkpoint.dir " + ck + l.args);
    ASSERT_EQ(r.exit_code, 0) << l.name << "\n" << r.output;
    EXPECT_NE(r.output.find("resuming from"), std::string::npos) << l.name;
    const auto got = loss_texts(dir / l.name / "metrics.jsonl");
    ASSERT_EQ(got.size(), 3u) << l.name;  // steps 4-6
    for (int i = 0; i < 3; ++i) {
      const double a = std::stod(got[i]), b = std::stod(ref[3 + i]);
      EXPECT_LE(std::abs(a - b) / b, 1e-4) << l.name << " step " << 4 + i << ": " << a << " vs " << b;
    }
  }
  fs::remove_all(dir);
}

// A damaged newest checkpoint is rejected with a line saying why, the run resumes from the
// one before, and the losses are still those of an uninterrupted run.
TEST(CheckpointTrain, CorruptNewestFallsBackToPrevious) {
  const auto dir = scratch_dir("ckpt-corrupt");
  const std::string args = " --train.steps 8 --train.eval_batches 1 --run.dir " + dir.string();
  ASSERT_EQ(run_duet("train" + args + " --run.name a").exit_code, 0);
  ASSERT_EQ(run_duet("train" + args + " --run.name b --checkpoint.every 2 --train.stop_at 6").exit_code, 0);
  const fs::path shard = dir / "b/checkpoints/step-000006/shard-00000.h5";
  ASSERT_TRUE(fs::exists(shard));
  {  // flip one byte in the middle of the shard
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg((std::streamoff)fs::file_size(shard) / 2);
    char c;
    f.read(&c, 1);
    c = (char)~c;
    f.seekp((std::streamoff)fs::file_size(shard) / 2);
    f.write(&c, 1);
  }
  // Steps 5 and 6 of the stopped run are replayed from step 4: drop them from its metrics.
  const auto r = run_duet("train" + args + " --run.name b");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("step-000006"), std::string::npos) << r.output;  // named as rejected
  EXPECT_NE(r.output.find("resuming from"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("step-000004"), std::string::npos) << r.output;
  // metrics.jsonl holds steps 1-6, a resume record, then 5-8 again: each step counts once,
  // with its last line, and those are the uninterrupted run's losses.
  const auto a = loss_texts(dir / "a/metrics.jsonl"), b = loss_texts(dir / "b/metrics.jsonl");
  ASSERT_EQ(b.size(), 8u);
  EXPECT_EQ(b, a);
  EXPECT_NE(read_file(dir / "b/metrics.jsonl").find("{\"event\":\"resume\",\"from_step\":4,\"attempt\":2}"),
            std::string::npos);
  fs::remove_all(dir);
}

// A full disk during training: the save fails with a clear line, the previous checkpoint
// (here: none) is untouched, and training goes on unchanged — but the run's last checkpoint
// (step 4) is missing, so it does not exit 0 (core::ExitCode::CheckpointNotSaved).
TEST(CheckpointTrain, FullDiskDoesNotStopOrCorruptTraining) {
  const auto dir = scratch_dir("ckpt-full");
  const fs::path small = dir / "small";
  fs::create_directories(small);
  if (run_command("mount -t tmpfs -o size=1m tmpfs " + small.string()).exit_code != 0) {
    fs::remove_all(dir);
    GTEST_SKIP() << "cannot mount a 1 MiB tmpfs here (needs root)";
  }
  const std::string args = " --train.steps 4 --train.eval_batches 1 --run.dir " + dir.string();
  const auto ok = run_duet("train" + args + " --run.name a");
  const auto r = run_duet("train" + args + " --run.name b --checkpoint.every 2 --checkpoint.dir " + small.string());
  run_command("umount " + small.string());
  ASSERT_EQ(ok.exit_code, 0);
  ASSERT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("NOT saved"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("the checkpoint of step 4 was not saved"), std::string::npos) << r.output;
  EXPECT_EQ(loss_texts(dir / "a/metrics.jsonl"), loss_texts(dir / "b/metrics.jsonl"));
  fs::remove_all(dir);
}

// A model whose embedding and head are 2 Mi floats each (vocab 8192 × d_model 256): larger
// than a ZeRO-1 reduce-scatter bucket (1 Mi floats). Each rank's share of such a tensor is
// still one piece, so DP 2 saves, resumes bit-identically, and reshards onto one process.
TEST(CheckpointTrain, TensorsLargerThanABucketSaveResumeAndReshard) {
  const auto dir = scratch_dir("ckpt-big");
  const std::string args = " --model.vocab 8192 --model.d_model 256 --train.steps 4 --train.eval_batches 1"
                           " --parallel.pp 1 --parallel.ep 1 --run.dir " + dir.string();
  const std::string dp2 = mpirun_train(2) + args + " --parallel.dp 2";
  auto r = run_command(dp2 + " --run.name ref");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto ref = loss_texts(dir / "ref/metrics.jsonl");
  ASSERT_EQ(ref.size(), 4u);
  r = run_command(dp2 + " --run.name same --train.stop_at 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir / "same/checkpoints/step-000002/COMMITTED")) << r.output;
  r = run_command(dp2 + " --run.name same");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resuming from"), std::string::npos) << r.output;
  EXPECT_EQ(loss_texts(dir / "same/metrics.jsonl"), ref);
  // The same checkpoint on one process: every tensor read back whole from the two shards.
  r = run_command(dp2 + " --run.name one --train.stop_at 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_duet("train" + args + " --parallel.dp 1 --run.name one");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resuming from"), std::string::npos) << r.output;
  const auto one = loss_texts(dir / "one/metrics.jsonl");
  ASSERT_EQ(one.size(), 4u);
  for (int i = 2; i < 4; ++i)
    EXPECT_LE(std::abs(std::stod(one[i]) - std::stod(ref[i])) / std::stod(ref[i]), 1e-4) << "step " << i + 1;
  fs::remove_all(dir);
}

// Every rank verifies the checkpoints itself. When one rank alone cannot read the newest (a
// read error on that rank: fault kind `unreadable`), the ranks agree on the newest checkpoint
// all of them verify instead of each loading its own; when one rank reads none, the run stops
// with an error naming it and keeps the checkpoints, rather than training again from step 0.
TEST(CheckpointTrain, RanksResumeFromACheckpointEveryRankVerifies) {
  const auto dir = scratch_dir("ckpt-agree");
  const std::string pp2 = mpirun_train(2) + " --train.steps 8 --train.eval_batches 1 --parallel.pp 2"
                          " --parallel.schedule 1f1b --run.dir " + dir.string();
  auto r = run_command(pp2 + " --run.name ref");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto ref = loss_texts(dir / "ref/metrics.jsonl");
  ASSERT_EQ(ref.size(), 8u);
  r = run_command(pp2 + " --run.name b --checkpoint.every 2 --train.stop_at 6");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(fs::exists(dir / "b/checkpoints/step-000006/COMMITTED")) << r.output;
  // Rank 0 reads no checkpoint, rank 1 reads step 6.
  r = run_command(pp2 + " --run.name b --runtime.fail_plan 1:unreadable:0:2");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("rank 0 none"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("no checkpoint verifies on every rank"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("resuming from"), std::string::npos) << r.output;
  for (const char* step : {"step-000002", "step-000004", "step-000006"})
    EXPECT_TRUE(fs::exists(dir / "b/checkpoints" / step / "COMMITTED")) << step;
  EXPECT_EQ(loss_texts(dir / "b/metrics.jsonl").size(), 6u);  // nothing trained
  // Rank 1 cannot read step 6: both resume from step 4, and the losses are the uninterrupted run's.
  r = run_command(pp2 + " --run.name b --runtime.fail_plan 1:unreadable:1:6");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("rank 1: fault injection: rank 1 cannot read checkpoints of step 6"), std::string::npos)
      << r.output;  // the rank that disagrees says why, on its own output
  EXPECT_NE(r.output.find("(step 6 on the others; rank 1 step 4)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("resuming from " + (dir / "b/checkpoints/step-000004").string()), std::string::npos) << r.output;
  EXPECT_EQ(loss_texts(dir / "b/metrics.jsonl"), ref);
  fs::remove_all(dir);
}
