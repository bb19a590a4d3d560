// Speculative beam search (SPEC §3, §8, §9): the strict invariant (== target beam search for any
// draft, N = K and N = 40, K in {1,3,5,10,20}), acceptance with draft == target, relaxed rules and
// their statistics, batching, and the same on tiny random LLaMA models with real KV caches.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <set>
#include <vector>

#include "core/decode/beam_search.h"
#include "core/decode/speculative.h"
#include "core/decode/tree_scorer.h"
#include "core/errors.h"
#include "core/model/llama.h"
#include "core/vocab/constraint.h"
#include "core/vocab/item_catalog.h"
#include "tests/test_models.h"
#include "tests/unit/fake_scorer.h"

namespace atspeed::decode {
namespace {

using test::FakeScorer;

using ::atspeed::test::random_catalog;

// Log-softmax of pseudo-random logits keyed by the path; `noise` perturbs them with another stream
// (a draft that agrees with the target only partly). noise < 0: an unrelated random model.
std::vector<float> path_row(const std::vector<int64_t>& path, int64_t vocab, double noise, uint64_t salt) {
  uint64_t h = 1469598103934665603ull;
  for (int64_t t : path) h = (h ^ static_cast<uint64_t>(t + 7)) * 1099511628211ull;
  std::mt19937_64 g(noise < 0 ? h ^ salt : h);
  std::normal_distribution<float> nd;
  std::vector<float> z(static_cast<size_t>(vocab));
  for (auto& x : z) x = 2.0f * nd(g);
  if (noise > 0) {
    std::mt19937_64 g2(h ^ salt);
    for (auto& x : z) x += static_cast<float>(noise) * nd(g2);
  }
  float mx = *std::max_element(z.begin(), z.end());
  double s = 0;
  for (float x : z) s += std::exp(static_cast<double>(x - mx));
  const float lse = mx + static_cast<float>(std::log(s));
  for (auto& x : z) x -= lse;
  return z;
}

using ::atspeed::test::prompts_for;

void expect_same_beams(const std::vector<Beam>& got, const std::vector<Beam>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].tokens, want[i].tokens) << what << " beam " << i;
    EXPECT_EQ(got[i].score, want[i].score) << what << " beam " << i;
  }
}

struct Fakes {
  ItemCatalog catalog = random_catalog();
  PrefixTrie trie{catalog};
  int64_t vocab = catalog.vocab().size();
  FakeScorer target{vocab, [v = vocab](const std::vector<int64_t>& p) { return path_row(p, v, 0.0, 0); }, true};
  FakeScorer draft;
  explicit Fakes(double noise, uint64_t salt = 99)
      : draft(vocab, [v = vocab, noise, salt](const std::vector<int64_t>& p) { return path_row(p, v, noise, salt); }, true) {}
};

TEST(SpeculativeTest, StrictEqualsTargetBeamSearchForAnyDraft) {
  for (double noise : {-1.0, 1.0}) {  // an unrelated random draft, and a partly agreeing one
    Fakes f(noise);
    int64_t accepted = 0, rejected = 0;
    const auto prompts = prompts_for(6, 3);
    for (int64_t k : {1, 3, 5, 10, 20}) {
      SearchOptions so;
      so.beam_width = k;
      TargetBeamSearch baseline(f.target, f.trie, so);
      const auto want = baseline.run(prompts);
      for (int64_t n : {k, int64_t{40}}) {
        SpeculativeOptions o;
        o.beam_width = k;
        o.draft_width = n;
        SpeculativeBeamSearch spec(f.target, f.draft, f.trie, o);
        const auto got = spec.run(prompts);
        ASSERT_EQ(got.size(), prompts.size());
        for (size_t i = 0; i < prompts.size(); ++i) {
          const std::string what = "noise " + std::to_string(noise) + " K=" + std::to_string(k) + " N=" +
                                   std::to_string(n) + " request " + std::to_string(i);
          expect_same_beams(got[i].beams, want[i].beams, what);
          const auto& st = got[i].stats;
          EXPECT_GE(st.rounds, 1) << what;
          EXPECT_LE(st.target_calls, 4) << what;  // at most one forward per level (prefill fused, SPEC §3.1)
          int64_t levels = 0;
          for (size_t r = 0; r < st.accepted_levels.size(); ++r) {
            EXPECT_LE(st.accepted_levels[r], st.drafted_levels[r]) << what;
            levels += st.accepted_levels[r] + 1;
            accepted += st.accepted_levels[r];
            rejected += st.accepted_levels[r] < st.drafted_levels[r];
          }
          EXPECT_LE(levels, 4) << what;
        }
      }
    }
    // Both branches of verification ran: levels were accepted and levels were rejected.
    EXPECT_GT(rejected, 0) << "noise " << noise;
    if (noise > 0) EXPECT_GT(accepted, 0) << "noise " << noise;
    std::printf("[ info ] draft noise %.1f: %lld accepted levels, %lld rejecting rounds\n", noise,
                static_cast<long long>(accepted), static_cast<long long>(rejected));
  }
}

