// `atspeed data stats|synth` and `atspeed preprocess` through the real binary. The exact counts on
// the shipped Beauty and Games data are SPEC §1.2 / §1.3.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <map>
#include <fstream>

#include "data/dataset.h"
#include "data/lcrec.h"
#include "tests/test_util.h"

namespace atspeed {
namespace {

nlohmann::json stats_json(const std::string& dir, const test::TempDir& tmp, double* seconds = nullptr) {
  const auto start = std::chrono::steady_clock::now();
  const auto r = test::run_atspeed("data stats " + dir + " --json " + tmp.str("stats.json"));
  if (seconds) *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return nlohmann::json::parse(read_text_file(tmp.str("stats.json")));
}

struct Expected {
  int64_t users, items, train, valid, test, total, nonempty_valid, nonempty_test, len_min, len_max;
  double len_mean;
  int64_t len_one, unseen_valid, unseen_test;
  std::vector<int64_t> test_by_count;
  int64_t tuples, groups, surplus;
  std::map<std::string, int64_t> group_sizes;
  std::vector<int64_t> codes_per_level;
  int64_t code_tokens;
  std::vector<double> fan_mean;
  std::vector<int64_t> fan_max;
  int64_t train_last, train_prefixes;
  double hist_mean, hist_capped;
};

void check(const nlohmann::json& j, const Expected& e) {
  EXPECT_EQ(j["users"], e.users);
  EXPECT_EQ(j["items"], e.items);
  EXPECT_EQ(j["interactions"]["train"], e.train);
  EXPECT_EQ(j["interactions"]["valid"], e.valid);
  EXPECT_EQ(j["interactions"]["test"], e.test);
  EXPECT_EQ(j["interactions"]["total"], e.total);
  EXPECT_EQ(j["users_nonempty"]["valid"], e.nonempty_valid);
  EXPECT_EQ(j["users_nonempty"]["test"], e.nonempty_test);
  EXPECT_EQ(j["train_length"]["min"], e.len_min);
  EXPECT_EQ(j["train_length"]["max"], e.len_max);
  EXPECT_NEAR(j["train_length"]["mean"].get<double>(), e.len_mean, 0.005);
  EXPECT_EQ(j["train_length"]["users_with_length_1"], e.len_one);
  EXPECT_EQ(j["unseen_in_train"]["valid_items"], e.unseen_valid);
  EXPECT_EQ(j["unseen_in_train"]["test_items"], e.unseen_test);
  EXPECT_EQ(j["repeated_in_train"], 0);
  EXPECT_EQ(j["test_users_by_count"].get<std::vector<int64_t>>(), e.test_by_count);
  EXPECT_EQ(j["index"]["distinct_tuples"], e.tuples);
  EXPECT_EQ(j["index"]["collision_groups"], e.groups);
  EXPECT_EQ(j["index"]["surplus_items"], e.surplus);
  const auto sizes = j["index"]["collision_group_sizes"].get<std::map<std::string, int64_t>>();
  EXPECT_EQ(sizes, e.group_sizes);
  EXPECT_EQ(j["index"]["codes_used_per_level"].get<std::vector<int64_t>>(), e.codes_per_level);
  EXPECT_EQ(j["index"]["distinct_code_tokens"], e.code_tokens);
  const auto& fan = j["index"]["trie_fanout"];
  ASSERT_EQ(fan.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(fan[i]["level"], static_cast<int>(i) + 2);
    EXPECT_NEAR(fan[i]["mean"].get<double>(), e.fan_mean[i], 0.05) << "level " << i + 2;
    EXPECT_EQ(fan[i]["max"], e.fan_max[i]) << "level " << i + 2;
  }
  EXPECT_EQ(j["samples"]["train_last"], e.train_last);
  EXPECT_EQ(j["samples"]["train_all_prefixes"], e.train_prefixes);
  EXPECT_EQ(j["samples"]["valid"], e.nonempty_valid);
  EXPECT_EQ(j["samples"]["test"], e.nonempty_test);
  EXPECT_NEAR(j["test_history"]["mean"].get<double>(), e.hist_mean, 0.05);
  EXPECT_NEAR(j["test_history"]["capped_share"].get<double>(), e.hist_capped, 0.0005);
  // Shares as SPEC prints them (one decimal).
  const double shares[3] = {j["share"]["train"], j["share"]["valid"], j["share"]["test"]};
  const double expect[3] = {double(e.train) / double(e.total), double(e.valid) / double(e.total), double(e.test) / double(e.total)};
  for (int k = 0; k < 3; ++k) EXPECT_DOUBLE_EQ(shares[k], expect[k]);
}

TEST(DataCliTest, StatsMatchSpecOnBeauty) {
  const std::string root = test::shared_data_dir();
  if (root.empty()) GTEST_SKIP() << "../shared/data/amazon not present";
  test::TempDir tmp;
  double secs = 0;
  const auto j = stats_json(root + "/beauty", tmp, &secs);
  check(j, {19383, 12035, 122241, 9316, 7313, 138870, 4295, 3553, 2, 165, 6.31, 0, 176, 269,
            {2038, 737, 374, 161, 81, 162}, 12023, 9, 12, {{"2", 7}, {"3", 1}, {"4", 1}},
            {91, 256, 256, 256}, 859, {71.9, 1.71, 1.08}, {159, 22, 36}, 19383, 102858, 7.3, 0.087});
  EXPECT_LT(secs, 10.0);
}

TEST(DataCliTest, StatsMatchSpecOnGames) {
  const std::string root = test::shared_data_dir();
  if (root.empty()) GTEST_SKIP() << "../shared/data/amazon not present";
  test::TempDir tmp;
  double secs = 0;
  const auto j = stats_json(root + "/games", tmp, &secs);
  check(j, {49156, 17332, 299987, 22609, 19733, 342329, 9609, 8696, 1, 658, 6.10, 3382, 585, 656,
            {4558, 1857, 934, 529, 261, 557}, 17289, 41, 43, {{"2", 39}, {"3", 2}},
            {248, 256, 254, 256}, 1014, {45.6, 1.47, 1.04}, {94, 16, 9}, 45774, 250831, 6.0, 0.054});
  EXPECT_LT(secs, 10.0);
}

TEST(DataCliTest, StatsPrintsTheCounts) {
  const std::string root = test::shared_data_dir();
  if (root.empty()) GTEST_SKIP() << "../shared/data/amazon not present";
  const auto r = test::run_atspeed("data stats " + root + "/beauty");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("122241 / 9316 / 7313"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("88.0 % / 6.7 % / 5.3 %"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("9 / 12 (7 of size 2, 1 of size 3, 1 of size 4)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("71.86 / 1.71 / 1.08"), std::string::npos) << r.output;
}

TEST(DataCliTest, SynthThenStats) {
  test::TempDir tmp;
  auto r = test::run_atspeed("data synth --out " + tmp.str("syn") + " --users 300 --items 200 --seed 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_atspeed("data stats " + tmp.str("syn"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("distinct code tuples"), std::string::npos);
}

TEST(DataCliTest, SyntheticViaConfig) {
  test::TempDir tmp;
  // The config route: data=synthetic generates into data.dir on first use. Uses a copy of configs/
  // whose defaults list has a data group (added here if configs/config.yaml lacks it).
  std::filesystem::copy(std::string(ATSPEED_SOURCE_DIR) + "/configs", tmp.str("configs"),
                        std::filesystem::copy_options::recursive);
  std::string primary = read_text_file(tmp.str("configs/config.yaml"));
  if (primary.find("- data:") == std::string::npos) {
    primary.replace(primary.find("defaults:"), 9, "defaults:\n  - data: beauty");
    write_text_file_atomic(tmp.str("configs/config.yaml"), primary);
  }
  // Run from tmp so that nothing lands in the source tree whatever data.dir resolves to.
  const auto r = test::run_command("cd " + tmp.str() + " && " + ATSPEED_BIN + " --config-dir " + tmp.str("configs") +
                        " data stats data=synthetic data.dir=" + tmp.str("cfg") + " data.synthetic.users=200");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(tmp.str("cfg/synth.json")));
}

TEST(DataCliTest, BadDataExitsWithDataErrorNamingTheLine) {
  test::TempDir tmp;
  ASSERT_EQ(test::run_atspeed("data synth --out " + tmp.str("syn") + " --users 100 --items 100").exit_code, 0);
  std::ofstream(tmp.str("syn/sequential_valid.txt"), std::ios::app) << "x\n";
  const auto r = test::run_atspeed("data stats " + tmp.str("syn"));
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_NE(r.output.find("sequential_valid.txt:"), std::string::npos) << r.output;
  EXPECT_EQ(test::run_atspeed("data stats " + tmp.str("nothing")).exit_code, 4);
}

TEST(DataCliTest, PreprocessWritesALoadableDataset) {
  test::TempDir tmp;
  // 40 users x 6 items over 30 asins, day-granular times: enough for the 10 % split.
  std::ofstream out(tmp.str("reviews.json"));
  for (int u = 0; u < 40; ++u)
    for (int k = 0; k < 6; ++k)
      out << R"({"reviewerID": "U)" << u << R"(", "asin": "B)" << (u * 7 + k * 3) % 30 << R"(", "overall": )"
          << (k == 5 && u % 3 == 0 ? 2.0 : 5.0) << R"(, "unixReviewTime": )" << 86400 * (u + 10 * k) << "}\n";
  out.close();
  auto r = test::run_atspeed("preprocess --input " + tmp.str("reviews.json") + " --out " + tmp.str("toy") + " --kmeans-iters 5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto ds = load_dataset(tmp.str("toy"));
  EXPECT_GT(ds.num_users(), 0);
  EXPECT_EQ(ds.catalog->surplus_items(), 0);  // 30 items: disambiguation leaves no collision
  EXPECT_TRUE(std::filesystem::exists(tmp.str("toy/items.txt")));
  EXPECT_TRUE(std::filesystem::exists(tmp.str("toy/toy.LCRec-1e-3lr.json")));
  r = test::run_atspeed("data stats " + tmp.str("toy"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // Reusing codes keyed by raw asin.
  std::ofstream codes(tmp.str("codes.json"));
  codes << "{";
  for (int i = 0; i < 30; ++i) codes << (i ? ", " : "") << "\"B" << i << "\": [\"<a_" << i % 4 << ">\", \"<b_" << i << ">\", \"<c_0>\", \"<d_0>\"]";
  codes << "}";
  codes.close();
  r = test::run_atspeed("preprocess --input " + tmp.str("reviews.json") + " --out " + tmp.str("toy2") + " --codes " +
                        tmp.str("codes.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto ds2 = load_dataset(tmp.str("toy2"));
  const auto items = read_text_file(tmp.str("toy2/items.txt"));
  const std::string first = items.substr(0, items.find('\n'));
  EXPECT_EQ(ds2.catalog->codes(0)[1], std::stoi(first.substr(1)));
}

}  // namespace
}  // namespace atspeed
