// LLaMA decoder: HF parameter layout, KV cache equivalences, tree attention, GQA.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/errors.h"
#include "core/model/fused_cpu.h"
#include "core/model/llama.h"
#include "core/model/model_io.h"
#include "tests/test_util.h"
#include "kernels/tree_mask.h"

namespace atspeed::model {
namespace {

LlamaOptions tiny_options(int64_t kv_heads = 2) {
  ModelConfig c;
  c.vocab_size = 50;
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = kv_heads;
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-6;
  return LlamaOptions::from_config(c);
}

// Larger weights than HF's 0.02 init so that logits differ visibly between positions.
LlamaModel make_model(const LlamaOptions& o, uint64_t seed = 7) {
  torch::manual_seed(seed);
  LlamaModel m(o);
  torch::NoGradGuard g;
  for (auto& p : m->named_parameters()) {
    if (p.key().find("norm") != std::string::npos) {
      p.value().uniform_(0.5, 1.5);
    } else {
      p.value().normal_(0.0, 0.3);
    }
  }
  m->eval();
  return m;
}

at::Tensor positions_from(int64_t start, int64_t n, int64_t batch = 1) {
  return torch::arange(start, start + n, torch::kLong).unsqueeze(0).expand({batch, n}).contiguous();
}

// Plain causal logits over one whole sequence [B, n].
at::Tensor causal_logits(LlamaModel& m, const at::Tensor& tokens) {
  const int64_t b = tokens.size(0), n = tokens.size(1);
  return m->forward(tokens, positions_from(0, n, b), causal_mask(b, n, 0, at::kFloat, at::kCPU), nullptr);
}

void expect_close(const at::Tensor& a, const at::Tensor& b, const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-5)) << what << ": max abs diff " << (a - b).abs().max().item<double>();
}

TEST(LlamaModelTest, ParameterNamesAndShapesMatchHuggingFace) {
  LlamaOptions o = tiny_options();
  LlamaModel m(o);
  std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {{"model.embed_tokens.weight", {50, 16}}};
  for (int i = 0; i < 2; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    expected.push_back({p + "self_attn.q_proj.weight", {16, 16}});
    expected.push_back({p + "self_attn.k_proj.weight", {8, 16}});
    expected.push_back({p + "self_attn.v_proj.weight", {8, 16}});
    expected.push_back({p + "self_attn.o_proj.weight", {16, 16}});
    expected.push_back({p + "mlp.gate_proj.weight", {32, 16}});
    expected.push_back({p + "mlp.up_proj.weight", {32, 16}});
    expected.push_back({p + "mlp.down_proj.weight", {16, 32}});
    expected.push_back({p + "input_layernorm.weight", {16}});
    expected.push_back({p + "post_attention_layernorm.weight", {16}});
  }
  expected.push_back({"model.norm.weight", {16}});
  expected.push_back({"lm_head.weight", {50, 16}});

  auto params = m->named_parameters();
  ASSERT_EQ(params.size(), expected.size());
  size_t i = 0;
  for (const auto& p : params) {
    EXPECT_EQ(p.key(), expected[i].first);
    EXPECT_EQ(p.value().sizes().vec(), expected[i].second) << p.key();
    EXPECT_EQ(p.value().scalar_type(), at::kFloat) << p.key();
    ++i;
  }
  EXPECT_TRUE(m->named_buffers().is_empty());

  // Tied embeddings: no lm_head parameter; the head uses the embedding matrix.
  LlamaOptions tied = o;
  tied.tie_word_embeddings = true;
  LlamaModel mt = make_model(tied);
  EXPECT_EQ(mt->named_parameters().size(), expected.size() - 1);
  EXPECT_EQ(mt->named_parameters().find("lm_head.weight"), nullptr);
  torch::NoGradGuard g;
  at::Tensor h = torch::randn({1, 3, 16});
  expect_close(mt->logits(h), torch::matmul(h, mt->model->embed_tokens->weight.t()), "tied head");
}