TEST(SpeculativeTest, DraftEqualToTargetAcceptsLevelOneEveryRound) {
  Fakes f(0.0);  // the draft's rows are the target's, bit for bit
  const auto prompts = prompts_for(8, 5);
  for (int64_t k : {1, 3, 5, 10, 20}) {
    SpeculativeOptions o;
    o.beam_width = k;
    o.draft_width = 40;
    SpeculativeBeamSearch spec(f.target, f.draft, f.trie, o);
    const auto got = spec.run(prompts);
    double target_calls = 0;
    for (const auto& r : got) {
      for (int64_t m : r.stats.accepted_levels) EXPECT_GE(m, 1) << "K=" << k;
      target_calls += static_cast<double>(r.stats.target_calls);
    }
    target_calls /= static_cast<double>(got.size());
    // Target beam search takes 4 forwards (prefill + 3 steps); here every round decides at least
    // 2 of the 4 levels (level 1 accepted + the bonus level), so at most 2 rounds of one forward.
    EXPECT_LE(target_calls, 2.0) << "K=" << k;
  }
}

TEST(SpeculativeTest, StrictBatchedEqualsOneByOne) {
  Fakes f(1.0);
  const auto prompts = prompts_for(7, 9);
  SpeculativeOptions o;
  o.beam_width = 5;
  o.draft_width = 12;
  SpeculativeBeamSearch spec(f.target, f.draft, f.trie, o);
  const auto batched = spec.run(prompts);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto one = spec.run({prompts[i]});
    expect_same_beams(batched[i].beams, one[0].beams, "request " + std::to_string(i));
    EXPECT_EQ(batched[i].stats.accepted_levels, one[0].stats.accepted_levels) << i;
  }
}

TEST(SpeculativeTest, GammaOneFeedsAcceptedLevelsTheDraftNeverSaw) {
  // gamma = 1: every round drafts one level; when it is accepted the draft has not fed that level,
  // so the next round must feed it before the frontier (SPEC §3.6, last point).
  Fakes f(0.0);
  const auto prompts = prompts_for(4, 13);
  SearchOptions so;
  so.beam_width = 3;
  TargetBeamSearch baseline(f.target, f.trie, so);
  const auto want = baseline.run(prompts);
  SpeculativeOptions o;
  o.beam_width = 3;
  o.draft_width = 10;
  o.gamma = 1;
  SpeculativeBeamSearch spec(f.target, f.draft, f.trie, o);
  const auto got = spec.run(prompts);
  for (size_t i = 0; i < prompts.size(); ++i) {
    expect_same_beams(got[i].beams, want[i].beams, "request " + std::to_string(i));
    EXPECT_EQ(got[i].stats.accepted_levels, (std::vector<int64_t>{1, 1})) << i;  // 2 + 2 levels
  }
}

TEST(SpeculativeTest, RelaxedOutputsValidDistinctItemsReproducibly) {
  Fakes f(1.0);
  const auto prompts = prompts_for(5, 17);
  for (int64_t k : {1, 5, 20}) {
    SpeculativeOptions o;
    o.beam_width = k;
    o.draft_width = 40;
    o.verification = DecodeMode::Relaxed;
    o.seed = 2025;
    SpeculativeBeamSearch spec(f.target, f.draft, f.trie, o);
    const auto a = spec.run(prompts);
    const auto b = spec.run(prompts);
    for (size_t i = 0; i < prompts.size(); ++i) {
      expect_same_beams(a[i].beams, b[i].beams, "seeded rerun");
      EXPECT_EQ(static_cast<int64_t>(a[i].beams.size()), k);
      std::set<std::vector<int64_t>> distinct;
      for (const auto& beam : a[i].beams) {
        EXPECT_GE(f.catalog.find_tuple_by_tokens(beam.tokens), 0) << "not an item";
        EXPECT_TRUE(std::isfinite(beam.score));
        distinct.insert(beam.tokens);
      }
      EXPECT_EQ(distinct.size(), a[i].beams.size());
      for (size_t j = 1; j < a[i].beams.size(); ++j) EXPECT_GE(a[i].beams[j - 1].score, a[i].beams[j].score);
    }
    // Batched == one by one, given the same per-request seeds.
    const auto one = spec.run({prompts[2]}, {2025 + 2});
    expect_same_beams(a[2].beams, one[0].beams, "relaxed batched vs single");
  }
}

