// Mode auto's planner (core/decode/planner.h) with fake scorers and injected cost models: target beam
// search when big trees cost much more than one token, strict when the forward cost is flat; plans
// choose for unplanned K, round-trip through JSON and the cache; the decode mode type; the shared
// list judge (core/metrics/agreement.h).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cmath>
#include <random>

#include "core/decode/decode_mode.h"
#include "core/decode/planner.h"
#include "core/decode/runner.h"
#include "core/errors.h"
#include "core/metrics/agreement.h"
#include "core/vocab/constraint.h"
#include "tests/test_models.h"
#include "tests/test_util.h"
#include "tests/unit/fake_scorer.h"

namespace atspeed::decode {
namespace {

// Log-softmax of pseudo-random logits keyed by the path: a deterministic "model".
std::vector<float> hashed_row(const std::vector<int64_t>& path, int64_t vocab) {
  uint64_t h = 1469598103934665603ull;
  for (int64_t t : path) h = (h ^ static_cast<uint64_t>(t + 7)) * 1099511628211ull;
  std::mt19937_64 g(h);
  std::normal_distribution<float> nd;
  std::vector<float> z(static_cast<size_t>(vocab));
  for (auto& x : z) x = 2.0f * nd(g);
  const float mx = *std::max_element(z.begin(), z.end());
  double s = 0;
  for (float x : z) s += std::exp(static_cast<double>(x - mx));
  const float lse = mx + static_cast<float>(std::log(s));
  for (auto& x : z) x -= lse;
  return z;
}

struct Fakes {
  ItemCatalog catalog = ::atspeed::test::random_catalog(400, 13);
  PrefixTrie trie{catalog};
  int64_t vocab = catalog.vocab().size();
  // The draft equals the target: every drafted level is accepted, so only the costs decide.
  test::FakeScorer target{vocab, [v = vocab](const std::vector<int64_t>& p) { return hashed_row(p, v); }, true};
  test::FakeScorer draft{vocab, [v = vocab](const std::vector<int64_t>& p) { return hashed_row(p, v); }, true};
  std::vector<std::vector<int64_t>> calib = ::atspeed::test::prompts_for(4, 5);
};

PlannerOptions options() {
  PlannerOptions o;
  o.ks = {1, 5};
  return o;
}

TEST(PlannerTest, ChoosesTargetWhenTreesCostMuchMoreThanOneToken) {
  Fakes s;
  CostModel cost;
  // T(n) = 1 ms + 5 ms per token: a tree of 3N tokens costs what 3 steps of N do, plus the draft.
  cost.target = CostCurve::linear(0.001, 0.001, 0.005);
  cost.draft = CostCurve::linear(0.002, 0.002, 0.001);
  const Plan plan = make_plan(s.target, s.draft, s.trie, s.calib, cost, options());
  ASSERT_EQ(plan.choices.size(), 2u);
  for (const auto& c : plan.choices) {
    EXPECT_TRUE(c.mode.is_target()) << "K=" << c.k << " target " << c.target_s << " strict " << c.strict_s;
    EXPECT_GT(c.strict_s, c.target_s / 1.05) << "K=" << c.k;
  }
}

TEST(PlannerTest, ChoosesStrictWhenTheForwardCostIsFlat) {
  Fakes s;
  CostModel cost;
  // T(n) = 20 ms whatever n (a GPU-like regime); a draft forward costs 1% of it.
  cost.target = CostCurve::linear(0.020, 0.020, 0.0);
  cost.draft = CostCurve::linear(0.0002, 0.0002, 0.0);
  const Plan plan = make_plan(s.target, s.draft, s.trie, s.calib, cost, options());
  ASSERT_EQ(plan.choices.size(), 2u);
  for (const auto& c : plan.choices) {
    EXPECT_TRUE(c.mode.is_strict()) << "K=" << c.k << " target " << c.target_s << " strict " << c.strict_s;
    EXPECT_GE(c.target_s, 1.05 * c.strict_s);
    EXPECT_GT(c.accepted_levels_per_round, 1.0);  // draft == target: levels are accepted
    EXPECT_GE(c.draft_width, c.k);
    EXPECT_GE(c.gamma, 1);
    // Target beam search: a prefill and 3 steps of 20 ms per request (batch 1).
    EXPECT_NEAR(c.target_s, 0.080, 0.010);
  }
  // And decoding with the choice is still exact.
  for (const auto& c : plan.choices) {
    const auto want = run_batch(s.target, nullptr, s.trie, PlanChoice{c.k}.settings({}), s.calib);
    const auto got = run_batch(s.target, &s.draft, s.trie, c.settings({}), s.calib);
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(metrics::compare_lists(got[i].beams, want[i].beams, want[i].min_boundary_gap),
                metrics::Agreement::Identical);
    }
  }
}

TEST(PlannerTest, ChooseForUnplannedKAndJsonAndCache) {
  Plan plan;
  plan.key = "k1";
  PlanChoice a;
  a.k = 1;
  a.mode = DecodeMode::Strict;
  a.draft_width = 10;
  a.gamma = 3;
  PlanChoice b;
  b.k = 10;
  b.mode = DecodeMode::Strict;
  b.draft_width = 20;
  b.gamma = 2;
  plan.choices = {a, b};
  EXPECT_EQ(plan.choose(10).draft_width, 20);
  const PlanChoice mid = plan.choose(5);  // nearest planned K below: strict N=10 gamma 3
  EXPECT_TRUE(mid.mode.is_strict());
  EXPECT_EQ(mid.draft_width, 10);
  EXPECT_EQ(mid.gamma, 3);
  EXPECT_EQ(plan.choose(12).draft_width, 0);       // above the largest planned K: target
  EXPECT_TRUE(plan.choose(12).mode.is_target());
  EXPECT_TRUE(Plan{}.choose(3).mode.is_target());  // an empty plan (no draft): target

  const Plan back = plan_from_json(nlohmann::json::parse(to_json(plan).dump()));
  ASSERT_EQ(back.choices.size(), 2u);
  EXPECT_EQ(back.choices[1].draft_width, 20);
  EXPECT_TRUE(back.choices[0].mode.is_strict());

  ::atspeed::test::TempDir tmp;
  PlanKey key;
  key.target = "t";
  key.batch_size = 8;
  plan.key = key.text();
  save_plan(tmp.str(), plan);
  ASSERT_TRUE(load_cached_plan(tmp.str(), key).has_value());
  key.batch_size = 1;  // another batch size: another plan
  EXPECT_FALSE(load_cached_plan(tmp.str(), key).has_value());
}

TEST(PlannerTest, OptionsValidateNameTheField) {
  PlannerOptions o;
  o.min_speedup = 0.5;
  try {
    o.validate();
    ADD_FAILURE() << "min_speedup 0.5 accepted";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("decode.auto.min_speedup"), std::string::npos) << e.message();
  }
}

