// Tensor-parallel sharding in one process (the forward equivalence over MPI is in
// tests/mpi/test_tp_mpi.cpp): shard shapes and validation, a shard loaded from a checkpoint equals
// the slice of the full tensor and reads only its hyperslabs, and the guards around sharded forwards.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "core/dist/communicator.h"
#include "core/errors.h"
#include "core/io/checkpoint.h"
#include "core/model/llama.h"
#include "core/model/model_io.h"
#include "tests/test_models.h"
#include "tests/test_util.h"

namespace atspeed {
namespace {

using model::TpSplit;

// Message of the atspeed::Error `f` throws, checking its kind ("" when nothing is thrown).
template <typename F>
std::string error_of(F&& f, ErrorKind kind) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    return e.message();
  }
  ADD_FAILURE() << "no error thrown";
  return "";
}

model::LlamaOptions options(int64_t heads, int64_t kv_heads, int64_t intermediate) {
  ModelConfig c;
  c.name = "tp_test";
  c.vocab_size = 11;
  c.hidden_size = 8 * heads;
  c.intermediate_size = intermediate;
  c.num_hidden_layers = 1;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  return model::LlamaOptions::from_config(c);
}

TEST(TpTest, ValidationNamesTheFieldThatDoesNotDivide) {
  const auto o = options(4, 2, 32);
  EXPECT_NO_THROW(o.sharded(1, 2));
  std::string msg = error_of([&] { o.sharded(0, 3); }, ErrorKind::Config);
  EXPECT_NE(msg.find("dist.tp=3 does not divide model.num_attention_heads (4)"), std::string::npos) << msg;
  msg = error_of([&] { o.sharded(0, 4); }, ErrorKind::Config);  // 4 heads divide, 2 KV heads do not
  EXPECT_NE(msg.find("model.num_key_value_heads (2)"), std::string::npos) << msg;
  msg = error_of([&] { options(4, 4, 30).sharded(0, 4); }, ErrorKind::Config);
  EXPECT_NE(msg.find("model.intermediate_size (30)"), std::string::npos) << msg;
  msg = error_of([&] { o.sharded(2, 2); }, ErrorKind::Config);
  EXPECT_NE(msg.find("rank 2 is outside [0, 2)"), std::string::npos) << msg;
  msg = error_of([&] { o.sharded(0, 0); }, ErrorKind::Config);
  EXPECT_NE(msg.find("must be >= 1"), std::string::npos) << msg;
}

TEST(TpTest, ShardHoldsOneTpthOfEachSplitWeightAndKeepsHfNames) {
  const auto o = options(4, 2, 32);
  model::LlamaModel full(o);
  model::LlamaModel shard(o.sharded(1, 2));
  auto fp = full->named_parameters();
  auto sp = shard->named_parameters();
  ASSERT_EQ(fp.size(), sp.size());
  for (size_t i = 0; i < fp.size(); ++i) {
    const std::string& name = fp[i].key();
    ASSERT_EQ(sp[i].key(), name);
    const TpSplit split = model::tp_split_of(name);
    const int64_t expected = split == TpSplit::None ? fp[i].value().numel() : fp[i].value().numel() / 2;
    EXPECT_EQ(sp[i].value().numel(), expected) << name;
    if (split == TpSplit::Column) EXPECT_EQ(sp[i].value().size(0) * 2, fp[i].value().size(0)) << name;
    if (split == TpSplit::Row) EXPECT_EQ(sp[i].value().size(1) * 2, fp[i].value().size(1)) << name;
  }
  auto attn = shard->model->layers->ptr<model::LlamaDecoderLayerImpl>(0)->self_attn;
  EXPECT_EQ(attn->num_heads, 2);
  EXPECT_EQ(attn->num_kv_heads, 1);
  EXPECT_EQ(attn->head_dim, 8);
}

TEST(TpTest, TpSliceOfPicksTheRankRangeAlongTheSplitDim) {
  const auto q = model::tp_slice_of("model.layers.0.self_attn.q_proj.weight", {32, 16}, 1, 4);
  EXPECT_EQ(q.dim, 0);
  EXPECT_EQ(q.begin, 8);
  EXPECT_EQ(q.end, 16);
  const auto down = model::tp_slice_of("model.layers.0.mlp.down_proj.weight", {16, 40}, 3, 4);
  EXPECT_EQ(down.dim, 1);
  EXPECT_EQ(down.begin, 30);
  EXPECT_EQ(down.end, 40);
  const auto norm = model::tp_slice_of("model.norm.weight", {16}, 3, 4);
  EXPECT_EQ(norm.dim, 0);
  EXPECT_EQ(norm.begin, 0);
  EXPECT_EQ(norm.end, 16);
  const std::string msg =
      error_of([] { model::tp_slice_of("model.layers.0.mlp.up_proj.weight", {30, 16}, 0, 4); }, ErrorKind::Config);
  EXPECT_NE(msg.find("does not divide by tp=4"), std::string::npos) << msg;
}