TEST(SpeculativeTest, RelaxedWithDraftEqualToTargetAcceptsLevelOne) {
  // p / q = 1 at level 1 (SPEC §8), so all N drafted candidates pass and level 1 is accepted.
  Fakes f(0.0);
  const auto prompts = prompts_for(6, 19);
  SpeculativeOptions o;
  o.beam_width = 5;
  o.draft_width = 40;
  o.verification = DecodeMode::Relaxed;
  SpeculativeBeamSearch spec(f.target, f.draft, f.trie, o);
  for (const auto& r : spec.run(prompts)) {
    ASSERT_FALSE(r.stats.accepted_levels.empty());
    for (int64_t m : r.stats.accepted_levels) EXPECT_GE(m, 1);
  }
}

TEST(SpeculativeTest, RelaxedAcceptanceRule) {
  EXPECT_TRUE(relaxed_accept(0.5, 0.25, 0.999));   // p/q = 2: always
  EXPECT_TRUE(relaxed_accept(0.2, 0.4, 0.49));     // u < 0.5
  EXPECT_FALSE(relaxed_accept(0.2, 0.4, 0.5));     // strict <
  EXPECT_FALSE(relaxed_accept(0.0, 0.4, 0.0));     // p = 0 is never accepted, even with u = 0
  EXPECT_THROW(relaxed_accept(0.1, 0.0, 0.5), Error);
}

TEST(SpeculativeTest, RelaxedAcceptanceFrequencyIsMinOneRatio) {
  // Over many seeds, a candidate with ratio p/q passes with frequency min(1, p/q) (binomial
  // standard error; 5 sigma bounds so the seeded test cannot flake).
  const std::vector<std::pair<double, double>> pq = {{0.1, 0.4}, {0.3, 0.5}, {0.2, 0.2}, {0.6, 0.3}, {0.01, 0.9}};
  const int trials = 20000;
  for (const auto& [p, q] : pq) {
    int accepted = 0;
    for (int s = 0; s < trials; ++s) {
      std::mt19937_64 rng(static_cast<uint64_t>(s) * 7919 + 1);
      const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
      accepted += relaxed_accept(p, q, u);
    }
    const double want = std::min(1.0, p / q), freq = static_cast<double>(accepted) / trials;
    const double se = std::sqrt(std::max(want * (1 - want), 1e-12) / trials);
    EXPECT_NEAR(freq, want, 5 * se + 1e-12) << "p=" << p << " q=" << q;
  }
}

TEST(SpeculativeTest, DrawWithoutReplacement) {
  std::mt19937_64 rng(1);
  const std::vector<double> w = {0.0, 1.0, 3.0, 0.0, 2.0};
  for (int rep = 0; rep < 200; ++rep) {
    const auto picks = draw_without_replacement(w, 5, rng);
    ASSERT_EQ(picks.size(), 3u);  // only three positive entries: never a zero one
    EXPECT_EQ(std::set<int64_t>(picks.begin(), picks.end()), (std::set<int64_t>{1, 2, 4}));
  }
  // The first draw is proportional to the weights.
  int first_is_2 = 0;
  const int trials = 30000;
  for (int s = 0; s < trials; ++s) first_is_2 += draw_without_replacement(w, 1, rng)[0] == 2;
  EXPECT_NEAR(first_is_2 / static_cast<double>(trials), 0.5, 5 * std::sqrt(0.25 / trials));
  EXPECT_TRUE(draw_without_replacement({0.0, 0.0}, 2, rng).empty());
}