TEST(LlamaModelTest, OptionsFromConfigValidate) {
  ModelConfig c;
  c.vocab_size = 0;
  EXPECT_THROW(LlamaOptions::from_config(c), Error);
  c.vocab_size = 10;
  c.num_key_value_heads = 3;  // does not divide 8 heads
  EXPECT_THROW(LlamaOptions::from_config(c), Error);
  c.num_key_value_heads = 4;
  c.dtype = "bfloat16";
  LlamaOptions o = LlamaOptions::from_config(c);
  EXPECT_EQ(o.param_dtype, at::kBFloat16);
  EXPECT_EQ(o.head_dim(), 32);
}

TEST(LlamaModelTest, CausalMaskLayout) {
  at::Tensor m = causal_mask(2, 2, 3, at::kFloat, at::kCPU);
  ASSERT_EQ(m.sizes(), (std::vector<int64_t>{2, 2, 5}));
  const float inf = std::numeric_limits<float>::infinity();
  at::Tensor want = torch::tensor({0.f, 0.f, 0.f, 0.f, -inf, 0.f, 0.f, 0.f, 0.f, 0.f}).view({1, 2, 5}).expand({2, 2, 5});
  EXPECT_TRUE(torch::equal(m, want));
}

void check_incremental_equals_full(const LlamaOptions& o) {
  LlamaModel m = make_model(o);
  torch::NoGradGuard g;
  torch::manual_seed(11);
  const int64_t b = 2, n = 7;
  at::Tensor tokens = torch::randint(0, o.vocab_size, {b, n}, torch::kLong);
  at::Tensor full = causal_logits(m, tokens);
  ASSERT_EQ(full.sizes(), (std::vector<int64_t>{b, n, o.vocab_size}));

  KvCache cache;
  std::vector<at::Tensor> steps;
  for (int64_t t = 0; t < n; ++t) {
    at::Tensor tok = tokens.narrow(1, t, 1);
    at::Tensor mask = torch::zeros({b, 1, t + 1});
    steps.push_back(m->forward(tok, positions_from(t, 1, b), mask, &cache));
    EXPECT_EQ(cache.length(), t + 1);
  }
  expect_close(torch::cat(steps, 1), full, "token-by-token vs one call");
  ASSERT_EQ(cache.k.size(), 2u);
  EXPECT_EQ(cache.k[1].sizes(), (std::vector<int64_t>{b, o.num_key_value_heads, n, o.head_dim()}));

  // Prefill 4 tokens, then 3 in one chunk.
  KvCache c2;
  at::Tensor a = m->forward(tokens.narrow(1, 0, 4), positions_from(0, 4, b), causal_mask(b, 4, 0, at::kFloat, at::kCPU), &c2);
  at::Tensor r = m->forward(tokens.narrow(1, 4, 3), positions_from(4, 3, b), causal_mask(b, 3, 4, at::kFloat, at::kCPU), &c2);
  expect_close(torch::cat({a, r}, 1), full, "chunked prefill");
}

TEST(LlamaModelTest, CausalOneCallEqualsTokenByTokenWithCache) { check_incremental_equals_full(tiny_options(2)); }

TEST(LlamaGqaTest, MultiHeadAttentionWhenKvHeadsEqualHeads) { check_incremental_equals_full(tiny_options(4)); }

TEST(LlamaGqaTest, GroupedQueryEqualsMultiHeadWithRepeatedKv) {
  LlamaModel gqa = make_model(tiny_options(2));
  LlamaModel mha = make_model(tiny_options(4), 99);
  torch::NoGradGuard g;
  auto src = gqa->named_parameters();
  for (auto& p : mha->named_parameters()) {
    at::Tensor w = src[p.key()];
    if (p.key().find("k_proj") != std::string::npos || p.key().find("v_proj") != std::string::npos) {
      // HF repeat_kv: attention head h reads kv head h / (heads / kv_heads).
      w = w.view({2, 4, 16}).repeat_interleave(2, 0).reshape({16, 16});
    }
    p.value().copy_(w);
  }
  torch::manual_seed(3);
  at::Tensor tokens = torch::randint(0, 50, {2, 6}, torch::kLong);
  expect_close(causal_logits(gqa, tokens), causal_logits(mha, tokens), "GQA vs MHA with repeated kv");
}

// Tokens of the prompt followed by the root-to-node branch of tree node `node`.
at::Tensor branch_sequence(const at::Tensor& prompt, const std::vector<int64_t>& tree_tokens,
                           const std::vector<int64_t>& parents, int64_t node) {
  std::vector<int64_t> branch;
  for (int64_t u = node; u >= 0; u = parents[u]) branch.insert(branch.begin(), tree_tokens[u]);
  return torch::cat({prompt, torch::tensor(branch, torch::kLong).unsqueeze(0)}, 1);
}

