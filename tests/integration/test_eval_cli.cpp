// `atspeed eval` through the real binary: a tiny random target checkpoint on a synthetic dataset.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include "core/config.h"
#include "core/decode/beam_search.h"
#include "core/decode/tree_scorer.h"
#include "core/io/checkpoint.h"
#include "core/metrics/metrics.h"
#include "core/model/model_io.h"
#include "core/vocab/constraint.h"
#include "data/dataset.h"
#include "data/lcrec.h"
#include "data/samples.h"
#include "tests/test_models.h"
#include "tests/test_util.h"

namespace atspeed {
namespace {

using test::random_model;

void write_target(const std::string& path, model::LlamaModel& m, const std::string& fingerprint) {
  test::write_model_checkpoint(path, m, fingerprint, "target");
}

TEST(EvalCliTest, TinyTargetOnSyntheticData) {
  test::TempDir tmp;
  auto r = test::run_atspeed("data synth --out " + tmp.str("syn") + " --users 200 --items 150 --seed 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Dataset ds = load_dataset(tmp.str("syn"));
  model::LlamaModel m = random_model(ds.catalog->vocab().size());
  const std::string data_args = " data=synthetic data.source=files data.dir=" + tmp.str("syn");
  // A checkpoint from before data.prompt_format existed is evaluated on its resp prompts, one with
  // the key on its own layout, whatever the data config's default (stream) says.
  for (const std::string fmt : {"", "stream"}) {
    SCOPED_TRACE("prompt_format '" + fmt + "'");
    test::write_model_checkpoint(tmp.str("target.h5"), m, ds.catalog->fingerprint(), "target", fmt);
    r = test::run_atspeed("eval ckpt=" + tmp.str("target.h5") + data_args +
                          " eval.ks=[1,5] eval.max_users=25 eval.batch_size=4 decode.device=cpu eval.out=" +
                          tmp.str("eval.json"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    if (std::getenv("ATSPEED_TEST_VERBOSE")) std::cout << r.output;
    EXPECT_NE(r.output.find("Recall@K"), std::string::npos) << r.output;
    const auto j = nlohmann::json::parse(read_text_file(tmp.str("eval.json")));
    EXPECT_EQ(j["users"], 25);
    EXPECT_EQ(j["split"], "test");
    EXPECT_EQ(j["constraint"], "trie");
    ASSERT_EQ(j["per_k"].size(), 2u);

    // The same numbers in process: beam search per user and the most-popular list.
    auto samples = make_test_samples(ds, 20);
    samples.resize(25);
    const PromptFormat format(ds.catalog, PromptLayout::from_config(fmt.empty() ? "resp" : fmt, true));
    PrefixTrie trie(*ds.catalog);
    decode::LlamaTreeScorer scorer(m);
    metrics::TopKAccumulator model_acc({1, 5}), pop_acc({1, 5});
    const auto popular = metrics::most_popular_tuples(*ds.catalog, {&ds.train, &ds.valid}, 5);
    for (size_t ki = 0; ki < 2; ++ki) {
      decode::SearchOptions o;
      o.beam_width = ki == 0 ? 1 : 5;
      decode::TargetBeamSearch search(scorer, trie, o);
      for (const auto& s : samples) {
        std::vector<int64_t> truth, ranking;
        for (int64_t item : s.targets) truth.push_back(ds.catalog->tuple_of_item(item));
        const auto results = search.run({format.prompt(s.history)});
        for (const auto& b : results[0].beams) ranking.push_back(ds.catalog->find_tuple_by_tokens(b.tokens));
        EXPECT_EQ(static_cast<int64_t>(ranking.size()), o.beam_width);
        model_acc.add_at(ki, ranking, truth);
        pop_acc.add_at(ki, popular, truth);
      }
    }
    EXPECT_NEAR(j["model"]["recall@1"].get<double>(), model_acc.recall(0), 1e-9);
    EXPECT_NEAR(j["model"]["recall@5"].get<double>(), model_acc.recall(1), 1e-9);
    EXPECT_NEAR(j["model"]["ndcg@5"].get<double>(), model_acc.ndcg(1), 1e-9);
    EXPECT_NEAR(j["most_popular"]["recall@5"].get<double>(), pop_acc.recall(1), 1e-9);
    EXPECT_NEAR(j["most_popular"]["ndcg@1"].get<double>(), pop_acc.ndcg(0), 1e-9);
    EXPECT_GT(pop_acc.recall(1), 0.0);  // the synthetic data has popular clusters
    if (fmt.empty()) {
      EXPECT_NE(r.output.find("data.prompt_format = resp in"), std::string::npos) << r.output;  // warned
    }
  }

  // A checkpoint trained on another index: exit code 5 (Checkpoint), naming both fingerprints.
  write_target(tmp.str("other.h5"), m, "fnv1a64:0000:items=1:levels=4:codebook=256");
  r = test::run_atspeed("eval ckpt=" + tmp.str("other.h5") + data_args + " eval.out=" + tmp.str("x.json"));
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_NE(r.output.find("fnv1a64:0000"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(ds.catalog->fingerprint()), std::string::npos) << r.output;
  // Bad config values name the key.
  r = test::run_atspeed("eval ckpt=" + tmp.str("target.h5") + data_args + " eval.split=train");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("eval.split"), std::string::npos) << r.output;
  r = test::run_atspeed("eval" + data_args);
  EXPECT_NE(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace atspeed