TEST(SpeculativeTest, OptionsValidate) {
  SpeculativeOptions o;
  o.beam_width = 10;
  o.draft_width = 5;
  EXPECT_THROW(o.validate(), Error);  // N < K
  o.draft_width = 10;
  EXPECT_NO_THROW(o.validate());
  o.gamma = 0;
  EXPECT_THROW(o.validate(), Error);
  EXPECT_THROW(DecodeMode::parse("lossy", "decode.verification"), Error);
  EXPECT_TRUE(DecodeMode::parse("relaxed", "decode.verification").is_relaxed());
}

// ---------------------------------------------------------------------------------------------
// Tiny random LLaMA target and draft through LlamaTreeScorer (real KV caches and compaction).

model::LlamaModel tiny_llama(int64_t vocab, int64_t hidden, int64_t layers, uint64_t seed) {
  return atspeed::test::random_model(vocab, seed, hidden, layers);
}

TEST(SpeculativeLlamaTest, StrictEqualsTargetBeamSearchWithRealCaches) {
  const ItemCatalog catalog = random_catalog(300, 23);
  PrefixTrie trie(catalog);
  const int64_t vocab = catalog.vocab().size();
  LlamaTreeScorer target(tiny_llama(vocab, 32, 2, 1));
  LlamaTreeScorer draft(tiny_llama(vocab, 16, 1, 2));
  const auto prompts = prompts_for(4, 29);
  for (int64_t k : {1, 5, 10}) {
    SearchOptions so;
    so.beam_width = k;
    TargetBeamSearch baseline(target, trie, so);
    const auto want = baseline.run(prompts);
    for (int64_t n : {k, int64_t{40}}) {
      SpeculativeOptions o;
      o.beam_width = k;
      o.draft_width = n;
      SpeculativeBeamSearch spec(target, draft, trie, o);
      const auto got = spec.run(prompts);
      for (size_t i = 0; i < prompts.size(); ++i) {
        ASSERT_EQ(got[i].beams.size(), want[i].beams.size());
        for (size_t j = 0; j < got[i].beams.size(); ++j) {
          // Tree vs row-wise attention differ by float noise only; this random model has no near-ties.
          EXPECT_EQ(got[i].beams[j].tokens, want[i].beams[j].tokens) << "K=" << k << " N=" << n << " req " << i;
          EXPECT_NEAR(got[i].beams[j].score, want[i].beams[j].score, 1e-4);
        }
      }
    }
  }
}

TEST(SpeculativeLlamaTest, DraftEqualToTargetUsesFewTargetForwards) {
  const ItemCatalog catalog = random_catalog(300, 31);
  PrefixTrie trie(catalog);
  const int64_t vocab = catalog.vocab().size();
  model::LlamaModel m = tiny_llama(vocab, 32, 2, 3);
  LlamaTreeScorer target(m);
  LlamaTreeScorer draft(m);
  SpeculativeOptions o;
  o.beam_width = 5;
  o.draft_width = 40;
  SpeculativeBeamSearch spec(target, draft, trie, o);
  const auto got = spec.run(prompts_for(4, 37));
  for (const auto& r : got) {
    for (int64_t m_acc : r.stats.accepted_levels) EXPECT_GE(m_acc, 1);
    EXPECT_LE(r.stats.target_calls, 2);  // the real scorer: the prompt goes into the first verification
  }
}

