// Tensor parallelism over MPI (DESIGN §5 invariant "TP=2 logits == TP=1 logits"): ranks 0 and 1
// form a tp=2 group (with 3 ranks, rank 2 sits out in a group of its own), load their shards of one
// checkpoint through hyperslabs, and must reproduce the unsharded model's logits on causal prompts
// and on tree-attention steps over a KV cache, and TargetBeamSearch's top-K items.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

#include "core/decode/beam_search.h"
#include "core/decode/tree_scorer.h"
#include "core/dist/communicator.h"
#include "core/errors.h"
#include "core/io/checkpoint.h"
#include "core/model/llama.h"
#include "core/model/model_io.h"
#include "core/vocab/constraint.h"
#include "core/vocab/item_catalog.h"
#include "core/vocab/vocabulary.h"
#include "tests/test_models.h"

namespace atspeed {
namespace {

namespace fs = std::filesystem;
constexpr int kTp = 2;

// A directory all ranks share: rank 0 creates it and broadcasts its name.
std::string shared_temp_dir(Communicator& comm) {
  at::Tensor name = at::zeros({256}, at::kByte);
  if (comm.rank() == 0) {
    std::string templ = (fs::temp_directory_path() / "atspeed_mpi_tp_XXXXXX").string();
    ATSPEED_CHECK(mkdtemp(templ.data()) != nullptr, "mkdtemp failed");
    std::memcpy(name.data_ptr(), templ.data(), std::min<size_t>(templ.size(), 255));
  }
  comm.broadcast(name, 0);
  return std::string(reinterpret_cast<const char*>(name.data_ptr()));
}

// 4 levels x 4 codes (V = 21) and a random catalogue, as the single-process beam search tests use.
ItemCatalog tiny_catalog() {
  std::mt19937_64 rng(3);
  std::vector<int32_t> codes;
  for (int i = 0; i < 40 * 4; ++i) codes.push_back(static_cast<int32_t>(rng() % 4));
  return ItemCatalog(Vocabulary(4, 4), codes);
}

std::vector<std::vector<int64_t>> prompts(int64_t vocab) {
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

double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

// Each test: world-wide setup (shared checkpoint), then ranks [0, kTp) run `body` with their shard
// and the full model; other ranks skip. Ends with a world barrier so no rank runs ahead.
class TpMpi : public ::testing::Test {
 protected:
  void SetUp() override {
    at::set_num_threads(1);
    world_ = make_communicator("auto");
    if (world_->size() < kTp) GTEST_SKIP() << "needs mpirun -np >= " << kTp;
    dir_ = shared_temp_dir(*world_);
    path_ = dir_ + "/target.h5";
    if (world_->rank() == 0) {
      // 4 heads, 2 KV heads (GQA), hidden 16, intermediate 32: all divide by 2.
      model::LlamaModel m = test::random_model(tiny_catalog().vocab().size(), 11, 16, 2);
      test::write_model_checkpoint(path_, m, "fp");
    }
    world_->barrier();
    // Ranks [0, kTp) form the tp group; with -np 3 rank 2 gets a group of its own and sits out.
    in_group_ = world_->rank() < kTp;
    group_ = world_->split(in_group_ ? 0 : 1, world_->rank());
  }

  void TearDown() override {
    if (!world_ || world_->size() < kTp) return;
    world_->barrier();
    if (world_->rank() == 0) fs::remove_all(dir_);
  }

  std::unique_ptr<Communicator> world_, group_;
  std::string dir_, path_;
  bool in_group_ = false;
};

TEST_F(TpMpi, EachRankHoldsOneTpthReadThroughHyperslabs) {
  if (!in_group_) GTEST_SKIP() << "rank outside the tp group";
  ASSERT_EQ(group_->size(), kTp);
  const int rank = group_->rank();
  CheckpointReader full_reader(path_);
  model::LlamaModel full = model::load_model(full_reader);
  CheckpointReader reader(path_);
  model::LlamaModel shard = model::load_model_shard(reader, rank, kTp);
  int64_t shard_bytes = 0, full_bytes = 0;
  auto fp = full->named_parameters();
  for (const auto& p : shard->named_parameters()) {
    const at::Tensor& f = *fp.find(p.key());
    const auto split = model::tp_split_of(p.key());
    if (split != model::TpSplit::None) {
      EXPECT_EQ(p.value().numel() * kTp, f.numel()) << p.key();
    } else {
      EXPECT_EQ(p.value().numel(), f.numel()) << p.key();
    }
    EXPECT_TRUE(at::equal(p.value(), model::tp_shard(f, p.key(), rank, kTp))) << p.key();
    shard_bytes += static_cast<int64_t>(p.value().nbytes());
    full_bytes += static_cast<int64_t>(f.nbytes());
  }
  // The shard's reader returned exactly the shard: the full split weights never left the file.
  EXPECT_EQ(reader.bytes_read(), shard_bytes);
  EXPECT_EQ(full_reader.bytes_read(), full_bytes);
  EXPECT_LT(shard_bytes, full_bytes);
  // The two ranks hold disjoint halves: q_proj's shards differ.
  const std::string q = "model.layers.0.self_attn.q_proj.weight";
  const at::Tensor gathered = group_->all_gather(*shard->named_parameters().find(q));
  EXPECT_FALSE(at::equal(gathered[0], gathered[1]));
  EXPECT_TRUE(at::equal(at::cat({gathered[0], gathered[1]}, 0), *fp.find(q)));
}

TEST_F(TpMpi, LogitsEqualUnshardedOnCausalPromptsAndTreeSteps) {
  if (!in_group_) GTEST_SKIP() << "rank outside the tp group";
  CheckpointReader reader(path_);
  model::LlamaModel full = model::load_model(reader);
  model::LlamaModel shard = model::load_model_shard(reader, group_->rank(), kTp);
  shard->set_tensor_parallel(group_.get());
  const int64_t vocab = full->options().vocab_size;

  // Causal prompts without a cache.
  {
    c10::InferenceMode guard;
    const int64_t b = 3, n = 7;
    at::Tensor tokens = at::randint(vocab, {b, n}, at::TensorOptions().dtype(at::kLong));
    group_->broadcast(tokens, 0);  // same input on both ranks
    const at::Tensor positions = at::arange(n, at::kLong).unsqueeze(0).expand({b, n}).contiguous();
    const at::Tensor mask = model::causal_mask(b, n, 0, at::kFloat, at::kCPU);
    const at::Tensor a = full->forward(tokens, positions, mask), s = shard->forward(tokens, positions, mask);
    ASSERT_EQ(s.sizes(), a.sizes());
    EXPECT_LE(max_diff(a, s), 1e-5) << "causal logits";
    // Prefill into a cache, then one causal step on top of it.
    model::KvCache cf, cs;
    full->forward(tokens, positions, mask, &cf);
    shard->forward(tokens, positions, mask, &cs);
    EXPECT_EQ(cs.k[0].size(1), full->options().num_key_value_heads / kTp);  // [B, kv_heads/tp, len, d]
    EXPECT_EQ(cf.k[0].size(1), full->options().num_key_value_heads);
    const at::Tensor next = tokens.narrow(1, 0, 2).contiguous();
    const at::Tensor next_pos = (positions.narrow(1, 0, 2) + n).contiguous();
    const at::Tensor next_mask = model::causal_mask(b, 2, n, at::kFloat, at::kCPU);
    EXPECT_LE(max_diff(full->forward(next, next_pos, next_mask, &cf), shard->forward(next, next_pos, next_mask, &cs)),
              1e-5)
        << "cached step logits";
  }

  // Tree attention over the KV cache, driven as LlamaTreeScorer drives it: prefill, two extends of
  // tree nodes (several children per parent, padding nodes), compact, truncate, extend again.
  decode::LlamaTreeScorer sf(full), ss(shard);
  const auto ps = prompts(vocab);
  EXPECT_LE(max_diff(sf.prefill(ps), ss.prefill(ps)), 1e-5) << "prefill";
  const int64_t b = static_cast<int64_t>(ps.size()), s0 = sf.length();
  // Level 1: three children of each prompt's last slot (request 2 has a padding node).
  at::Tensor tok1 = at::randint(5, vocab, {b, 3}, at::TensorOptions().dtype(at::kLong));
  group_->broadcast(tok1, 0);
  at::Tensor par1 = at::empty({b, 3}, at::kLong);
  for (int64_t r = 0; r < b; ++r)
    for (int64_t i = 0; i < 3; ++i) par1[r][i] = static_cast<int64_t>(ps[static_cast<size_t>(r)].size()) - 1;
  par1[2][2] = -1;
  EXPECT_LE(max_diff(sf.extend(tok1, par1), ss.extend(tok1, par1)), 1e-5) << "tree level 1";
  // Level 2: two children of node 0, one of node 1, one of a level-2 sibling.
  at::Tensor tok2 = at::randint(5, vocab, {b, 4}, at::TensorOptions().dtype(at::kLong));
  group_->broadcast(tok2, 0);
  at::Tensor par2 = at::tensor({s0, s0, s0 + 1, s0 + 3}, at::kLong).unsqueeze(0).expand({b, 4}).contiguous();
  EXPECT_LE(max_diff(sf.extend(tok2, par2), ss.extend(tok2, par2)), 1e-5) << "tree level 2";
  EXPECT_EQ(ss.cache().k[0].size(1), full->options().num_key_value_heads / kTp);
  // Keep the prompt region plus the path s0 -> s0+4 (slot s0+3+1 after level 1's 3 nodes).
  std::vector<int64_t> keep_slots;
  for (int64_t j = 0; j < s0; ++j) keep_slots.push_back(j);
  keep_slots.push_back(s0);
  keep_slots.push_back(s0 + 3);  // level 2 node 0, child of s0
  const int64_t m = static_cast<int64_t>(keep_slots.size());
  const at::Tensor keep = at::tensor(keep_slots, at::kLong).unsqueeze(0).expand({b, m}).contiguous();
  sf.compact(keep);
  ss.compact(keep);
  at::Tensor tok3 = at::randint(5, vocab, {b, 2}, at::TensorOptions().dtype(at::kLong));
  group_->broadcast(tok3, 0);
  const at::Tensor par3 = at::tensor({m - 1, m - 1}, at::kLong).unsqueeze(0).expand({b, 2}).contiguous();
  EXPECT_LE(max_diff(sf.extend(tok3, par3), ss.extend(tok3, par3)), 1e-5) << "after compact";
  sf.truncate(s0 + 1);
  ss.truncate(s0 + 1);
  const at::Tensor par4 = at::full({b, 2}, s0, at::kLong);
  EXPECT_LE(max_diff(sf.extend(tok3, par4), ss.extend(tok3, par4)), 1e-5) << "after truncate";

  // Both ranks of the group computed the same (replicated) logits.
  const at::Tensor mine = ss.extend(tok3, par4);
  const at::Tensor both = group_->all_gather(mine);
  EXPECT_TRUE(at::equal(both[0], both[1]));
}

TEST_F(TpMpi, TargetBeamSearchTopKEqualsUnsharded) {
  if (!in_group_) GTEST_SKIP() << "rank outside the tp group";
  CheckpointReader reader(path_);
  model::LlamaModel full = model::load_model(reader);
  model::LlamaModel shard = model::load_model_shard(reader, group_->rank(), kTp);
  shard->set_tensor_parallel(group_.get());
  const ItemCatalog catalog = tiny_catalog();
  const auto ps = prompts(catalog.vocab().size());
  for (const std::string kind : {"trie", "level"}) {
    const auto constraint = make_constraint(kind, catalog);
    for (int64_t k : {1, 5, 10}) {
      decode::SearchOptions o;
      o.beam_width = k;
      decode::LlamaTreeScorer sf(full), ss(shard);
      const auto a = decode::TargetBeamSearch(sf, *constraint, o).run(ps);
      const auto b = decode::TargetBeamSearch(ss, *constraint, o).run(ps);
      ASSERT_EQ(a.size(), b.size());
      for (size_t r = 0; r < a.size(); ++r) {
        const std::string what = kind + " K=" + std::to_string(k) + " request " + std::to_string(r);
        ASSERT_EQ(a[r].beams.size(), b[r].beams.size()) << what;
        for (size_t i = 0; i < a[r].beams.size(); ++i) {
          EXPECT_NEAR(a[r].beams[i].score, b[r].beams[i].score, 1e-4) << what << " beam " << i;
          // Identical items, except that a near-tie (SPEC §9.2) may swap neighbours.
          if (a[r].beams[i].tokens != b[r].beams[i].tokens) {
            const bool tie = (i + 1 < a[r].beams.size() &&
                              std::abs(a[r].beams[i].score - a[r].beams[i + 1].score) < 1e-4) ||
                             (i > 0 && std::abs(a[r].beams[i].score - a[r].beams[i - 1].score) < 1e-4);
            EXPECT_TRUE(tie) << what << " beam " << i << " differs without a near-tie";
          }
        }
      }
    }
  }
}

TEST_F(TpMpi, TpCommunicatorSplitsAdjacentRanks) {
  // make_tp_communicator needs tp | world size: with 3 ranks use tp 3 (one group) and tp 1.
  const int n = world_->size();
  const int tp = n % 2 == 0 ? 2 : n;
  auto g = make_tp_communicator(*world_, tp);
  EXPECT_EQ(g->size(), tp);
  EXPECT_EQ(g->rank(), world_->rank() % tp);
  at::Tensor x = at::full({1}, static_cast<double>(world_->rank()), at::kDouble);
  g->all_reduce(x, ReduceOp::Sum);
  const int base = world_->rank() / tp * tp;  // the group's ranks are [base, base + tp)
  EXPECT_EQ(x.item<double>(), tp * base + tp * (tp - 1) / 2.0);
  auto solo = make_tp_communicator(*world_, 1);
  EXPECT_EQ(solo->size(), 1);
  if (n == 3) {
    try {
      make_tp_communicator(*world_, 2);
      ADD_FAILURE() << "tp 2 over 3 ranks must fail";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Distributed);
      EXPECT_NE(e.message().find("does not divide the world size 3"), std::string::npos) << e.message();
    }
  }
}

}  // namespace
}  // namespace atspeed