TEST(LlamaTreeTest, TreeAttentionEqualsCausalBranches) {
  LlamaOptions o = tiny_options(2);
  LlamaModel m = make_model(o);
  torch::NoGradGuard g;
  const int64_t L = 5;
  at::Tensor prompt = torch::tensor({3, 17, 42, 8, 25}, torch::kLong).unsqueeze(0);
  const std::vector<int64_t> parents = {-1, -1, 0, 0, 1};
  const std::vector<int64_t> tree_tokens = {10, 11, 12, 13, 14};
  const std::vector<int64_t> depth = {1, 1, 2, 2, 2};
  const int64_t n = 5;
  at::Tensor par = torch::tensor(parents, torch::kLong).unsqueeze(0);
  at::Tensor tok = torch::tensor(tree_tokens, torch::kLong).unsqueeze(0);
  at::Tensor pos = (torch::tensor(depth, torch::kLong) + (L - 1)).unsqueeze(0);
  at::Tensor tree_mask = kernels::tree_attention_mask(par, torch::tensor({L}, torch::kLong), L, at::kFloat);
  ASSERT_EQ(tree_mask.sizes(), (std::vector<int64_t>{1, n, L + n}));

  // (a) Prompt through the cache, then the whole tree in one call.
  KvCache cache;
  m->forward(prompt, positions_from(0, L), causal_mask(1, L, 0, at::kFloat, at::kCPU), &cache);
  at::Tensor tree_logits = m->forward(tok, pos, tree_mask, &cache);
  EXPECT_EQ(cache.length(), L + n);

  // (b) Prompt and tree in one call without a cache.
  const float inf = std::numeric_limits<float>::infinity();
  at::Tensor prompt_rows = torch::cat({causal_mask(1, L, 0, at::kFloat, at::kCPU), torch::full({1, L, n}, -inf)}, 2);
  at::Tensor one_mask = torch::cat({prompt_rows, tree_mask}, 1);
  at::Tensor one = m->forward(torch::cat({prompt, tok}, 1), torch::cat({positions_from(0, L), pos}, 1), one_mask, nullptr);
  expect_close(one.narrow(1, L, n), tree_logits, "tree with and without cache");

  for (int64_t u = 0; u < n; ++u) {
    at::Tensor seq = branch_sequence(prompt, tree_tokens, parents, u);
    ASSERT_EQ(seq.size(1), L + depth[u]);
    at::Tensor ref = causal_logits(m, seq);
    expect_close(tree_logits.select(1, u), ref.select(1, seq.size(1) - 1), "tree node " + std::to_string(u));
  }

  // Compact the cache to prompt + branch of node 4 (nodes 1 and 4), then extend with one token.
  cache.compact(torch::tensor(std::vector<int64_t>{0, 1, 2, 3, 4, L + 1, L + 4}, torch::kLong));
  EXPECT_EQ(cache.length(), L + 2);
  at::Tensor next = torch::tensor({{33}}, torch::kLong);
  at::Tensor step = m->forward(next, torch::tensor({{L + 2}}, torch::kLong), torch::zeros({1, 1, L + 3}), &cache);
  at::Tensor seq = torch::cat({branch_sequence(prompt, tree_tokens, parents, 4), next}, 1);
  at::Tensor ref = causal_logits(m, seq);
  expect_close(step.select(1, 0), ref.select(1, seq.size(1) - 1), "after compact");
}

