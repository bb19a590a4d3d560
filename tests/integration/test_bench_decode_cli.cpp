// `atspeed bench decode` through the real binary on a synthetic dataset with tiny random target and
// draft checkpoints: the table and JSON, and the strict invariant (every request identical to target
// beam search) for N = K and N = 40.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <set>
#include <string>

#include "data/dataset.h"
#include "data/lcrec.h"
#include "tests/test_models.h"
#include "tests/test_util.h"

namespace atspeed {
namespace {

TEST(BenchDecodeCliTest, TableJsonAndStrictInvariant) {
  test::TempDir tmp;
  ASSERT_TRUE(test::write_model_fixture(tmp));
  test::CommandResult r;
  const std::string data_args = " data=synthetic data.source=files data.dir=" + tmp.str("syn") + " decode.device=cpu";
  r = test::run_atspeed("bench decode --target " + tmp.str("target.h5") + " --draft " + tmp.str("draft.h5") +
                        " --users 12 --ks 1 5 --batch-sizes 1 3 --methods target sampling naive strict relaxed auto"
                        " --calib-users 4 --draft-widths 0 40 --plot none --json " + tmp.str("bench.json") +
                        " decode.auto.cache_dir=" + tmp.str("plans") + data_args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("median ms"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ideal speedup"), std::string::npos) << r.output;
  const auto j = nlohmann::json::parse(read_text_file(tmp.str("bench.json")));
  EXPECT_EQ(j["users"], 12);
  std::set<std::string> methods;
  int strict_rows = 0, auto_rows = 0;
  for (const auto& row : j["results"]) {
    methods.insert(row["method"].get<std::string>());
    const std::string method = row["method"].get<std::string>();
    if (method.rfind("auto(", 0) == 0) {
      ++auto_rows;
      // auto runs target beam search or a strict configuration: either way exact.
      EXPECT_EQ(row["kind"], method == "auto(target)" ? "target" : "strict") << row.dump();
      EXPECT_EQ(row["mismatches"], 0) << row.dump();
      continue;
    }
    EXPECT_EQ(row["requests"], 12);
    EXPECT_GT(row["median_ms"].get<double>(), 0.0);
    if (row["method"] == "target") EXPECT_DOUBLE_EQ(row["target_forwards"].get<double>(), 4.0);  // prefill + 3 steps
    if (row["kind"] == "strict") {
      ++strict_rows;
      EXPECT_EQ(row["mismatches"], 0) << row.dump();
      EXPECT_DOUBLE_EQ(row["identical_fraction"].get<double>() + row["near_tie_flips"].get<double>() / 12.0, 1.0);
      EXPECT_LE(row["target_forwards"].get<double>(), 4.0);  // at most one per level (prefill fused)
      EXPECT_GE(row["accepted_levels_per_round"].get<double>(), 0.0);
      // Same items as target beam search, so the same accuracy.
      for (const auto& t : j["results"]) {
        if (t["method"] == "target" && t["k"] == row["k"] && t["batch_size"] == row["batch_size"]) {
          EXPECT_DOUBLE_EQ(t["recall"].get<double>(), row["recall"].get<double>());
        }
      }
    }
  }
  EXPECT_EQ(strict_rows, 2 * 2 * 2);  // N in {K, 40} x K in {1, 5} x batch in {1, 3}
  EXPECT_EQ(auto_rows, 2 * 2);
  ASSERT_EQ(j["auto"].size(), 2u * 2u);  // a plan per batch size, a choice per K
  for (const auto& a : j["auto"]) {  // the choice follows the planner's predictions
    const bool strict = a["predicted_target_ms"].get<double>() >=
                        a["min_speedup"].get<double>() * a["predicted_strict_ms"].get<double>();
    EXPECT_EQ(a["mode"], strict ? "strict" : "target") << a.dump();
    EXPECT_EQ(a["n"].get<int64_t>() > 0, strict) << a.dump();
    EXPECT_FALSE(a["from_cache"].get<bool>());
  }
  for (const char* m : {"target", "sampling", "naive", "strict(N=1)", "strict(N=5)", "strict(N=40)", "relaxed(N=40)"}) {
    EXPECT_TRUE(methods.count(m)) << m;
  }
  EXPECT_EQ(j["cost_model"]["ideal"].size(), 2u);

  // The plans were cached: a second run reads them.
  r = test::run_atspeed("bench decode --target " + tmp.str("target.h5") + " --draft " + tmp.str("draft.h5") +
                        " --users 4 --ks 1 5 --batch-sizes 1 --methods target auto --calib-users 4 --plot none --json " +
                        tmp.str("again.json") + " decode.auto.cache_dir=" + tmp.str("plans") + data_args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const auto& a : nlohmann::json::parse(read_text_file(tmp.str("again.json")))["auto"]) {
    EXPECT_TRUE(a["from_cache"].get<bool>()) << a.dump();
  }

  // Usage errors name the problem.
  // List flags take every following word, so config overrides go first (or after `--`).
  r = test::run_atspeed("bench decode" + data_args + " --target " + tmp.str("target.h5") + " --methods fastest");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("fastest"), std::string::npos) << r.output;
  r = test::run_atspeed("bench decode --target " + tmp.str("target.h5") + " --methods strict --" + data_args);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--draft"), std::string::npos) << r.output;
}

// Issue 20: a draft width listed twice in effect (0 means N = K, so `0 5` at K = 5 names N = 5 twice)
// runs once and reports no false mismatch; literal duplicates in a list option are usage errors.
TEST(BenchDecodeCliTest, DuplicateConfigurationsRunOnceAndDuplicateValuesAreRefused) {
  test::TempDir tmp;
  ASSERT_TRUE(test::write_model_fixture(tmp));
  const std::string common = " --target " + tmp.str("target.h5") + " --draft " + tmp.str("draft.h5") +
                             " --users 10 --methods target strict --plot none --json " + tmp.str("dup.json") +
                             " -- data=synthetic data.source=files data.dir=" + tmp.str("syn") + " decode.device=cpu";
  auto r = test::run_atspeed("bench decode --batch-sizes 1 --draft-widths 0 5 --ks 5" + common);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("differs from target beam search"), std::string::npos) << r.output;
  const auto j = nlohmann::json::parse(read_text_file(tmp.str("dup.json")));
  int strict_rows = 0;
  for (const auto& row : j["results"]) {
    if (row["kind"] != "strict") continue;
    ++strict_rows;
    EXPECT_EQ(row["method"], "strict(N=5)");
    EXPECT_EQ(row["requests"], 10);
    EXPECT_DOUBLE_EQ(row["identical_fraction"].get<double>(), 1.0) << row.dump();
    EXPECT_EQ(row["mismatches"], 0);
  }
  EXPECT_EQ(strict_rows, 1);  // N = 5 once
  for (const auto& [args, option] : std::vector<std::pair<std::string, std::string>>{
           {"--batch-sizes 1 --ks 5 5", "--ks lists 5 twice"},
           {"--batch-sizes 1 1 --ks 5", "--batch-sizes lists 1 twice"},
           {"--batch-sizes 1 --draft-widths 5 5 --ks 5", "--draft-widths lists 5 twice"}}) {
    r = test::run_atspeed("bench decode " + args + common);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(option), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace atspeed
