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
  auto r = test::run_atspeed("data synth --out " + tmp.str("syn") + " --users 200 --items 150 --seed 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Dataset ds = load_dataset(tmp.str("syn"));
  const int64_t vocab = ds.catalog->vocab().size();
  model::LlamaModel target = test::random_model(vocab, 3, 16);
  model::LlamaModel draft = test::random_model(vocab, 5, 8);
  test::write_model_checkpoint(tmp.str("target.h5"), target, ds.catalog->fingerprint(), "target");
  test::write_model_checkpoint(tmp.str("draft.h5"), draft, ds.catalog->fingerprint(), "draft");

  const std::string data_args = " data=synthetic data.source=files data.dir=" + tmp.str("syn") + " decode.device=cpu";
  r = test::run_atspeed("bench decode --target " + tmp.str("target.h5") + " --draft " + tmp.str("draft.h5") +
                        " --users 12 --ks 1 5 --batch-sizes 1 3 --methods target sampling naive strict relaxed adaptive"
                        " --calib-users 4 --draft-widths 0 40 --plot none --json " + tmp.str("bench.json") + data_args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("median ms"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ideal speedup"), std::string::npos) << r.output;
  const auto j = nlohmann::json::parse(read_text_file(tmp.str("bench.json")));
  EXPECT_EQ(j["users"], 12);
  std::set<std::string> methods;
  int strict_rows = 0, adaptive_rows = 0;
  for (const auto& row : j["results"]) {
    methods.insert(row["method"].get<std::string>());
    const std::string method = row["method"].get<std::string>();
    if (method.rfind("adaptive(", 0) == 0) {
      ++adaptive_rows;
      // Falling back to target beam search runs it as such; otherwise a strict configuration.
      EXPECT_EQ(row["kind"], method == "adaptive(target)" ? "target" : "strict") << row.dump();
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
  EXPECT_EQ(adaptive_rows, 2 * 2);
  ASSERT_EQ(j["adaptive"].size(), 2u);
  for (const auto& a : j["adaptive"]) {  // the choice follows the calibration times
    const bool fallback = a["calib_target_ms"].get<double>() <= a["calib_ms"].get<double>();
    EXPECT_EQ(a["fallback_to_target"].get<bool>(), fallback) << a.dump();
    EXPECT_EQ(a["n"].get<int64_t>() == 0, fallback) << a.dump();
  }
  for (const char* m : {"target", "sampling", "naive", "strict(N=1)", "strict(N=5)", "strict(N=40)", "relaxed(N=40)"}) {
    EXPECT_TRUE(methods.count(m)) << m;
  }
  EXPECT_EQ(j["cost_model"]["ideal"].size(), 2u);

  // Usage errors name the problem.
  // List flags take every following word, so config overrides go first (or after `--`).
  r = test::run_atspeed("bench decode" + data_args + " --target " + tmp.str("target.h5") + " --methods fastest");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("fastest"), std::string::npos) << r.output;
  r = test::run_atspeed("bench decode --target " + tmp.str("target.h5") + " --methods strict --" + data_args);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--draft"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace atspeed