TEST(LlamaCacheTest, TruncateThenRefeedEqualsOriginal) {
  LlamaOptions o = tiny_options(2);
  LlamaModel m = make_model(o);
  torch::NoGradGuard g;
  torch::manual_seed(5);
  const int64_t b = 2, n = 8, keep = 5;
  at::Tensor tokens = torch::randint(0, 50, {b, n}, torch::kLong);
  KvCache cache;
  at::Tensor orig = m->forward(tokens, positions_from(0, n, b), causal_mask(b, n, 0, at::kFloat, at::kCPU), &cache);
  std::vector<at::Tensor> k_before;
  for (auto& k : cache.k) k_before.push_back(k.clone());

  cache.truncate(keep);
  EXPECT_EQ(cache.length(), keep);
  // Different tokens first, then truncate again and re-feed the original ones.
  at::Tensor other = (tokens.narrow(1, keep, n - keep) + 1) % 50;
  m->forward(other, positions_from(keep, n - keep, b), causal_mask(b, n - keep, keep, at::kFloat, at::kCPU), &cache);
  cache.truncate(keep);
  at::Tensor again = m->forward(tokens.narrow(1, keep, n - keep), positions_from(keep, n - keep, b),
                                causal_mask(b, n - keep, keep, at::kFloat, at::kCPU), &cache);
  expect_close(again, orig.narrow(1, keep, n - keep), "re-fed logits");
  ASSERT_EQ(cache.length(), n);
  for (size_t i = 0; i < cache.k.size(); ++i) expect_close(cache.k[i], k_before[i], "layer k " + std::to_string(i));

  // compact with the identity prefix is truncate.
  KvCache c2 = cache;
  c2.compact(torch::arange(keep, torch::kLong));
  cache.truncate(keep);
  for (size_t i = 0; i < cache.k.size(); ++i) {
    EXPECT_TRUE(torch::equal(c2.k[i], cache.k[i]));
    EXPECT_TRUE(torch::equal(c2.v[i], cache.v[i]));
  }
  EXPECT_THROW(cache.truncate(keep + 1), Error);
  EXPECT_THROW(cache.compact(torch::tensor({keep}, torch::kLong)), Error);
  cache.truncate(0);
  EXPECT_EQ(cache.length(), 0);
  // An emptied cache restarts from scratch.
  at::Tensor fresh = m->forward(tokens, positions_from(0, n, b), causal_mask(b, n, 0, at::kFloat, at::kCPU), &cache);
  expect_close(fresh, orig, "after truncate(0)");
}

// The inference path (no grad mode: fused q/k/v and gate/up projections, one rotary pass, K/V
// appended in place, scaled_dot_product_attention) computes HF's eager function (grad mode).
TEST(LlamaFastPathTest, InferenceEqualsEagerPath) {
  for (int64_t kv : {int64_t{2}, int64_t{4}}) {
    LlamaModel m = make_model(tiny_options(kv));
    torch::manual_seed(3);
    const int64_t b = 2, n = 6, more = 3;
    at::Tensor tokens = torch::randint(0, 50, {b, n + more}, torch::kLong);
    at::Tensor eager;
    {
      torch::AutoGradMode grad(true);
      eager = m->forward(tokens, positions_from(0, n + more, b), causal_mask(b, n + more, 0, at::kFloat, at::kCPU)).detach();
    }
    torch::NoGradGuard g;
    KvCache cache;
    at::Tensor a = m->forward(tokens.narrow(1, 0, n), positions_from(0, n, b), causal_mask(b, n, 0, at::kFloat, at::kCPU), &cache);
    at::Tensor c = m->forward(tokens.narrow(1, n, more), positions_from(n, more, b), causal_mask(b, more, n, at::kFloat, at::kCPU), &cache);
    expect_close(torch::cat({a, c}, 1), eager, "fast path with cache vs eager, kv " + std::to_string(kv));
  }
}

// The fused weights share storage with the parameters: an optimizer-style in-place update and a
// replaced tensor (as model.to() does) are both seen by the next inference forward, and the
// parameters stay trainable.
TEST(LlamaFastPathTest, FusedWeightsFollowTheParameters) {
  LlamaModel m = make_model(tiny_options(2));
  const at::Tensor tokens = torch::randint(0, 50, {1, 5}, torch::kLong);
  auto fast = [&] {
    torch::NoGradGuard g;
    return causal_logits(m, tokens);
  };
  auto eager = [&] {
    torch::AutoGradMode grad(true);
    return causal_logits(m, tokens).detach();
  };
  fast();
  auto attn = m->model->layers->ptr<LlamaDecoderLayerImpl>(0)->self_attn;
  auto mlp = m->model->layers->ptr<LlamaDecoderLayerImpl>(1)->mlp;
  EXPECT_TRUE(attn->k_proj->weight.is_alias_of(attn->q_proj->weight)) << "q/k/v share one fused weight";
  EXPECT_TRUE(mlp->up_proj->weight.is_alias_of(mlp->gate_proj->weight)) << "gate/up share one fused weight";
  {
    torch::NoGradGuard g;
    attn->v_proj->weight.add_(0.5);  // in place, as an optimizer step
  }
  expect_close(fast(), eager(), "after an in-place update");
  {
    torch::NoGradGuard g;
    mlp->gate_proj->weight.set_data(mlp->gate_proj->weight.detach().clone() * 2);  // replaced storage
  }
  expect_close(fast(), eager(), "after a replaced weight");
  // Still trainable: gradients reach every projection.
  torch::AutoGradMode grad(true);
  causal_logits(m, tokens).sum().backward();
  EXPECT_TRUE(attn->q_proj->weight.grad().defined());
  EXPECT_TRUE(mlp->up_proj->weight.grad().defined());
}

