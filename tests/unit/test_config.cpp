#include <gtest/gtest.h>

#include <fstream>

#include "core/config.h"
#include "core/config_types.h"
#include "tests/test_util.h"

namespace atspeed {
namespace {

using test::TempDir;

void write(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

// A small config tree: config.yaml with a defaults list over two groups.
class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write(dir.path() / "config.yaml",
          "defaults:\n  - model: small\n  - data: a\nrun:\n  seed: 1\n  threads: 2\nmodel:\n  hidden_size: 32\n");
    write(dir.path() / "model/small.yaml", "name: small\nhidden_size: 16\nnum_attention_heads: 2\nnum_key_value_heads: 1\n"
                                           "intermediate_size: 40\nnum_hidden_layers: 2\n");
    write(dir.path() / "model/big.yaml", "name: big\nhidden_size: 64\nnum_attention_heads: 4\nnum_key_value_heads: 2\n"
                                         "intermediate_size: 160\nnum_hidden_layers: 3\n");
    write(dir.path() / "data/a.yaml", "name: a\nhistory_len: 20\n");
  }
  Config compose(std::vector<std::string> overrides = {}) { return Config::compose(dir.str(), "config", overrides); }
  static std::string error_of(const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Config);
      return e.what();
    }
    ADD_FAILURE() << "no error thrown";
    return "";
  }
  TempDir dir;
};

TEST_F(ConfigTest, DefaultsThenPrimaryThenOverrides) {
  Config c = compose();
  EXPECT_EQ(c.at("model.name").as<std::string>(), "small");
  EXPECT_EQ(c.at("model.hidden_size").as<int>(), 32);  // config.yaml beats the group file
  EXPECT_EQ(c.at("data.history_len").as<int>(), 20);
  EXPECT_EQ(c.choices().at("model"), "small");
  EXPECT_EQ(c.origin("model.name"), (dir.path() / "model/small.yaml").string());
  EXPECT_EQ(c.origin("model.hidden_size"), (dir.path() / "config.yaml").string());
  EXPECT_FALSE(c.has("defaults"));
}

TEST_F(ConfigTest, GroupSwapKeyOverrideAndAdd) {
  Config c = compose({"model=big", "run.seed=7", "+run.note=hello", "data.history_len=5"});
  EXPECT_EQ(c.at("model.name").as<std::string>(), "big");
  EXPECT_EQ(c.at("model.num_hidden_layers").as<int>(), 3);
  EXPECT_EQ(c.at("run.seed").as<int>(), 7);
  EXPECT_EQ(c.at("run.note").as<std::string>(), "hello");
  EXPECT_EQ(c.at("data.history_len").as<int>(), 5);
  EXPECT_EQ(c.origin("run.seed"), "command line");
}

TEST_F(ConfigTest, OverrideErrorsNameTheKey) {
  EXPECT_NE(error_of([&] { compose({"run.sed=3"}); }).find("run.sed: unknown key"), std::string::npos);
  EXPECT_NE(error_of([&] { compose({"model.tp=2"}); }).find("the tensor-parallel degree is dist.tp"), std::string::npos);
  EXPECT_NE(error_of([&] { compose({"+run.seed=3"}); }).find("already exists"), std::string::npos);
  EXPECT_NE(error_of([&] { compose({"model=huge"}); }).find("available: big, small"), std::string::npos);
  EXPECT_NE(error_of([&] { compose({"novalue"}); }).find("novalue"), std::string::npos);
  EXPECT_NE(error_of([&] { Config::compose(dir.str(), "nope", {}); }).find("nope.yaml"), std::string::npos);
}

TEST_F(ConfigTest, TypedSectionsRejectUnknownKeysAndWrongTypesNamingTheFile) {
  write(dir.path() / "model/typo.yaml", "name: t\nhiden_size: 3\n");
  std::string msg = error_of([&] { read_section<ModelConfig>(compose({"model=typo"}), "model"); });
  EXPECT_NE(msg.find("model.hiden_size: unknown key"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model/typo.yaml"), std::string::npos) << msg;

  msg = error_of([&] { read_section<RunConfig>(compose({"run.seed=abc"}), "run"); });
  EXPECT_NE(msg.find("run.seed: wrong type"), std::string::npos) << msg;
  EXPECT_NE(msg.find("command line"), std::string::npos) << msg;

  msg = error_of([&] { read_section<ModelConfig>(compose({"model.num_attention_heads=3"}), "model"); });
  EXPECT_NE(msg.find("model.num_attention_heads: must be > 0 and divide hidden_size"), std::string::npos) << msg;
  EXPECT_NE(msg.find("command line"), std::string::npos) << msg;
}

TEST_F(ConfigTest, TypedSectionReadsValuesAndKeepsDefaults) {
  auto model = read_section<ModelConfig>(compose({"model=big"}), "model");
  EXPECT_EQ(model.hidden_size, 32);  // from config.yaml
  EXPECT_EQ(model.num_hidden_layers, 3);
  EXPECT_EQ(model.head_dim(), 8);
  EXPECT_DOUBLE_EQ(model.rope_theta, 10000.0);  // not in any file: the struct default
  auto run = read_section<RunConfig>(compose(), "run");
  EXPECT_EQ(run.seed, 1);
  EXPECT_EQ(run.out_dir, "runs/default");
}

TEST_F(ConfigTest, ResolvedConfigRoundTripsThroughYamlAndDisk) {
  Config c = compose({"model=big", "run.seed=9"});
  TempDir out;
  const std::string path = c.save_to_dir(out.str("run1"));
  std::ifstream f(path);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  Config back = Config::from_yaml(text, path);
  EXPECT_EQ(back.to_yaml(), c.to_yaml());
  EXPECT_EQ(back.at("run.seed").as<int>(), 9);
  EXPECT_EQ(back.origin("run.seed"), path);
}

TEST_F(ConfigTest, InvalidYamlNamesFileAndLine) {
  write(dir.path() / "data/bad.yaml", "name: a\n  history_len: [1, 2\n");
  const std::string msg = error_of([&] { compose({"data=bad"}); });
  EXPECT_NE(msg.find("data/bad.yaml:"), std::string::npos) << msg;
}

TEST(ConfigRepoTest, ShippedConfigsComposeAndValidate) {
  Config c = Config::compose(std::string(ATSPEED_SOURCE_DIR) + "/configs", "config", {});
  EXPECT_NO_THROW(read_section<ModelConfig>(c, "model"));
  EXPECT_NO_THROW(read_section<RunConfig>(c, "run"));
  EXPECT_NO_THROW(read_section<LogConfig>(c, "log"));
  EXPECT_NO_THROW(read_section<DistConfig>(c, "dist"));
  for (const auto& entry : std::filesystem::directory_iterator(std::string(ATSPEED_SOURCE_DIR) + "/configs/model")) {
    Config m = Config::compose(std::string(ATSPEED_SOURCE_DIR) + "/configs", "config", {"model=" + entry.path().stem().string()});
    EXPECT_NO_THROW(read_section<ModelConfig>(m, "model")) << entry.path();
  }
}

}  // namespace
}  // namespace atspeed
