// `atspeed convert`: the real binary on the HF parity fixture (tests/data/parity). Import to HDF5
// reproduces transformers' logits through load_model, h5 -> hf -> h5 is lossless, inspect reads the
// result, and unsupported configs and bad command lines fail with the documented exit codes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "core/io/checkpoint.h"
#include "core/io/safetensors.h"
#include "core/model/hf_checkpoint.h"
#include "core/model/model_io.h"
#include "tests/test_util.h"

namespace atspeed {
namespace {

using test::run_atspeed;
using test::TempDir;

std::string fixture_dir() { return std::string(ATSPEED_SOURCE_DIR) + "/tests/data/parity"; }

at::Tensor causal_logits(model::LlamaModel& m, const at::Tensor& ids) {
  torch::NoGradGuard g;
  const int64_t n = ids.size(1);
  return m->forward(ids, torch::arange(n, torch::kLong).unsqueeze(0),
                    model::causal_mask(1, n, 0, m->options().param_dtype, at::kCPU));
}

TEST(ConvertCliTest, ImportedFixtureMatchesTransformersLogits) {
  TempDir dir;
  const std::string h5 = dir.str("target.h5");
  const auto r = run_atspeed("convert --from '" + fixture_dir() + "' --out '" + h5 + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  CheckpointReader reader(h5, "target");
  EXPECT_NE(reader.attributes().config_yaml.find("model:\n  name: \"parity\"\n"), std::string::npos)
      << reader.attributes().config_yaml;
  EXPECT_EQ(reader.string_attribute("", "converted_from"), std::filesystem::path(fixture_dir()).lexically_normal().string());
  model::LlamaModel m = model::load_model(reader);
  EXPECT_EQ(m->options().num_key_value_heads, 2);
  const auto fixture = load_safetensors(fixture_dir() + "/fixture.safetensors");
  const at::Tensor logits = causal_logits(m, fixture.at("causal_input_ids"));
  const double diff = (logits - fixture.at("causal_logits")).abs().max().item<double>();
  EXPECT_LE(diff, 1e-4);

  // inspect shows the model with its tensor-parallel splits.
  const auto ins = run_atspeed("inspect '" + h5 + "'");
  ASSERT_EQ(ins.exit_code, 0) << ins.output;
  for (const std::string expected : {"kind:           target", "converted_from", "tp_split", "lm_head.weight",
                                     "model.layers.1.mlp.down_proj.weight", "row", "column", "[16, 32]"}) {
    EXPECT_NE(ins.output.find(expected), std::string::npos) << "missing '" << expected << "' in:\n" << ins.output;
  }
}

TEST(ConvertCliTest, RoundTripH5ToHfToH5IsLossless) {
  TempDir dir;
  const std::string first = dir.str("a.h5"), second = dir.str("b.h5"), hf = dir.str("hf");
  ASSERT_EQ(run_atspeed("convert --from '" + fixture_dir() + "/model.safetensors' --out '" + first + "' --kind draft")
                .exit_code,
            0);
  auto r = run_atspeed("convert --from '" + first + "' --to-hf '" + hf + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(std::filesystem::exists(hf + "/config.json"));
  // The exported weights are the fixture's, bit for bit.
  const auto original = load_safetensors(fixture_dir() + "/model.safetensors");
  const auto exported = load_safetensors(hf + "/model.safetensors");
  ASSERT_EQ(original.size(), exported.size());
  for (const auto& [name, t] : original) EXPECT_TRUE(torch::equal(t, exported.at(name))) << name;
  // The exported config describes the same model.
  const ModelConfig a = model::model_config_from_hf_json(fixture_dir() + "/config.json");
  const ModelConfig b = model::model_config_from_hf_json(hf + "/config.json");
  EXPECT_EQ(model::model_config_yaml(b).substr(model::model_config_yaml(b).find("vocab_size")),
            model::model_config_yaml(a).substr(model::model_config_yaml(a).find("vocab_size")));

  r = run_atspeed("convert --from '" + hf + "' --out '" + second + "' --kind draft");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto x = load_checkpoint(first, "draft"), y = load_checkpoint(second, "draft");
  ASSERT_EQ(x.size(), y.size());
  for (const auto& [name, t] : x) {
    ASSERT_TRUE(y.count(name)) << name;
    EXPECT_TRUE(torch::equal(t, y.at(name))) << name;
  }
}

TEST(ConvertCliTest, DtypeOptionConvertsTheWeights) {
  TempDir dir;
  const std::string h5 = dir.str("bf16.h5");
  const auto r = run_atspeed("convert --from '" + fixture_dir() + "' --out '" + h5 + "' --dtype bfloat16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  CheckpointReader reader(h5);
  EXPECT_EQ(reader.info("model.embed_tokens.weight").dtype, "bfloat16");
  EXPECT_EQ(model::model_config_from_checkpoint(reader).dtype, "bfloat16");
}

TEST(ConvertCliTest, UnsupportedConfigsAndBadUsageFail) {
  TempDir dir;
  const std::string hf = dir.str("biased");
  std::filesystem::create_directories(hf);
  std::filesystem::copy_file(fixture_dir() + "/model.safetensors", hf + "/model.safetensors");
  std::ifstream in(fixture_dir() + "/config.json");
  std::string config((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  config.replace(config.find("\"attention_bias\": false"), 23, "\"attention_bias\": true");
  std::ofstream(hf + "/config.json") << config;
  auto r = run_atspeed("convert --from '" + hf + "' --out '" + dir.str("x.h5") + "'");
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_NE(r.output.find("attention_bias"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(hf + "/config.json"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir.str("x.h5")));

  r = run_atspeed("convert --from '" + dir.str("nowhere") + "' --out '" + dir.str("x.h5") + "'");
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_EQ(run_atspeed("convert --from '" + fixture_dir() + "'").exit_code, 2);  // no --out / --to-hf
  EXPECT_EQ(run_atspeed("convert --from a --out b.h5 --to-hf c").exit_code, 2);
  EXPECT_EQ(run_atspeed("convert --from '" + fixture_dir() + "' --out x.h5 --dtype float16").exit_code, 2);
  EXPECT_EQ(run_atspeed("convert --from '" + fixture_dir() + "' --out x.h5 --kind teacher").exit_code, 2);
}

}  // namespace
}  // namespace atspeed