TEST(TpTest, LoadedShardEqualsSliceOfFullTensorAndReadsOnlyItsHyperslabs) {
  test::TempDir dir;
  model::LlamaModel full = test::random_model(23, 5);  // 4 heads, 2 KV heads, hidden 16, intermediate 32
  const std::string path = dir.str("full.h5");
  test::write_model_checkpoint(path, full, "fp");
  int64_t full_bytes = 0;
  for (const auto& p : full->parameters()) full_bytes += static_cast<int64_t>(p.nbytes());
  for (int64_t tp : {1, 2}) {
    for (int64_t rank = 0; rank < tp; ++rank) {
      const std::string what = "rank " + std::to_string(rank) + " of " + std::to_string(tp);
      CheckpointReader reader(path);
      model::LlamaModel shard = model::load_model_shard(reader, rank, tp);
      EXPECT_EQ(shard->options().tp_rank, rank);
      EXPECT_EQ(shard->options().tp_size, tp);
      int64_t shard_bytes = 0;
      auto fp = full->named_parameters();
      for (const auto& p : shard->named_parameters()) {
        const at::Tensor& expected = *fp.find(p.key());
        const at::Tensor slice = model::tp_shard(expected, p.key(), rank, tp);
        EXPECT_TRUE(at::equal(p.value(), slice)) << what << " " << p.key();
        if (tp > 1 && model::tp_split_of(p.key()) != TpSplit::None)
          EXPECT_EQ(p.value().numel() * tp, expected.numel()) << what << " " << p.key();
        shard_bytes += static_cast<int64_t>(p.value().nbytes());
      }
      // Exactly the shard's bytes came out of the file: the split weights were read as hyperslabs.
      EXPECT_EQ(reader.bytes_read(), shard_bytes) << what;
      if (tp > 1) EXPECT_LT(shard_bytes, full_bytes) << what;
    }
  }
  // A shard cannot be saved under the full names.
  CheckpointReader reader(path);
  model::LlamaModel shard = model::load_model_shard(reader, 0, 2);
  CheckpointWriter writer(dir.str("shard.h5"), CheckpointAttributes{});
  const std::string msg = error_of([&] { model::write_parameters(writer, *shard); }, ErrorKind::Checkpoint);
  EXPECT_NE(msg.find("shard 0 of 2"), std::string::npos) << msg;
  // tp 3 does not divide the 4 heads: a clear config error before any read.
  const std::string msg3 = error_of([&] { model::load_model_shard(reader, 0, 3); }, ErrorKind::Config);
  EXPECT_NE(msg3.find("num_attention_heads"), std::string::npos) << msg3;
}

TEST(TpTest, ShardedForwardNeedsAMatchingGroupAndNoGrad) {
  const auto o = options(4, 2, 32);
  model::LlamaModel shard(o.sharded(0, 2));
  const at::Tensor tokens = at::zeros({1, 3}, at::kLong);
  const at::Tensor positions = at::arange(3, at::kLong).unsqueeze(0);
  const at::Tensor mask = model::causal_mask(1, 3, 0, at::kFloat, at::kCPU);
  std::string msg = error_of(
      [&] {
        torch::NoGradGuard g;
        shard->forward(tokens, positions, mask);
      },
      ErrorKind::Distributed);
  EXPECT_NE(msg.find("set_tensor_parallel"), std::string::npos) << msg;
  auto local = make_local_communicator();  // 1 rank: not a group for a 2-way shard
  msg = error_of([&] { shard->set_tensor_parallel(local.get()); }, ErrorKind::Distributed);
  EXPECT_NE(msg.find("rank 0 of 1"), std::string::npos) << msg;
  msg = error_of([&] { shard->set_tensor_parallel(nullptr); }, ErrorKind::Distributed);
  EXPECT_NE(msg.find("needs a communicator"), std::string::npos) << msg;

  // An unsharded model accepts a 1-rank group and ignores it: same logits as without.
  model::LlamaModel whole(o);
  torch::NoGradGuard g;
  const at::Tensor before = whole->forward(tokens, positions, mask);
  whole->set_tensor_parallel(local.get());
  EXPECT_EQ(whole->tensor_parallel(), nullptr);
  EXPECT_TRUE(at::equal(whole->forward(tokens, positions, mask), before));
}

}  // namespace
}  // namespace atspeed
