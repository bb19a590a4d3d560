// The real `atspeed` binary: help, version, --cfg and its errors, exit codes.
#include <gtest/gtest.h>

#include <fstream>
#include <utility>
#include <vector>

#include "tests/test_util.h"

namespace atspeed {
namespace {

using test::run_atspeed;

TEST(CliTest, HelpAndVersion) {
  auto help = run_atspeed("--help");
  EXPECT_EQ(help.exit_code, 0) << help.output;
  EXPECT_NE(help.output.find("Exit codes"), std::string::npos);
  auto version = run_atspeed("--version");
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.output.find("atspeed 0."), std::string::npos) << version.output;
  EXPECT_NE(version.output.find("libtorch 2."), std::string::npos) << version.output;
}

TEST(CliTest, CfgPrintsResolvedConfigWithOverrides) {
  auto r = run_atspeed("--cfg model=draft_small run.seed=11 +run.tag=abc");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("name: draft_small"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("seed: 11"), std::string::npos);
  EXPECT_NE(r.output.find("tag: abc"), std::string::npos);
  EXPECT_EQ(r.output.find("defaults"), std::string::npos);
}

TEST(CliTest, ConfigErrorsExitWithCode3AndNameTheKey) {
  auto r = run_atspeed("--cfg run.seeed=1");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("run.seeed: unknown key"), std::string::npos) << r.output;
  r = run_atspeed("--cfg model=nonexistent");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.output.find("available:"), std::string::npos) << r.output;
  r = run_atspeed("--config-dir /nonexistent --cfg");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.output.find("/nonexistent"), std::string::npos) << r.output;
}

TEST(CliTest, UsageErrorsExitWithCode2) {
  auto r = run_atspeed("--no-such-flag");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = run_atspeed("no-such-subcommand-or-override");
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

TEST(CliTest, BenchMatmulWritesJsonAndConfig) {
  test::TempDir dir;
  auto r = run_atspeed("bench matmul --sizes 64 128 --repeats 2 --json " + dir.str("m.json") + " run.threads=1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("GFLOP/s"), std::string::npos);
  std::ifstream f(dir.str("m.json"));
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"gflops\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"threads\": 1"), std::string::npos) << text;
  EXPECT_TRUE(std::filesystem::exists(dir.str("config.yaml")));
  // Repeated or impossible sizes are usage errors; --dtype and --device are checked.
  for (const auto& [args, message] : std::vector<std::pair<std::string, std::string>>{
           {"--sizes 64 64", "--sizes lists 64 twice"},
           {"--sizes 0", "--sizes: 0"},
           {"--sizes 64 --dtype int8", "--dtype"}}) {
    r = run_atspeed("bench matmul " + args + " --json " + dir.str("bad.json") + " run.threads=1");
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_NE(r.output.find(message), std::string::npos) << args << "\n" << r.output;
  }
}

TEST(CliTest, BenchForwardMeasuresEveryPresetAndPoint) {
  test::TempDir dir;
  auto r = run_atspeed("bench forward --models quickstart_target quickstart_draft --ns 1 8 --reps 2 --context 12 "
                       "--device cpu --json " + dir.str("f.json") + " run.threads=1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("forward cost at n = 1 against quickstart_target"), std::string::npos) << r.output;
  std::ifstream f(dir.str("f.json"));
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  for (const char* key : {"\"quickstart_target\"", "\"quickstart_draft\"", "\"median_s\"", "\"q3_s\"", "\"parameters\""}) {
    EXPECT_NE(text.find(key), std::string::npos) << key << "\n" << text;
  }
  r = run_atspeed("bench forward --models quickstart_draft --ns 4 4 --json " + dir.str("g.json"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--ns lists 4 twice"), std::string::npos) << r.output;
  r = run_atspeed("bench forward --models no_such_preset --ns 1 --json " + dir.str("g.json"));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("no_such_preset"), std::string::npos) << r.output;
}

TEST(CliTest, ListedTwiceIsAnErrorWhereResultsAreKeyedByTheValue) {
  // eval.ks and decode.auto.* are config lists: a value listed twice names the key.
  for (const auto& [override, key] : std::vector<std::pair<std::string, std::string>>{
           {"eval.ks=[5,5]", "eval.ks"}, {"decode.auto.gammas=[1,1]", "decode.auto.gammas"}}) {
    auto r = run_atspeed("eval ckpt=none.h5 " + override);
    EXPECT_EQ(r.exit_code, 3) << override << "\n" << r.output;
    EXPECT_NE(r.output.find(key), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace atspeed
