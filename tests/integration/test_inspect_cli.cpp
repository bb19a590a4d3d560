// `atspeed inspect`: the real binary on a checkpoint written in the test, and on bad files.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/io/checkpoint.h"
#include "tests/test_util.h"

namespace atspeed {
namespace {

using test::run_atspeed;
using test::TempDir;

std::string write_sample(const TempDir& dir) {
  const auto path = dir.str("target.h5");
  CheckpointAttributes attrs;
  attrs.kind = "target";
  attrs.fingerprint = "items:42:abcdef";
  attrs.config_yaml = "model:\n  name: target_small\n  hidden: 16\nline4: 4\nline5: 5\nline6: 6\nline7: 7\n"
                      "line8: 8\nline9: 9\nlast_line: the_end\n";
  attrs.ints["num_items"] = 42;
  CheckpointWriter writer(path, attrs);
  writer.write("model.embed_tokens.weight", at::full({10, 4}, 0.5).to(at::kBFloat16));  // norm = sqrt(40)/2
  writer.write("model.layers.0.self_attn.q_proj.weight", at::ones({4, 4}));              // norm = 4
  writer.write("optimizer/exp_avg.model.embed_tokens.weight", at::zeros({10, 4}));
  writer.set_int_attribute("trainer_state", "step", 1234);
  writer.commit();
  return path;
}

TEST(InspectCliTest, PrintsAttributesTensorsAndTotals) {
  TempDir dir;
  const auto path = write_sample(dir);
  const auto r = run_atspeed("inspect '" + path + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const std::string expected :
       {"format_version: 1", "kind:           target", "items:42:abcdef", "num_items: 42", "group trainer_state:",
        "step: 1234", "model.embed_tokens.weight", "bfloat16", "[10, 4]", "model.layers.0.self_attn.q_proj.weight",
        "float32", "[4, 4]", "optimizer/exp_avg.model.embed_tokens.weight", "3.16228", "model:",
        "--config prints it all", "3 tensors, 96 elements", "parameters (root tensors): 56 in 2 tensors"}) {
    EXPECT_NE(r.output.find(expected), std::string::npos) << "missing '" << expected << "' in:\n" << r.output;
  }
  // Model parameters show their tensor-parallel split; tensors in groups do not.
  const auto line_of = [&](const std::string& name) {
    const auto at = r.output.find("  " + name + " ");
    return at == std::string::npos ? std::string() : r.output.substr(at, r.output.find('\n', at) - at);
  };
  EXPECT_NE(r.output.find("tp_split"), std::string::npos) << r.output;
  EXPECT_NE(line_of("model.layers.0.self_attn.q_proj.weight").find(" column "), std::string::npos) << r.output;
  EXPECT_NE(line_of("model.embed_tokens.weight").find(" none "), std::string::npos) << r.output;
  EXPECT_NE(line_of("optimizer/exp_avg.model.embed_tokens.weight").find(" - "), std::string::npos) << r.output;
  // The overview shows only the first lines of the config.
  EXPECT_EQ(r.output.find("last_line"), std::string::npos) << r.output;
}

TEST(InspectCliTest, ConfigFlagPrintsTheStoredConfigInFull) {
  TempDir dir;
  const auto path = write_sample(dir);
  const auto r = run_atspeed("inspect --config '" + path + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, CheckpointReader(path).attributes().config_yaml);
}

TEST(InspectCliTest, BadFilesExitWithCode5AndNameTheFile) {
  TempDir dir;
  const auto path = write_sample(dir);
  const auto size = std::filesystem::file_size(path);
  const auto truncated = dir.str("truncated.h5");
  std::filesystem::copy_file(path, truncated);
  std::filesystem::resize_file(truncated, size / 2);
  auto r = run_atspeed("inspect '" + truncated + "'");
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_NE(r.output.find(truncated), std::string::npos) << r.output;

  const auto missing = dir.str("missing.h5");
  r = run_atspeed("inspect '" + missing + "'");
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_NE(r.output.find("not found"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(missing), std::string::npos) << r.output;

  r = run_atspeed("inspect");
  EXPECT_EQ(r.exit_code, 2) << r.output;  // usage: the file is required
}

}  // namespace
}  // namespace atspeed
