// Constrained beam search (SPEC §2, §9.2): exact beams from fake scorers, tree-attention search ==
// naive per-beam search on a tiny random LLaMA, batching, LlamaTreeScorer's tree bookkeeping,
// beam sampling.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <map>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/decode/beam_search.h"
#include "core/decode/tree_scorer.h"
#include "core/errors.h"
#include "core/model/llama.h"
#include "core/vocab/constraint.h"
#include "core/vocab/item_catalog.h"
#include "tests/unit/fake_scorer.h"

namespace atspeed::decode {
namespace {

using test::FakeScorer;

// Two levels of 4 codes: V = 5 + 8 = 13. Items (c1, c2): (0,0) (0,1) (1,0) (1,2) (2,3).
ItemCatalog small_catalog() { return ItemCatalog(Vocabulary(2, 4), {0, 0, 0, 1, 1, 0, 1, 2, 2, 3}); }

// Hand-made log-prob rows (entries not listed are -10). Trie candidates and their sums:
//   (0,0) -1.0-0.5=-1.5   (0,1) -1.0-1.5=-2.5   (1,0) -1.0-1.5=-2.5   (1,2) -1.0-0.5=-1.5   (2,3) -2.0-0.1=-2.1
// Under the level mask also (0,2) -1.1, (1,3) -1.2 and (2,x) -12.
std::vector<float> table(const Vocabulary& v, const std::vector<int64_t>& path) {
  std::vector<float> row(static_cast<size_t>(v.size()), -10.f);
  auto set = [&](int level, int64_t code, float lp) { row[static_cast<size_t>(v.code_token(level, code))] = lp; };
  if (path.empty()) {
    set(0, 0, -1.0f);
    set(0, 1, -1.0f);  // ties with code 0: code 0 goes first
    set(0, 2, -2.0f);
    set(0, 3, -0.5f);  // best, but no item starts with code 3
  } else {
    const int64_t c1 = v.code_of(path[0]);
    if (c1 == 0) {
      set(1, 0, -0.5f);
      set(1, 1, -1.5f);
      set(1, 2, -0.1f);
    } else if (c1 == 1) {
      set(1, 0, -1.5f);
      set(1, 2, -0.5f);
      set(1, 3, -0.2f);
    } else {
      set(1, 3, -0.1f);
    }
  }
  return row;
}

std::vector<std::vector<int64_t>> codes_of(const std::vector<Beam>& beams, const Vocabulary& v) {
  std::vector<std::vector<int64_t>> out;
  for (const auto& b : beams) {
    std::vector<int64_t> c;
    for (int64_t t : b.tokens) c.push_back(v.code_of(t));
    out.push_back(c);
  }
  return out;
}

using Codes = std::vector<std::vector<int64_t>>;

TEST(BeamSearchFakeTest, ExactBeamsWithTiesBrokenByTuple) {
  const ItemCatalog catalog = small_catalog();
  const Vocabulary& v = catalog.vocab();
  PrefixTrie trie(catalog);
  FakeScorer scorer(v.size(), [&](const std::vector<int64_t>& p) { return table(v, p); });
  struct Case {
    int64_t k;
    Codes codes;
    std::vector<float> scores;
  };
  const std::vector<Case> cases = {
      {1, {{0, 0}}, {-1.5f}},  // step 1 keeps code 0 (tie with 1 broken by tuple); then (0,0)
      {2, {{0, 0}, {1, 2}}, {-1.5f, -1.5f}},
      {3, {{0, 0}, {1, 2}, {2, 3}}, {-1.5f, -1.5f, -2.1f}},
      {4, {{0, 0}, {1, 2}, {2, 3}, {0, 1}}, {-1.5f, -1.5f, -2.1f, -2.5f}},
      // Fewer than K items exist: all 5, in ranking order ((0,1) before (1,0) at -2.5).
      {10, {{0, 0}, {1, 2}, {2, 3}, {0, 1}, {1, 0}}, {-1.5f, -1.5f, -2.1f, -2.5f, -2.5f}},
  };
  for (const auto& c : cases) {
    SearchOptions o;
    o.beam_width = c.k;
    TargetBeamSearch search(scorer, trie, o);
    scorer.calls = 0;
    const auto results = search.run({{1, 7, 4}});
    ASSERT_EQ(results.size(), 1u);
    EXPECT_EQ(codes_of(results[0].beams, v), c.codes) << "K=" << c.k;
    ASSERT_EQ(results[0].beams.size(), c.scores.size());
    for (size_t i = 0; i < c.scores.size(); ++i) EXPECT_FLOAT_EQ(results[0].beams[i].score, c.scores[i]) << "K=" << c.k;
    EXPECT_EQ(results[0].stats.forward_calls, 2);
    EXPECT_EQ(scorer.calls, 2);
  }
}

TEST(BeamSearchFakeTest, LevelConstraintAllowsNonItems) {
  const ItemCatalog catalog = small_catalog();
  const Vocabulary& v = catalog.vocab();
  LevelMask level(catalog);
  FakeScorer scorer(v.size(), [&](const std::vector<int64_t>& p) { return table(v, p); });
  SearchOptions o;
  o.beam_width = 3;
  TargetBeamSearch search(scorer, level, o);
  const auto r = search.run({{1, 4}});
  EXPECT_EQ(codes_of(r[0].beams, v), (Codes{{0, 2}, {1, 3}, {0, 0}}));
  EXPECT_FLOAT_EQ(r[0].beams[0].score, -1.0f + -0.1f);
  EXPECT_EQ(catalog.find_tuple_by_tokens(r[0].beams[0].tokens), -1);  // (0,2) is not an item
}

TEST(BeamSearchFakeTest, BatchedRequestsAreIndependent) {
  const ItemCatalog catalog = small_catalog();
  const Vocabulary& v = catalog.vocab();
  PrefixTrie trie(catalog);
  FakeScorer scorer(v.size(), [&](const std::vector<int64_t>& p) { return table(v, p); });
  SearchOptions o;
  o.beam_width = 3;
  TargetBeamSearch search(scorer, trie, o);
  const auto r = search.run({{1, 4}, {1, 5, 6, 7, 4}, {4}});
  ASSERT_EQ(r.size(), 3u);
  for (const auto& one : r) EXPECT_EQ(codes_of(one.beams, v), (Codes{{0, 0}, {1, 2}, {2, 3}}));
}

TEST(BeamSearchFakeTest, ExpandBeamsTieAcrossBeams) {
  const ItemCatalog catalog = small_catalog();
  const Vocabulary& v = catalog.vocab();
  PrefixTrie trie(catalog);
  // Two beams with equal candidate scores: the smaller tuple wins whatever the beam order.
  std::vector<Beam> beams(2);
  beams[0].tokens = {v.code_token(0, 1)};
  beams[0].score = -1.0f;
  beams[1].tokens = {v.code_token(0, 0)};
  beams[1].score = -1.0f;
  at::Tensor lp = torch::full({2, v.size()}, -5.0f);
  lp[0][v.code_token(1, 0)] = -0.5f;  // (1,0) -1.5
  lp[1][v.code_token(1, 1)] = -0.5f;  // (0,1) -1.5
  SearchOptions o;
  o.beam_width = 2;
  const auto out = expand_beams(beams, lp, trie, o);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(codes_of(out, v), (Codes{{0, 1}, {1, 0}}));
  EXPECT_EQ(out[0].parent, 1);
  EXPECT_EQ(out[1].parent, 0);
  // The boundary gap: K-th kept minus best dropped. K = 1 keeps (0,1) at -1.5 and drops (1,0) at
  // -1.5 (gap 0); K = 2 keeps both and drops the best -5 candidate: -1.5 - (-6) = 4.5.
  float gap = -1;
  o.beam_width = 1;
  expand_beams(beams, lp, trie, o, nullptr, &gap);
  EXPECT_EQ(gap, 0.0f);
  o.beam_width = 2;
  expand_beams(beams, lp, trie, o, nullptr, &gap);
  EXPECT_FLOAT_EQ(gap, 4.5f);
  o.beam_width = 100;  // nothing dropped
  expand_beams(beams, lp, trie, o, nullptr, &gap);
  EXPECT_TRUE(std::isinf(gap));
}

// ---------------------------------------------------------------------------------------------
// Tiny random LLaMA over a small catalogue: 4 levels x 4 codes, V = 21.

ItemCatalog tiny_catalog(int items = 40, uint64_t seed = 3) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> codes;
  for (int i = 0; i < items * 4; ++i) codes.push_back(static_cast<int32_t>(rng() % 4));
  return ItemCatalog(Vocabulary(4, 4), codes);
}

model::LlamaModel tiny_model(int64_t vocab, uint64_t seed = 7) {
  ModelConfig c;
  c.vocab_size = vocab;
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  torch::manual_seed(seed);
  model::LlamaModel m(model::LlamaOptions::from_config(c));
  torch::NoGradGuard g;
  for (auto& p : m->named_parameters()) {
    if (p.key().find("norm") != std::string::npos) {
      p.value().uniform_(0.5, 1.5);
    } else {
      p.value().normal_(0.0, 0.5);
    }
  }
  m->eval();
  return m;
}

std::vector<std::vector<int64_t>> tiny_prompts(int64_t vocab) {
  std::mt19937_64 rng(5);
  std::vector<std::vector<int64_t>> out;
  for (int len : {6, 11, 3, 9}) {
    std::vector<int64_t> p = {Vocabulary::kBos};
    for (int i = 1; i < len - 1; ++i) p.push_back(5 + static_cast<int64_t>(rng() % static_cast<uint64_t>(vocab - 5)));
    p.push_back(Vocabulary::kResp);
    out.push_back(p);
  }
  return out;
}

void expect_same(const SearchResult& a, const SearchResult& b, double tol, const std::string& what) {
  ASSERT_EQ(a.beams.size(), b.beams.size()) << what;
  for (size_t i = 0; i < a.beams.size(); ++i) {
    EXPECT_EQ(a.beams[i].tokens, b.beams[i].tokens) << what << " beam " << i;
    EXPECT_NEAR(a.beams[i].score, b.beams[i].score, tol) << what << " beam " << i;
  }
}

TEST(BeamSearchLlamaTest, TreeAttentionEqualsNaiveBeamSearch) {
  const ItemCatalog catalog = tiny_catalog();
  model::LlamaModel m = tiny_model(catalog.vocab().size());
  const auto prompts = tiny_prompts(catalog.vocab().size());
  for (const std::string kind : {"trie", "level"}) {
    const auto constraint = make_constraint(kind, catalog);
    for (int64_t k : {1, 3, 5, 10}) {
      SearchOptions o;
      o.beam_width = k;
      LlamaTreeScorer scorer(m);
      TargetBeamSearch tree(scorer, *constraint, o);
      NaiveBeamSearch naive(m, *constraint, o);
      const auto a = tree.run(prompts);
      const auto b = naive.run(prompts);
      ASSERT_EQ(a.size(), prompts.size());
      for (size_t r = 0; r < prompts.size(); ++r) {
        const std::string what = kind + " K=" + std::to_string(k) + " request " + std::to_string(r);
        EXPECT_EQ(static_cast<int64_t>(a[r].beams.size()), k) << what;
        expect_same(a[r], b[r], 1e-4, what);
        EXPECT_EQ(a[r].stats.forward_calls, 4) << what;
        EXPECT_EQ(b[r].stats.forward_calls, 4) << what;
        for (const auto& beam : a[r].beams) {
          ASSERT_EQ(beam.tokens.size(), 4u);
          if (kind == "trie") EXPECT_GE(catalog.find_tuple_by_tokens(beam.tokens), 0) << what;
        }
      }
    }
  }
}

TEST(BeamSearchLlamaTest, BatchedEqualsOneByOne) {
  const ItemCatalog catalog = tiny_catalog();
  model::LlamaModel m = tiny_model(catalog.vocab().size());
  const auto prompts = tiny_prompts(catalog.vocab().size());
  PrefixTrie trie(catalog);
  SearchOptions o;
  o.beam_width = 5;
  LlamaTreeScorer scorer(m);
  TargetBeamSearch search(scorer, trie, o);
  const auto batched = search.run(prompts);
  EXPECT_EQ(scorer.forward_calls(), 4);
  for (size_t r = 0; r < prompts.size(); ++r) {
    const auto one = search.run({prompts[r]});
    // Padding changes the matmul shapes, and with them the kernels' summation order: scores near -13
    // differ by about 11 ulps (1.05e-5) on an AVX2 host. The beams themselves must be the same.
    expect_same(batched[r], one[0], 1e-4, "request " + std::to_string(r));
  }
}

// Causal log-probs after every token of one sequence.
at::Tensor causal_log_probs(model::LlamaModel& m, const std::vector<int64_t>& seq) {
  torch::NoGradGuard g;
  const int64_t n = static_cast<int64_t>(seq.size());
  at::Tensor tokens = torch::tensor(seq, torch::kLong).unsqueeze(0);
  at::Tensor pos = torch::arange(n, torch::kLong).unsqueeze(0);
  return torch::log_softmax(m->forward(tokens, pos, model::causal_mask(1, n, 0, at::kFloat, at::kCPU)), -1)[0];
}

TEST(BeamSearchLlamaTest, ScorerTreeEqualsCausalBranches) {
  const ItemCatalog catalog = tiny_catalog();
  const int64_t vocab = catalog.vocab().size();
  model::LlamaModel m = tiny_model(vocab);
  LlamaTreeScorer scorer(m);
  const std::vector<std::vector<int64_t>> prompts = {{1, 7, 9, 12, 4}, {1, 20, 4}};
  const at::Tensor first = scorer.prefill(prompts);
  ASSERT_EQ(first.sizes(), (std::vector<int64_t>{2, vocab}));
  EXPECT_EQ(scorer.length(), 5);
  for (size_t r = 0; r < 2; ++r) {
    const at::Tensor ref = causal_log_probs(m, prompts[r]);
    EXPECT_TRUE(torch::allclose(first[static_cast<int64_t>(r)], ref[-1], 1e-5, 1e-5)) << "prefill " << r;
  }
  // Three levels in one call. Request 0: a = {6 under prompt}, {8 under prompt}, {10 under a}, {11 under a},
  // {13 under 10}. Request 1: a chain of 3 and two padding nodes.
  const at::Tensor tokens = torch::tensor({{6, 8, 10, 11, 13}, {15, 16, 17, 0, 0}}, torch::kLong);
  const at::Tensor parents = torch::tensor({{4, 4, 5, 5, 7}, {2, 5, 6, -1, -1}}, torch::kLong);
  const at::Tensor out = scorer.extend(tokens, parents);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{2, 5, vocab}));
  EXPECT_EQ(scorer.length(), 10);
  // Branch of every node (its own token last).
  auto branch = [&](int64_t r, int64_t node_slot) {
    std::vector<int64_t> path;
    int64_t s = node_slot;
    while (s >= 5) {
      path.insert(path.begin(), tokens[r][s - 5].item<int64_t>());
      s = parents[r][s - 5].item<int64_t>();
    }
    std::vector<int64_t> seq = prompts[static_cast<size_t>(r)];
    EXPECT_EQ(s, static_cast<int64_t>(seq.size()) - 1);
    seq.insert(seq.end(), path.begin(), path.end());
    return seq;
  };
  for (int64_t r = 0; r < 2; ++r) {
    for (int64_t i = 0; i < 5; ++i) {
      if (parents[r][i].item<int64_t>() < 0) continue;
      const auto seq = branch(r, 5 + i);
      const at::Tensor ref = causal_log_probs(m, seq);
      EXPECT_TRUE(torch::allclose(out[r][i], ref[-1], 1e-4, 1e-4))
          << "request " << r << " node " << i << " max diff " << (out[r][i] - ref[-1]).abs().max().item<double>();
      EXPECT_EQ(scorer.positions()[r][5 + i].item<int64_t>(), static_cast<int64_t>(seq.size()) - 1);
    }
  }

  // Compact to prompt region + the branch of request 0's node 4 (slots 5, 7, 9) / request 1's chain.
  scorer.compact(torch::tensor({{0, 1, 2, 3, 4, 5, 7, 9}, {0, 1, 2, 3, 4, 5, 6, 7}}, torch::kLong));
  EXPECT_EQ(scorer.length(), 8);
  const at::Tensor more = scorer.extend(torch::tensor({{14}, {18}}, torch::kLong), torch::tensor({{7}, {7}}, torch::kLong));
  {
    const at::Tensor ref0 = causal_log_probs(m, {1, 7, 9, 12, 4, 6, 10, 13, 14});
    EXPECT_TRUE(torch::allclose(more[0][0], ref0[-1], 1e-4, 1e-4)) << "after compact, request 0";
    const at::Tensor ref1 = causal_log_probs(m, {1, 20, 4, 15, 16, 17, 18});
    EXPECT_TRUE(torch::allclose(more[1][0], ref1[-1], 1e-4, 1e-4)) << "after compact, request 1";
  }
  // Truncate back to the compacted tree and take another branch.
  scorer.truncate(7);
  const at::Tensor again = scorer.extend(torch::tensor({{12}, {19}}, torch::kLong), torch::tensor({{6}, {2}}, torch::kLong));
  EXPECT_TRUE(torch::allclose(again[0][0], causal_log_probs(m, {1, 7, 9, 12, 4, 6, 10, 12})[-1], 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(again[1][0], causal_log_probs(m, {1, 20, 4, 19})[-1], 1e-4, 1e-4));
  EXPECT_THROW(scorer.extend(torch::tensor({{12}, {19}}, torch::kLong), torch::tensor({{10}, {2}}, torch::kLong)), Error);
}

