// Reference parity with HuggingFace transformers: tests/data/parity holds a tiny random
// LlamaForCausalLM (GQA, 2 layers) and the logits transformers computed with it
// (tools/make_parity_fixture.py). Our model, loaded from the same config.json and safetensors, must
// reproduce them to 1e-4, both as a plain causal sequence and as a tree of continuations scored in
// one forward pass over a KV cache (SPEC §2.3, §3.3). Also the HF config mapping and the
// HF checkpoint save/load (single file and sharded).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/io/safetensors.h"
#include "core/model/hf_checkpoint.h"
#include "core/model/llama.h"
#include "kernels/tree_mask.h"
#include "tests/test_util.h"

namespace atspeed::model {
namespace {

constexpr double kTolerance = 1e-4;

std::string fixture_dir() { return std::string(ATSPEED_SOURCE_DIR) + "/tests/data/parity"; }

std::map<std::string, at::Tensor>& fixture() {
  static std::map<std::string, at::Tensor> f = load_safetensors(fixture_dir() + "/fixture.safetensors");
  return f;
}

void expect_close(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const double diff = (got.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>();
  EXPECT_LE(diff, kTolerance) << what << ": max abs diff " << diff;
}

TEST(ParityTest, ConfigJsonMapsOntoModelConfig) {
  const ModelConfig c = model_config_from_hf_json(fixture_dir() + "/config.json");
  EXPECT_EQ(c.name, "parity");
  EXPECT_EQ(c.vocab_size, 64);
  EXPECT_EQ(c.hidden_size, 32);
  EXPECT_EQ(c.intermediate_size, 64);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.max_position_embeddings, 128);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.dtype, "float32");
}

TEST(ParityTest, CausalLogitsMatchTransformers) {
  LlamaModel m = load_hf_model(fixture_dir());
  torch::NoGradGuard g;
  const at::Tensor ids = fixture().at("causal_input_ids");
  const int64_t n = ids.size(1);
  const at::Tensor logits = m->forward(ids, torch::arange(n, torch::kLong).unsqueeze(0),
                                       causal_mask(1, n, 0, at::kFloat, at::kCPU));
  // The fixture's logits vary enough that a wrong rotary convention or GQA mapping cannot pass.
  ASSERT_GT(fixture().at("causal_logits").std().item<double>(), 0.5);
  expect_close(logits, fixture().at("causal_logits"), "causal logits");
}

TEST(ParityTest, TreeOverKvCacheMatchesTransformersBranches) {
  LlamaModel m = load_hf_model(fixture_dir());
  torch::NoGradGuard g;
  const at::Tensor prompt = fixture().at("tree_prompt_ids");  // [1, L]
  const at::Tensor tokens = fixture().at("tree_node_tokens");  // [N]
  const at::Tensor parents = fixture().at("tree_node_parents");
  const at::Tensor depths = fixture().at("tree_node_depths");
  const int64_t len = prompt.size(1), n = tokens.size(0);

  KvCache cache;
  const at::Tensor prompt_logits = m->forward(prompt, torch::arange(len, torch::kLong).unsqueeze(0),
                                              causal_mask(1, len, 0, at::kFloat, at::kCPU), &cache);
  expect_close(prompt_logits, fixture().at("tree_prompt_logits"), "prompt logits");
  ASSERT_EQ(cache.length(), len);

  // Every node sees the prompt, its ancestors and itself; positions continue from the prompt by depth.
  const at::Tensor mask = kernels::tree_attention_mask(parents.unsqueeze(0), torch::full({1}, len, torch::kLong), len,
                                                       at::kFloat);
  const at::Tensor positions = (depths + (len - 1)).unsqueeze(0);
  const at::Tensor node_logits = m->forward(tokens.unsqueeze(0), positions, mask, &cache);  // [1, N, V]
  ASSERT_EQ(cache.length(), len + n);
  const at::Tensor want = fixture().at("tree_node_logits");
  for (int64_t i = 0; i < n; ++i)
    expect_close(node_logits[0][i], want[i], "tree node " + std::to_string(i) + " (depth " +
                                                 std::to_string(depths[i].item<int64_t>()) + ")");
  // The per-node logits really differ between siblings (the test would be vacuous otherwise).
  EXPECT_GT((want[0] - want[1]).abs().max().item<double>(), 0.1);
}

TEST(ParityTest, TreeAndPromptInOneForwardMatchTransformers) {
  // No cache: prompt rows causal, node rows see the whole prompt plus their ancestors.
  LlamaModel m = load_hf_model(fixture_dir());
  torch::NoGradGuard g;
  const at::Tensor prompt = fixture().at("tree_prompt_ids");
  const at::Tensor parents = fixture().at("tree_node_parents");
  const int64_t len = prompt.size(1), n = parents.size(0);
  const at::Tensor tree = kernels::tree_attention_mask(parents.unsqueeze(0), torch::full({1}, len, torch::kLong), len,
                                                       at::kFloat);                    // [1, N, L+N]
  const at::Tensor top = causal_mask(1, len, 0, at::kFloat, at::kCPU);                 // [1, L, L]
  const at::Tensor blocked = torch::full({1, len, n}, -std::numeric_limits<float>::infinity());
  const at::Tensor mask = torch::cat({torch::cat({top, blocked}, 2), tree}, 1);        // [1, L+N, L+N]
  const at::Tensor ids = torch::cat({prompt, fixture().at("tree_node_tokens").unsqueeze(0)}, 1);
  const at::Tensor positions =
      torch::cat({torch::arange(len, torch::kLong), fixture().at("tree_node_depths") + (len - 1)}).unsqueeze(0);
  const at::Tensor logits = m->forward(ids, positions, mask);
  expect_close(logits.narrow(1, 0, len), fixture().at("tree_prompt_logits"), "prompt rows");
  expect_close(logits[0].narrow(0, len, n), fixture().at("tree_node_logits"), "node rows");
}

TEST(ParityTest, Bfloat16LoadIsCloseToTransformers) {
  LlamaModel m = load_hf_model(fixture_dir(), std::string("bfloat16"));
  torch::NoGradGuard g;
  EXPECT_EQ(m->model->embed_tokens->weight.scalar_type(), at::kBFloat16);
  const at::Tensor ids = fixture().at("causal_input_ids");
  const int64_t n = ids.size(1);
  const at::Tensor logits =
      m->forward(ids, torch::arange(n, torch::kLong).unsqueeze(0), causal_mask(1, n, 0, at::kBFloat16, at::kCPU));
  const double diff = (logits.to(at::kFloat) - fixture().at("causal_logits")).abs().max().item<double>();
  EXPECT_LT(diff, 0.25) << "bfloat16 logits drift too far";
}

// ------------------------------------------------------------------------------------------------
// HF config mapping

std::string fixture_config_with(const std::function<void(std::string&)>& edit) {
  std::ifstream in(fixture_dir() + "/config.json");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  edit(text);
  return text;
}

void replace(std::string& text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  ASSERT_NE(at, std::string::npos) << from;
  text.replace(at, from.size(), to);
}

void expect_config_refused(const std::string& text, const std::string& key) {
  try {
    model_config_from_hf_json_text(text, "x/config.json", "x");
    FAIL() << "accepted bad " << key;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Checkpoint) << e.message();
    EXPECT_NE(e.message().find("x/config.json"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find(key), std::string::npos) << e.message();
  }
}

TEST(HfConfigTest, RefusesWhatWeDoNotImplement) {
  auto with = [](const std::string& from, const std::string& to) {
    return fixture_config_with([&](std::string& t) { replace(t, from, to); });
  };
  expect_config_refused(with("\"attention_bias\": false", "\"attention_bias\": true"), "attention_bias");
  expect_config_refused(with("\"mlp_bias\": false", "\"mlp_bias\": true"), "mlp_bias");
  expect_config_refused(with("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\""), "hidden_act");
  expect_config_refused(with("\"rope_type\": \"default\"", "\"rope_type\": \"llama3\""), "rope_parameters.rope_type");
  expect_config_refused(with("\"model_type\": \"llama\"", "\"model_type\": \"mistral\""), "model_type");
  expect_config_refused(with("\"head_dim\": 8", "\"head_dim\": 16"), "head_dim");
  expect_config_refused(with("\"vocab_size\": 64", "\"vocab_sz\": 64"), "vocab_size");
  expect_config_refused(with("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"), "num_key_value_heads");
  expect_config_refused(with("\"hidden_size\": 32", "\"hidden_size\": \"32\""), "hidden_size");
  expect_config_refused(with("\"use_cache\": true", "\"use_cache\": true, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}"),
                        "rope_scaling");
  expect_config_refused("{\"vocab_size\": ", "not valid JSON");
}

TEST(HfConfigTest, ReadsTransformers4StyleConfigs) {
  // 4.x: rope_theta at the top level, torch_dtype, rope_scaling null, no head_dim.
  const std::string v4 = R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 100,
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 8,
    "max_position_embeddings": 512, "rope_theta": 500000.0, "rope_scaling": null, "rms_norm_eps": 1e-05,
    "torch_dtype": "bfloat16", "tie_word_embeddings": true, "pretraining_tp": 1})";
  const ModelConfig c = model_config_from_hf_json_text(v4, "v4.json", "v4");
  EXPECT_EQ(c.num_key_value_heads, 8);  // absent: multi-head attention
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.dtype, "bfloat16");
  EXPECT_TRUE(c.tie_word_embeddings);
  // Our own export reads back identically, and its model: yaml too.
  const ModelConfig back = model_config_from_hf_json_text(hf_json_from_model_config(c), "export.json", "v4");
  EXPECT_EQ(back.num_key_value_heads, 8);
  EXPECT_EQ(back.rope_theta, 500000.0);
  EXPECT_EQ(back.rms_norm_eps, 1e-5);
  EXPECT_EQ(back.dtype, "bfloat16");
  EXPECT_TRUE(back.tie_word_embeddings);
  const std::string yaml = model_config_yaml(c);
  EXPECT_NE(yaml.find("  rope_theta: 500000\n"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("  rms_norm_eps: 1e-05\n"), std::string::npos) << yaml;
}

