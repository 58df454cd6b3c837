// io/data: reading files, the per-file split, seeded windows, errors.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include <gtest/gtest.h>

#include "io/data.h"

namespace duet::io {
namespace {
namespace fs = std::filesystem;

// A fresh folder per test, removed afterwards.
class DataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("duet_test_data_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
    return (dir_ / name).string();
  }
  fs::path dir_;
};

// n bytes of varied text: "the quick brown fox 0 ... " so windows at different offsets differ.
std::string text_of(std::size_t n, char tag) {
  std::string s;
  for (int i = 0; s.size() < n; ++i) s += std::string(1, tag) + " line " + std::to_string(i * 7919 % 1000) + "\n";
  s.resize(n);
  return s;
}

std::string as_string(std::span<const std::uint8_t> s) { return std::string(s.begin(), s.end()); }

void expect_data_error(const std::function<void()>& fn, const std::vector<std::string>& pieces) {
  try {
    fn();
  } catch (const DataError& e) {
    const std::string msg = e.what();
    for (const auto& p : pieces) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    return;
  }
  ADD_FAILURE() << "no DataError thrown";
}

TEST_F(DataTest, SingleFileValidationIsTheTail) {
  const std::string text = text_of(1000, 'a');
  const TokenDataset ds = TokenDataset::load(write("one.txt", text), 0.1);
  EXPECT_EQ(as_string(ds.train()), text.substr(0, 900));
  EXPECT_EQ(as_string(ds.val()), text.substr(900));
  EXPECT_EQ(ds.files().size(), 1u);
}

TEST_F(DataTest, DirectoryTakesRegularFilesInNameOrderAndSplitsEach) {
  const std::string a = text_of(1000, 'a'), b = text_of(500, 'b');
  write("b.txt", b);
  write("a.txt", a);
  write("a.dat", "index bytes");
  fs::create_symlink(dir_ / "a.txt", dir_ / "a.u8");
  fs::create_symlink(dir_ / "b.txt", dir_ / "c-link");
  fs::create_directories(dir_ / "sub");
  std::ofstream(dir_ / "sub" / "x.txt") << "nested files are not read";

  const TokenDataset ds = TokenDataset::load(dir_.string(), 0.1);
  ASSERT_EQ(ds.files().size(), 2u);
  EXPECT_EQ(fs::path(ds.files()[0]).filename(), "a.txt");
  EXPECT_EQ(fs::path(ds.files()[1]).filename(), "b.txt");
  // Train = the heads of a and b, validation = their tails: disjoint, and nothing else read.
  EXPECT_EQ(as_string(ds.train()), a.substr(0, 900) + b.substr(0, 450));
  EXPECT_EQ(as_string(ds.val()), a.substr(900) + b.substr(450));
}

TEST_F(DataTest, SplitsAreDisjointAndCoverTheData) {
  // The file is 2000 four-digit markers 0000..1999; each must land in exactly one split.
  std::string text;
  for (int i = 0; i < 2000; ++i) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04d", i);
    text += buf;
  }
  const TokenDataset ds = TokenDataset::load(write("m.txt", text), 0.25);
  ASSERT_EQ(ds.train().size(), 6000u);  // a multiple of 4: markers stay whole
  ASSERT_EQ(ds.val().size(), 2000u);
  std::multiset<std::string> markers;
  for (auto split : {ds.train(), ds.val()})
    for (std::size_t i = 0; i < split.size(); i += 4) markers.insert(as_string(split.subspan(i, 4)));
  ASSERT_EQ(markers.size(), 2000u);
  for (int i = 0; i < 2000; ++i) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04d", i);
    EXPECT_EQ(markers.count(buf), 1u) << buf;
  }
}

