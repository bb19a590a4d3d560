// The strict invariant of speculative beam search (issue: AtSpeed-S returns exactly target beam
// search's items and order, up to near-ties) checked end to end through `atspeed bench decode` on a
// seeded sample of 200 test users per dataset: Beauty and Games when ../shared/data is present, the
// synthetic set otherwise. The target and one draft are trained here (briefly) with `atspeed
// train-target`; a second draft is random. K in {1, 3, 5, 10, 20}, N = K and N = 40.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/lcrec.h"
#include "tests/test_models.h"
#include "tests/test_util.h"

namespace atspeed {
namespace {

struct DatasetCase {
  std::string name;
  std::string args;  // config overrides selecting it
  std::string dir;
};

std::vector<DatasetCase> datasets(const test::TempDir& tmp) {
  const std::string root = test::shared_data_dir();
  if (!root.empty()) {
    return {{"beauty", " data=beauty data.dir=" + root + "/beauty", root + "/beauty"},
            {"games", " data=games data.dir=" + root + "/games", root + "/games"}};
  }
  const std::string dir = tmp.str("syn");
  auto r = test::run_atspeed("data synth --out " + dir);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return {{"synthetic", " data=synthetic data.source=files data.dir=" + dir, dir}};
}

void check_strict_rows(const nlohmann::json& bench, const std::string& what, bool expect_acceptance) {
  int rows = 0;
  double best_acceptance = 0;
  for (const auto& row : bench["results"]) {
    if (row["kind"] != "strict") continue;
    ++rows;
    const double n = row["requests"].get<double>();
    EXPECT_EQ(row["mismatches"], 0) << what << ": " << row.dump();
    EXPECT_DOUBLE_EQ(row["identical_fraction"].get<double>() + row["near_tie_flips"].get<double>() / n, 1.0) << what;
    best_acceptance = std::max(best_acceptance, row["accepted_levels_per_round"].get<double>());
    std::printf("[ info ] %s K=%lld %s: identical %.4f, near-tie flips %lld, accepted levels/round %.2f, target fw %.2f\n",
                what.c_str(), static_cast<long long>(row["k"].get<int64_t>()), row["method"].get<std::string>().c_str(),
                row["identical_fraction"].get<double>(), static_cast<long long>(row["near_tie_flips"].get<int64_t>()),
                row["accepted_levels_per_round"].get<double>(), row["target_forwards"].get<double>());
  }
  EXPECT_EQ(rows, 10) << what;  // 5 K x 2 N
  if (expect_acceptance) EXPECT_GT(best_acceptance, 0.0) << what << ": the trained draft never got a level accepted";
}

TEST(StrictInvariantTest, TrainedAndRandomDraftsOn200TestUsers) {
  test::TempDir tmp;
  for (const auto& ds_case : datasets(tmp)) {
    const std::string out = tmp.str(ds_case.name);
    const std::string train = " train=quickstart train.max_steps=30 train.eval_every=0 train.max_valid_samples=100"
                              " train.checkpoint_every=0 run.threads=2";
    auto r = test::run_atspeed("train-target" + ds_case.args + train +
                               " model=quickstart_target model.hidden_size=32 model.intermediate_size=64"
                               " run.out_dir=" + out + "/target");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = test::run_atspeed("train-target" + ds_case.args + train + " model=quickstart_draft run.out_dir=" + out + "/draft");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const Dataset ds = load_dataset(ds_case.dir);
    model::LlamaModel random = test::random_model(ds.catalog->vocab().size(), 17, 8);
    test::write_model_checkpoint(out + "/random.h5", random, ds.catalog->fingerprint(), "draft");

    for (const auto& [draft, trained] : std::vector<std::pair<std::string, bool>>{{out + "/draft/best.h5", true},
                                                                                 {out + "/random.h5", false}}) {
      const std::string json = out + (trained ? "/bench_trained.json" : "/bench_random.json");
      r = test::run_atspeed("bench decode" + ds_case.args + " decode.device=cpu run.threads=2 --target " + out +
                            "/target/best.h5 --draft " + draft + " --users 200 --batch-sizes 8 --plot none --json " +
                            json + " --ks 1 3 5 10 20 --draft-widths 0 40 --methods target strict");
      ASSERT_EQ(r.exit_code, 0) << r.output;
      const auto bench = nlohmann::json::parse(read_text_file(json));
      EXPECT_EQ(bench["users"], 200);
      check_strict_rows(bench, ds_case.name + (trained ? " trained draft" : " random draft"), trained);
    }
  }
}

}  // namespace
}  // namespace atspeed