// The lean path's contract (issue 19): every forward a search reads costs exactly one copy to the
// host, of the constraint-allowed log-probs only (never whole [rows, V] rows), and the decode time
// splits into forwards and the rest.
TEST(SpeculativeLlamaTest, OneSmallCopyToTheHostPerForward) {
  const ItemCatalog catalog = random_catalog(300, 43);
  PrefixTrie trie(catalog);
  const int64_t vocab = catalog.vocab().size();
  LlamaTreeScorer target(tiny_llama(vocab, 32, 2, 5));
  LlamaTreeScorer draft(tiny_llama(vocab, 16, 1, 6));
  const auto prompts = prompts_for(3, 47);
  const int64_t widest = static_cast<int64_t>(trie.allowed({}).size());  // a level's codes: the most a row allows
  for (int64_t k : {1, 5}) {
    SearchOptions so;
    so.beam_width = k;
    const int64_t t0 = target.counters().forwards;
    const auto base = TargetBeamSearch(target, trie, so).run(prompts);
    const int64_t forwards = target.counters().forwards - t0;
    const TransferStats& tb = base[0].stats.to_host;
    EXPECT_EQ(tb.copies, forwards) << "K=" << k;
    // At most K rows per request, each at most `widest` values; dense rows would be V each.
    EXPECT_LE(tb.bytes, forwards * static_cast<int64_t>(prompts.size()) * k * widest * 4) << "K=" << k;
    EXPECT_LT(tb.bytes, forwards * static_cast<int64_t>(prompts.size()) * vocab * 4) << "K=" << k;
    EXPECT_GT(base[0].stats.forward_seconds, 0.0);
    EXPECT_LE(base[0].stats.forward_seconds, base[0].stats.seconds);
    for (DecodeMode mode : {DecodeMode::Strict, DecodeMode::Relaxed}) {
      SpeculativeOptions o;
      o.beam_width = k;
      o.draft_width = 10;
      o.verification = mode;
      const int64_t tf = target.counters().forwards, df = draft.counters().forwards;
      const auto got = SpeculativeBeamSearch(target, draft, trie, o).run(prompts);
      const int64_t both = target.counters().forwards - tf + draft.counters().forwards - df;
      const SpeculativeStats& st = got[0].stats;
      EXPECT_EQ(st.to_host.copies, both) << mode.name() << " K=" << k;
      EXPECT_GT(st.to_host.bytes, 0);
      EXPECT_GT(st.target_forward_seconds, 0.0);
      EXPECT_GT(st.draft_forward_seconds, 0.0);
      EXPECT_LE(st.target_forward_seconds + st.draft_forward_seconds, st.seconds);
    }
  }
}

TEST(SpeculativeLlamaTest, DeferredPrefillEqualsPrefillThenExtend) {
  const ItemCatalog catalog = random_catalog(300, 31);
  const int64_t vocab = catalog.vocab().size();
  model::LlamaModel m = tiny_llama(vocab, 32, 2, 4);
  const auto prompts = prompts_for(3, 41);
  // Two requests' trees: a chain from the prompt's last slot and a fork, with a padding node.
  LlamaTreeScorer eager(m), fused(m);
  const at::Tensor want_first = eager.prefill(prompts);
  fused.prefill_deferred(prompts);
  ASSERT_EQ(fused.length(), eager.length());
  EXPECT_THROW(fused.prompt_logprobs(), Error);  // not fed yet
  EXPECT_THROW(fused.truncate(1), Error);
  const int64_t b = static_cast<int64_t>(prompts.size());
  at::Tensor tokens = at::full({b, 3}, Vocabulary::kPad, at::kLong);
  at::Tensor parents = at::full({b, 3}, -1, at::kLong);
  const int64_t base = eager.length();
  for (int64_t r = 0; r < b; ++r) {
    const int64_t last = eager.prompt_length(r) - 1;
    tokens[r][0] = catalog.vocab().code_token(0, r % 3);
    tokens[r][1] = catalog.vocab().code_token(0, (r + 1) % 3);
    parents[r][0] = last;
    parents[r][1] = last;
    if (r != 1) {  // request 1 has a padding node
      tokens[r][2] = catalog.vocab().code_token(1, r % 5);
      parents[r][2] = base;  // child of node 0
    }
  }
  const at::Tensor want = eager.extend(tokens, parents);
  const at::Tensor got = fused.extend(tokens, parents);
  EXPECT_EQ(eager.forward_calls(), 2);
  EXPECT_EQ(fused.forward_calls(), 1);
  EXPECT_TRUE(at::allclose(fused.prompt_logprobs(), want_first, 1e-5, 1e-5));
  for (int64_t r = 0; r < b; ++r) {
    const int64_t real = r == 1 ? 2 : 3;  // padding nodes' rows are garbage by contract
    EXPECT_TRUE(at::allclose(got[r].narrow(0, 0, real), want[r].narrow(0, 0, real), 1e-5, 1e-5)) << "request " << r;
  }
  EXPECT_TRUE(at::equal(fused.positions(), eager.positions()));
  EXPECT_TRUE(at::equal(fused.visible(), eager.visible()));
  // Both continue identically after the fused forward.
  at::Tensor more_tokens = tokens.narrow(1, 0, 1).clone();
  at::Tensor more_parents = at::full({b, 1}, base + 1, at::kLong);
  EXPECT_TRUE(at::allclose(fused.extend(more_tokens, more_parents), eager.extend(more_tokens, more_parents), 1e-5, 1e-5));
}

}  // namespace
}  // namespace atspeed::decode