TEST(DataSampling, SameSeedAndIndexGiveTheSameWindow) {
  const std::string text = text_of(5000, 'x');
  const std::span<const std::uint8_t> split(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  std::vector<std::int32_t> a(65), b(65);
  for (std::uint64_t i : {0ull, 1ull, 12345ull, 1ull << 40}) {
    fill_sequence(split, 42, i, 64, a.data());
    fill_sequence(split, 42, i, 64, b.data());
    EXPECT_EQ(a, b) << i;
  }
}

TEST(DataSampling, IndicesAndSeedsGiveDifferentWindows) {
  const std::size_t n = 100000;
  std::set<std::uint64_t> offsets;
  int same_as_other_seed = 0;
  for (std::uint64_t i = 0; i < 1000; ++i) {
    offsets.insert(sequence_offset(n, 7, i, 128));
    same_as_other_seed += sequence_offset(n, 7, i, 128) == sequence_offset(n, 8, i, 128);
  }
  EXPECT_GT(offsets.size(), 990u);  // collisions are possible, but rare in 100k positions
  EXPECT_LT(same_as_other_seed, 5);
}

TEST(DataSampling, WindowsLieInsideTheSplitAndSpreadOverIt) {
  const std::string text = text_of(3000, 'y');
  const std::span<const std::uint8_t> split(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  const int seq_len = 100;
  std::uint64_t lo = ~0ull, hi = 0;
  std::vector<std::int32_t> tokens(seq_len + 1);
  for (std::uint64_t i = 0; i < 20000; ++i) {
    const std::uint64_t off = sequence_offset(split.size(), 3, i, seq_len);
    ASSERT_LE(off + seq_len + 1, split.size()) << i;
    lo = std::min(lo, off);
    hi = std::max(hi, off);
    if (i % 1000 == 0) {
      fill_sequence(split, 3, i, seq_len, tokens.data());
      for (int t = 0; t <= seq_len; ++t) ASSERT_EQ(tokens[t], split[off + t]);
    }
  }
  EXPECT_LT(lo, 30u);
  EXPECT_GT(hi, split.size() - seq_len - 1 - 30);
}

TEST(DataSampling, SplitOfExactlyOneWindow) {
  const std::string text = text_of(11, 'z');
  const std::span<const std::uint8_t> split(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  for (std::uint64_t i = 0; i < 50; ++i) EXPECT_EQ(sequence_offset(split.size(), 1, i, 10), 0u);
  std::vector<std::int32_t> tokens(12);
  expect_data_error([&] { fill_sequence(split, 1, 0, 11, tokens.data()); }, {"fewer than train.seq_len + 1 = 12"});
}

TEST(DataSampling, BatchesAreTheirSequences) {
  // Layout independence: sequences 10..13 fetched as a batch or one by one are the same.
  const std::string text = text_of(4000, 'w');
  const std::span<const std::uint8_t> split(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  const int seq_len = 16;
  std::vector<std::int32_t> batch(4 * (seq_len + 1)), one(seq_len + 1);
  fill_sequences(split, 9, 10, 4, seq_len, batch);
  for (int j = 0; j < 4; ++j) {
    fill_sequence(split, 9, 10 + j, seq_len, one.data());
    EXPECT_TRUE(std::equal(one.begin(), one.end(), batch.begin() + j * (seq_len + 1))) << j;
  }
}

TEST_F(DataTest, ValidationSetIsFixed) {
  const std::string path = write("v.txt", text_of(20000, 'v'));
  const TokenDataset a = TokenDataset::load(path, 0.2), b = TokenDataset::load(path, 0.2);
  std::vector<std::int32_t> x(33), y(33);
  std::set<std::vector<std::int32_t>> distinct;
  for (std::uint64_t i = 0; i < 20; ++i) {
    a.val_sequence(i, 32, x.data());
    b.val_sequence(i, 32, y.data());
    EXPECT_EQ(x, y);
    distinct.insert(x);
  }
  EXPECT_GT(distinct.size(), 15u);
}

TEST_F(DataTest, Errors) {
  expect_data_error([&] { TokenDataset::load((dir_ / "missing").string(), 0.1); },
                    {"data.path '" + (dir_ / "missing").string() + "'", "no such file"});
  fs::create_directories(dir_ / "empty");
  expect_data_error([&] { TokenDataset::load((dir_ / "empty").string(), 0.1); }, {"no regular files"});
  fs::create_directories(dir_ / "zeros");
  std::ofstream(dir_ / "zeros" / "f.txt").close();
  expect_data_error([&] { TokenDataset::load((dir_ / "zeros").string(), 0.1); }, {"no data"});

  const TokenDataset ds = TokenDataset::load(write("short.txt", text_of(200, 's')), 0.1);
  EXPECT_NO_THROW(ds.require_window(19));
  expect_data_error([&] { ds.require_window(20); }, {"validation split", "fewer than train.seq_len + 1 = 21"});
  expect_data_error([&] { ds.require_window(500); }, {"training split", "train.seq_len"});
  EXPECT_NO_THROW(ds.require_vocab(256));
  expect_data_error([&] { ds.require_vocab(64); }, {"model.vocab (64)"});
}

TEST_F(DataTest, LoadFromConfig) {
  RunConfig cfg;
  cfg.data.path = write("c.txt", text_of(3000, 'c'));
  cfg.data.val_fraction = 0.1;
  cfg.train.seq_len = 100;
  const TokenDataset ds = TokenDataset::load(cfg);
  EXPECT_EQ(ds.val().size(), 300u);
  cfg.train.seq_len = 300;
  expect_data_error([&] { TokenDataset::load(cfg); }, {"validation split"});
}

TEST(DataFortunes, DefaultPathLoads) {
  const RunConfig cfg;  // data.path defaults to the Debian fortunes folder
  if (!fs::is_directory(cfg.data.path)) GTEST_SKIP() << cfg.data.path << " not installed (package fortunes)";
  const TokenDataset ds = TokenDataset::load(cfg);
  EXPECT_GT(ds.files().size(), 5u);
  for (const auto& f : ds.files()) {
    EXPECT_FALSE(f.ends_with(".dat")) << f;
    EXPECT_FALSE(f.ends_with(".u8")) << f;
  }
  EXPECT_GT(ds.train().size(), 1000000u);
  EXPECT_NEAR(static_cast<double>(ds.val().size()) / (ds.train().size() + ds.val().size()), 0.05, 0.001);
}

}  // namespace
}  // namespace duet::io