TEST(DecodeModeTest, ParsesTheFourNames) {
  for (const char* name : {"target", "strict", "relaxed", "auto"}) {
    EXPECT_STREQ(DecodeMode::parse(name, "x").name(), name);
  }
  EXPECT_FALSE(DecodeMode::from_name("fast").has_value());
  try {
    DecodeMode::parse("fast", "serve.default_mode");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("serve.default_mode"), std::string::npos);
  }
  EXPECT_TRUE(DecodeMode(DecodeMode::Auto).needs_draft());
  EXPECT_FALSE(DecodeMode(DecodeMode::Auto).is_speculative());
  EXPECT_EQ(effective_draft_width(0, 5), 5);
  EXPECT_EQ(effective_draft_width(3, 5), 5);
  EXPECT_EQ(effective_draft_width(40, 5), 40);
}

TEST(AgreementTest, IdenticalNearTieCascadeMismatch) {
  struct B {
    std::vector<int64_t> tokens;
    float score;
  };
  const std::vector<B> t = {{{1}, -1.0f}, {{2}, -1.00005f}};
  EXPECT_EQ(metrics::compare_lists(t, t, 1.0f), metrics::Agreement::Identical);
  const std::vector<B> swapped = {{{2}, -1.00005f}, {{1}, -1.0f}};
  EXPECT_EQ(metrics::compare_lists(swapped, t, 1.0f), metrics::Agreement::NearTie);
  const std::vector<B> other = {{{3}, -0.5f}, {{4}, -0.7f}};
  EXPECT_EQ(metrics::compare_lists(other, t, 1e-5f), metrics::Agreement::NearTieCascade);
  EXPECT_EQ(metrics::compare_lists(other, t, 1.0f), metrics::Agreement::Mismatch);
}

}  // namespace
}  // namespace atspeed::decode