// K/V are written into spare room of the store (no reallocation while it lasts); a copy of a cache
// keeps its tokens when the original truncates and appends over them.
TEST(LlamaCacheTest, AppendsInPlaceAndCopiesStayIntact) {
  LlamaModel m = make_model(tiny_options(2));
  torch::NoGradGuard g;
  const at::Tensor tokens = torch::randint(0, 50, {1, 8}, torch::kLong);
  KvCache cache;
  m->forward(tokens.narrow(1, 0, 4), positions_from(0, 4), causal_mask(1, 4, 0, at::kFloat, at::kCPU), &cache);
  const int64_t cap = cache.capacity();
  EXPECT_GE(cap, 8);
  const void* store = cache.k[0].data_ptr();
  m->forward(tokens.narrow(1, 4, 2), positions_from(4, 2), causal_mask(1, 2, 4, at::kFloat, at::kCPU), &cache);
  EXPECT_EQ(cache.k[0].data_ptr(), store) << "appended in place";
  EXPECT_EQ(cache.capacity(), cap);
  KvCache copy = cache;
  const at::Tensor copy_k = copy.k[1].clone();
  cache.truncate(5);
  m->forward(tokens.narrow(1, 6, 1), positions_from(5, 1), causal_mask(1, 1, 5, at::kFloat, at::kCPU), &cache);
  EXPECT_TRUE(torch::equal(copy.k[1], copy_k)) << "the copy's tokens were overwritten";
  // Growing past the capacity reallocates and keeps every token.
  KvCache grow;
  const at::Tensor long_tokens = torch::randint(0, 50, {1, 70}, torch::kLong);
  at::Tensor full = causal_logits(m, long_tokens);
  std::vector<at::Tensor> steps;
  for (int64_t t = 0; t < 70; t += 10) {
    steps.push_back(m->forward(long_tokens.narrow(1, t, 10), positions_from(t, 10), causal_mask(1, 10, t, at::kFloat, at::kCPU), &grow));
  }
  EXPECT_GE(grow.capacity(), 70);
  expect_close(torch::cat(steps, 1), full, "chunks through a growing store");
}