TEST(BeamSearchLlamaTest, SamplingIsSeededAndValid) {
  const ItemCatalog catalog = tiny_catalog();
  model::LlamaModel m = tiny_model(catalog.vocab().size());
  const auto prompts = tiny_prompts(catalog.vocab().size());
  PrefixTrie trie(catalog);
  SearchOptions o;
  o.beam_width = 5;
  o.sample = true;
  o.temperature = 0.7;
  o.seed = 11;
  LlamaTreeScorer scorer(m);
  TargetBeamSearch search(scorer, trie, o);
  const auto a = search.run(prompts);
  const auto b = search.run(prompts);
  bool any_differs = false;
  for (size_t r = 0; r < prompts.size(); ++r) {
    expect_same(a[r], b[r], 0.0, "rerun " + std::to_string(r));
    ASSERT_FALSE(a[r].beams.empty());
    for (size_t i = 0; i < a[r].beams.size(); ++i) {
      EXPECT_GE(catalog.find_tuple_by_tokens(a[r].beams[i].tokens), 0);
      if (i > 0) EXPECT_FALSE(beam_before(a[r].beams[i], a[r].beams[i - 1], catalog.vocab()));  // sorted at the end
      for (size_t j = 0; j < i; ++j) EXPECT_NE(a[r].beams[i].tokens, a[r].beams[j].tokens);  // no repeats
    }
  }
  // Same seeds one by one: identical (each request has its own generator). Scores to 1e-4, as the
  // naive comparison below: a batch of 4 and a batch of 1 run GEMMs of other shapes, whose float32
  // sums differ in the last bits by CPU (MKL's AMD Zen kernels gave 1.3e-5 on a score of -19.7,
  // the warped scores being log-probs / 0.7 summed over the levels).
  for (size_t r = 0; r < prompts.size(); ++r) {
    const auto one = search.run({prompts[r]}, {o.seed + r});
    expect_same(a[r], one[0], 1e-4, "one by one " + std::to_string(r));
  }
  // Other seeds: some request decodes differently.
  SearchOptions o2 = o;
  o2.seed = 12345;
  TargetBeamSearch other(scorer, trie, o2);
  const auto c = other.run(prompts);
  for (size_t r = 0; r < prompts.size(); ++r) {
    if (c[r].beams.size() != a[r].beams.size()) any_differs = true;
    for (size_t i = 0; i < std::min(a[r].beams.size(), c[r].beams.size()); ++i)
      any_differs = any_differs || a[r].beams[i].tokens != c[r].beams[i].tokens;
  }
  EXPECT_TRUE(any_differs);
  // Naive sampling uses the same per-request generators: the same draws.
  NaiveBeamSearch naive(m, trie, o);
  const auto n = naive.run(prompts);
  for (size_t r = 0; r < prompts.size(); ++r) expect_same(a[r], n[r], 1e-4, "naive sampling " + std::to_string(r));
}

TEST(BeamSearchOptionsTest, Validate) {
  SearchOptions o;
  o.beam_width = 0;
  EXPECT_THROW(o.validate(), Error);
  o.beam_width = 2;
  o.temperature = 0;
  EXPECT_THROW(o.validate(), Error);
}

}  // namespace
}  // namespace atspeed::decode