// ------------------------------------------------------------------------------------------------
// HF checkpoints: save, load, shards

at::Tensor fixture_causal(LlamaModel& m) {
  torch::NoGradGuard g;
  const at::Tensor ids = fixture().at("causal_input_ids");
  const int64_t n = ids.size(1);
  return m->forward(ids, torch::arange(n, torch::kLong).unsqueeze(0), causal_mask(1, n, 0, at::kFloat, at::kCPU));
}

TEST(HfCheckpointTest, SaveThenLoadGivesIdenticalWeights) {
  test::TempDir dir;
  LlamaModel m = load_hf_model(fixture_dir() + "/model.safetensors");  // a file path works too
  save_hf_model(*m, dir.str("out"));
  LlamaModel back = load_hf_model(dir.str("out"));
  for (const auto& p : m->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), back->named_parameters()[p.key()])) << p.key();
  // The saved safetensors holds exactly the fixture's tensors.
  auto original = load_safetensors(fixture_dir() + "/model.safetensors");
  auto saved = load_safetensors(dir.str("out/model.safetensors"));
  ASSERT_EQ(original.size(), saved.size());
  for (const auto& [name, t] : original) EXPECT_TRUE(torch::equal(t, saved.at(name))) << name;
}

TEST(HfCheckpointTest, LoadsShardedCheckpoints) {
  test::TempDir dir;
  std::filesystem::copy_file(fixture_dir() + "/config.json", dir.str("config.json"));
  auto all = load_safetensors(fixture_dir() + "/model.safetensors");
  std::vector<std::pair<std::string, at::Tensor>> first, second;
  std::string weight_map;
  for (const auto& [name, t] : all) {
    const bool in_first = name.find("layers.1.") == std::string::npos;
    (in_first ? first : second).emplace_back(name, t);
    weight_map += std::string(weight_map.empty() ? "" : ",") + "\"" + name + "\":\"model-0000" +
                  (in_first ? "1" : "2") + "-of-00002.safetensors\"";
  }
  save_safetensors(dir.str("model-00001-of-00002.safetensors"), first, {{"format", "pt"}});
  save_safetensors(dir.str("model-00002-of-00002.safetensors"), second, {{"format", "pt"}});
  std::ofstream(dir.str("model.safetensors.index.json")) << "{\"metadata\":{},\"weight_map\":{" << weight_map << "}}";
  const HfCheckpointFiles files = find_hf_checkpoint(dir.str());
  EXPECT_EQ(files.weights.size(), 2u);
  LlamaModel m = load_hf_model(dir.str());
  expect_close(fixture_causal(m), fixture().at("causal_logits"), "sharded load");

  // A missing shard is named.
  std::filesystem::remove(dir.str("model-00002-of-00002.safetensors"));
  try {
    load_hf_model(dir.str());
    FAIL() << "missing shard accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Checkpoint);
    EXPECT_NE(e.message().find("model-00002-of-00002.safetensors"), std::string::npos) << e.message();
  }
}

TEST(HfCheckpointTest, RefusesMissingAndUnexpectedTensors) {
  test::TempDir dir;
  std::filesystem::copy_file(fixture_dir() + "/config.json", dir.str("config.json"));
  auto all = load_safetensors(fixture_dir() + "/model.safetensors");
  std::vector<std::pair<std::string, at::Tensor>> tensors(all.begin(), all.end());
  auto without = tensors;
  std::erase_if(without, [](const auto& t) { return t.first == "model.norm.weight"; });
  save_safetensors(dir.str("model.safetensors"), without);
  try {
    load_hf_model(dir.str());
    FAIL() << "missing tensor accepted";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("missing tensor 'model.norm.weight'"), std::string::npos) << e.message();
  }
  auto extra = tensors;
  extra.emplace_back("model.layers.0.self_attn.q_proj.bias", torch::zeros({32}));
  save_safetensors(dir.str("model.safetensors"), extra);
  try {
    load_hf_model(dir.str());
    FAIL() << "unexpected tensor accepted";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("q_proj.bias"), std::string::npos) << e.message();
  }
}

}  // namespace
}  // namespace atspeed::model