// Each fused CPU kernel against the ATen operators it replaces (core/model/fused_cpu.h), on odd
// sizes, several rows and (for K/V) strided destinations inside a larger store like the cache's.
TEST(LlamaFusedCpuTest, KernelsEqualTheAtenOperators) {
  if (!fused_cpu::enabled()) GTEST_SKIP() << "ATSPEED_FUSED_CPU=0";
  torch::NoGradGuard g;
  torch::manual_seed(11);
  // rtol 1e-5 (about 80 float ulps): the kernels and ATen sum and vectorise in different orders, and
  // how far that moves the last bits depends on the host's ISA (a 1e-6 bound is about 10 ulps, the
  // margin a batched-vs-one-by-one score test already exceeded on one CI host); a wrong index or
  // formula is off by far more.
  auto close = [](const at::Tensor& a, const at::Tensor& b, const std::string& what) {
    ASSERT_EQ(a.sizes(), b.sizes()) << what;
    EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-6)) << what << ": max abs diff " << (a - b).abs().max().item<double>();
  };
  {
    const at::Tensor x = torch::randn({3, 5, 24}) * 3, w = torch::rand({24}) + 0.5;
    const at::Tensor ref = w * (x * at::rsqrt(x.pow(2).mean(-1, true) + 1e-5));
    close(fused_cpu::rms_norm(x, w, 1e-5), ref, "rms_norm");
    close(fused_cpu::rms_norm(x.transpose(0, 1), w, 1e-5), ref.transpose(0, 1), "rms_norm of a strided input");
  }
  const int64_t b = 2, n = 3, heads = 4, kv = 2, d = 8;
  const at::Tensor positions = torch::tensor({7, 0, 3, 12, 12, 40}, torch::kLong).view({b, n});
  const at::Tensor inv_freq = 1.0 / torch::pow(10000.0, torch::arange(0, d, 2).to(torch::kFloat) / d);
  at::Tensor cos, sin_signed;
  fused_cpu::rope_tables(positions, inv_freq, cos, sin_signed);
  {
    const at::Tensor freqs = positions.to(torch::kFloat).unsqueeze(-1) * inv_freq, emb = torch::cat({freqs, freqs}, -1);
    close(cos, emb.cos(), "rope cos");
    close(sin_signed, torch::cat({-emb.sin().narrow(-1, 0, d / 2), emb.sin().narrow(-1, d / 2, d / 2)}, -1), "rope sin_signed");
  }
  {
    const at::Tensor qkv = torch::randn({b, n, heads + 2 * kv, d});
    const at::Tensor store_k = torch::full({b, kv, 10, d}, 99.0f), store_v = torch::full({b, kv, 10, d}, 99.0f);
    const at::Tensor q = fused_cpu::rotary_split(qkv, cos, sin_signed, heads, kv, store_k.narrow(2, 4, n), store_v.narrow(2, 4, n));
    auto rotary = [&](const at::Tensor& x) {  // x [B, n, h, d]: HF's x * cos + rotate_half(x) * sin
      return x * cos.unsqueeze(2) + x.roll(d / 2, -1) * sin_signed.unsqueeze(2);
    };
    close(q, rotary(qkv.narrow(2, 0, heads)).transpose(1, 2), "rotated q");
    close(store_k.narrow(2, 4, n), rotary(qkv.narrow(2, heads, kv)).transpose(1, 2), "rotated k in the store");
    close(store_v.narrow(2, 4, n), qkv.narrow(2, heads + kv, kv).transpose(1, 2), "v in the store");
    EXPECT_TRUE(torch::all(store_k.narrow(2, 0, 4) == 99).item<bool>() && torch::all(store_v.narrow(2, 7, 3) == 99).item<bool>())
        << "only the new slots are written";
  }
  {
    const at::Tensor gu = torch::randn({2, 3, 14}) * 4;
    close(fused_cpu::silu_mul(gu), at::silu(gu.narrow(-1, 0, 7)) * gu.narrow(-1, 7, 7), "silu_mul");
  }
  {
    const at::Tensor visible = torch::rand({2, 3, 5}) > 0.5;
    const at::Tensor ref = torch::zeros({2, 3, 5}).masked_fill_(visible.logical_not(), -std::numeric_limits<float>::infinity());
    EXPECT_TRUE(torch::equal(fused_cpu::additive_mask(visible), ref)) << "additive mask";
  }
  // Only float32 CPU tensors without grad mode take the kernels; others are refused by name.
  EXPECT_TRUE(fused_cpu::applies(torch::zeros({2})));
  EXPECT_FALSE(fused_cpu::applies(torch::zeros({2}, torch::kDouble)));
  {
    torch::AutoGradMode grad(true);
    EXPECT_FALSE(fused_cpu::applies(torch::zeros({2})));
  }
  EXPECT_THROW(fused_cpu::rms_norm(torch::zeros({2, 4}, torch::kDouble), torch::ones({4}), 1e-6), Error);
  EXPECT_THROW(fused_cpu::rms_norm(torch::zeros({2, 4}), torch::ones({3}), 1e-6), Error);
}

TEST(LlamaModelTest, RejectsBadMaskShape) {
  LlamaModel m = make_model(tiny_options(2));
  torch::NoGradGuard g;
  at::Tensor tokens = torch::zeros({1, 3}, torch::kLong);
  EXPECT_THROW(m->forward(tokens, positions_from(0, 3), torch::zeros({1, 3, 4}), nullptr), Error);
}


TEST(LlamaModelTest, TensorParallelSplitByName) {
  LlamaModel m = make_model(tiny_options(2));
  int columns = 0, rows = 0;
  for (const auto& p : m->named_parameters()) {
    const TpSplit s = tp_split_of(p.key());
    columns += s == TpSplit::Column;
    rows += s == TpSplit::Row;
    if (p.key().find("norm") != std::string::npos || p.key().find("embed") != std::string::npos ||
        p.key() == "lm_head.weight") {
      EXPECT_EQ(s, TpSplit::None) << p.key();
    }
  }
  EXPECT_EQ(columns, 2 * 5);  // q, k, v, gate, up per layer
  EXPECT_EQ(rows, 2 * 2);     // o, down per layer
  EXPECT_EQ(tp_split_of("model.layers.1.self_attn.o_proj.weight"), TpSplit::Row);
  EXPECT_EQ(tp_split_of("model.layers.1.mlp.up_proj.weight"), TpSplit::Column);
}

TEST(LlamaModelTest, CheckpointRoundTripGivesIdenticalLogits) {
  test::TempDir dir;
  LlamaOptions o = tiny_options(2);
  LlamaModel m = make_model(o);
  CheckpointAttributes attrs;
  attrs.kind = "target";
  Config config = Config::from_yaml("model:\n  name: tiny\n  vocab_size: 50\n  hidden_size: 16\n"
                                    "  intermediate_size: 32\n  num_hidden_layers: 2\n  num_attention_heads: 4\n"
                                    "  num_key_value_heads: 2\n", "test");
  attrs.config_yaml = config.to_yaml();
  const std::string path = dir.str("m.h5");
  {
    CheckpointWriter w(path, attrs);
    write_parameters(w, *m);
    w.commit();
  }
  CheckpointReader r(path, "target");
  EXPECT_EQ(model_config_from_checkpoint(r).hidden_size, 16);
  LlamaModel loaded = load_model(r);
  torch::NoGradGuard g;
  at::Tensor tokens = torch::randint(0, 50, {2, 5}, torch::kLong);
  EXPECT_TRUE(torch::equal(causal_logits(m, tokens), causal_logits(loaded, tokens)));
  // A model of another shape is refused with the tensor named.
  LlamaOptions other = o;
  other.intermediate_size = 48;
  LlamaModel wrong(other);
  try {
    read_parameters(r, *wrong);
    FAIL() << "shape mismatch accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Checkpoint);
    EXPECT_NE(e.message().find("mlp.gate_proj.weight"), std::string::npos) << e.message();
  }
  EXPECT_GT(parameter_count(o), 0);
  int64_t counted = 0;
  for (const auto& p : m->parameters()) counted += p.numel();
  EXPECT_EQ(parameter_count(o), counted);
}


// The shipped model configs have the shapes their comments promise.
LlamaOptions shipped(const std::string& name, int64_t vocab) {
  Config c = Config::compose(std::string(ATSPEED_SOURCE_DIR) + "/configs", "config", {"model=" + name});
  ModelConfig mc = read_section<ModelConfig>(c, "model");
  mc.vocab_size = vocab;
  mc.dtype = "float32";
  return LlamaOptions::from_config(mc);
}

TEST(LlamaModelTest, ShippedModelShapes) {
  // The paper's models with the LLaMA tokenizer's 32,000 ids: 6.74B and 68M parameters.
  EXPECT_NEAR(static_cast<double>(parameter_count(shipped("target_llama7b", 32000))), 6.738e9, 0.01e9);
  EXPECT_NEAR(static_cast<double>(parameter_count(shipped("draft_llama68m", 32000))), 68.0e6, 0.5e6);
  // TinyLlama-1.1B's shape: 1,100,048,384 parameters.
  EXPECT_NEAR(static_cast<double>(parameter_count(shipped("target_llama1b", 32000))), 1.100e9, 0.001e9);
  // draft_small needs at least 10x fewer FLOPs per token than target_small (68M vs 7B is ~100x),
  // at the mean Beauty prompt length (about 40 tokens) and at the longest (102).
  for (int64_t context : {40, 102}) {
    const double ratio = flops_per_token(shipped("target_small", 1029), context) /
                         flops_per_token(shipped("draft_small", 1029), context);
    EXPECT_GE(ratio, 10.0) << "context " << context;
  }
}

}  // namespace
}  // namespace atspeed::model
