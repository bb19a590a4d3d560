// `atspeed train-target` through the real binary on a tiny synthetic dataset and model: an
// interrupted (SIGTERM) or killed (SIGKILL) run resumed with train.resume=true logs the same
// per-step losses as an uninterrupted run; resuming from a missing or corrupt checkpoint is a clear
// checkpoint error (exit 5).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "core/io/checkpoint.h"
#include "core/model/model_io.h"
#include "tests/test_util.h"

extern char** environ;

namespace atspeed {
namespace {

namespace fs = std::filesystem;

// Steps of ~5-10 ms on one thread, 3 epochs of ~18 one-pass steps: long enough to be killed mid-run.
std::string train_args(const test::TempDir& tmp, const std::string& run) {
  return "train-target data=synthetic data.source=files data.dir=" + tmp.str("data") +
         " data.history_len=10 model.hidden_size=32 model.intermediate_size=64 model.num_hidden_layers=2"
         " model.num_attention_heads=2 model.num_key_value_heads=1 run.threads=1 run.out_dir=" +
         tmp.str(run) +
         " train.global_batch=16 train.micro_batch=8 train.epochs=3 train.warmup_steps=5 train.log_every=10"
         " train.checkpoint_every=7 train.max_valid_samples=64";
}

void make_data(const test::TempDir& tmp) {
  const auto r = test::run_atspeed("data synth --out " + tmp.str("data") + " --users 300 --items 200 --seed 5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

// step -> loss of the training lines of metrics.jsonl.
std::map<int64_t, double> losses(const std::string& path) {
  std::map<int64_t, double> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) {
      EXPECT_EQ(out.count(j["step"].get<int64_t>()), 0u) << "step logged twice: " << line;
      out[j["step"].get<int64_t>()] = j["loss"].get<double>();
    }
  }
  return out;
}

int64_t line_count(const std::string& path) {
  std::ifstream in(path);
  int64_t n = 0;
  std::string line;
  while (std::getline(in, line)) n += line.find("\"loss\"") != std::string::npos;
  return n;
}

// Starts the binary in the background; returns its pid.
pid_t spawn_atspeed(const std::string& args, const std::string& log) {
  const std::string cmd = std::string("exec ") + ATSPEED_BIN + " " + args + " >" + log + " 2>&1";
  const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
  pid_t pid = -1;
  EXPECT_EQ(posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ), 0);
  return pid;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Starts a run, sends `sig` once metrics.jsonl has `after` steps, and returns the wait status.
int interrupt_run(const std::string& args, const std::string& metrics, const std::string& log, int64_t after, int sig) {
  const pid_t pid = spawn_atspeed(args, log);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      ADD_FAILURE() << "the run ended before it could be interrupted:\n" << read_file(log);
      return status;
    }
    if (line_count(metrics) >= after) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  kill(pid, sig);
  waitpid(pid, &status, 0);
  return status;
}

class TrainCli : public ::testing::Test {
 protected:
  void SetUp() override {
    make_data(tmp);
    const auto r = test::run_atspeed(train_args(tmp, "full"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    reference = losses(tmp.str("full/metrics.jsonl"));
    ASSERT_GE(reference.size(), 40u);
    EXPECT_TRUE(fs::exists(tmp.str("full/best.h5")));
    EXPECT_TRUE(fs::exists(tmp.str("full/config.yaml")));
  }
  test::TempDir tmp;
  std::map<int64_t, double> reference;
};

TEST_F(TrainCli, SigtermMidEpochThenResumeEqualsUninterrupted) {
  const int status = interrupt_run(train_args(tmp, "part"), tmp.str("part/metrics.jsonl"), tmp.str("part.log"), 10,
                                   SIGTERM);
  ASSERT_TRUE(WIFEXITED(status)) << read_file(tmp.str("part.log"));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM) << read_file(tmp.str("part.log"));
  EXPECT_NE(read_file(tmp.str("part.log")).find("train.resume=true"), std::string::npos);
  CheckpointReader ckpt(tmp.str("part/last.h5"), std::string("target"));
  const int64_t stopped_at = ckpt.int_attribute("trainer_state", "global_step").value();
  EXPECT_GE(stopped_at, 10);
  EXPECT_LT(stopped_at, static_cast<int64_t>(reference.size()));
  // The SIGTERM checkpoint is written at the step the signal arrived, not the last periodic one.
  EXPECT_EQ(stopped_at, static_cast<int64_t>(losses(tmp.str("part/metrics.jsonl")).size()));
  const auto r = test::run_atspeed(train_args(tmp, "part") + " train.resume=true");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("intra-op threads"), std::string::npos) << r.output;  // same count: no warning
  const auto resumed = losses(tmp.str("part/metrics.jsonl"));
  ASSERT_EQ(resumed.size(), reference.size());
  for (const auto& [step, loss] : reference) EXPECT_EQ(resumed.at(step), loss) << "step " << step;
}

TEST_F(TrainCli, SigkillThenResumeFromPeriodicCheckpointEqualsUninterrupted) {
  const int status = interrupt_run(train_args(tmp, "kill"), tmp.str("kill/metrics.jsonl"), tmp.str("kill.log"), 17,
                                   SIGKILL);
  ASSERT_TRUE(WIFSIGNALED(status));
  CheckpointReader ckpt(tmp.str("kill/last.h5"), std::string("target"));
  const int64_t saved = ckpt.int_attribute("trainer_state", "global_step").value();
  EXPECT_EQ(saved % 7, 0);  // a periodic checkpoint (or the epoch end)
  const int64_t logged = static_cast<int64_t>(losses(tmp.str("kill/metrics.jsonl")).size());
  EXPECT_GE(logged, saved);
  const auto r = test::run_atspeed(train_args(tmp, "kill") + " train.resume=true");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto resumed = losses(tmp.str("kill/metrics.jsonl"));
  ASSERT_EQ(resumed.size(), reference.size());
  for (const auto& [step, loss] : reference) EXPECT_EQ(resumed.at(step), loss) << "step " << step;
}

TEST_F(TrainCli, ResumeFromMissingOrCorruptCheckpointIsAClearError) {
  auto r = test::run_atspeed(train_args(tmp, "empty") + " train.resume=true");
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_NE(r.output.find("no checkpoint"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("last.h5"), std::string::npos) << r.output;

  fs::create_directories(tmp.str("garbage"));
  std::ofstream(tmp.str("garbage/last.h5")) << "this is not an HDF5 file";
  r = test::run_atspeed(train_args(tmp, "garbage") + " train.resume=true");
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_NE(r.output.find("cannot resume"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("garbage/last.h5"), std::string::npos) << r.output;

  // A real checkpoint cut in half.
  fs::create_directories(tmp.str("cut"));
  fs::copy_file(tmp.str("full/last.h5"), tmp.str("cut/last.h5"));
  fs::resize_file(tmp.str("cut/last.h5"), fs::file_size(tmp.str("cut/last.h5")) / 2);
  r = test::run_atspeed(train_args(tmp, "cut") + " train.resume=true");
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_NE(r.output.find("cut/last.h5"), std::string::npos) << r.output;

  // A checkpoint of another kind is refused too.
  r = test::run_atspeed(train_args(tmp, "full") + " train.resume=true train.kind=draft");
  EXPECT_EQ(r.exit_code, 5) << r.output;
}

TEST_F(TrainCli, ResumeWithAnotherThreadCountWarns) {
  CheckpointReader ckpt(tmp.str("full/last.h5"), std::string("target"));
  EXPECT_EQ(ckpt.int_attribute("trainer_state", "threads").value(), 1);
  fs::create_directories(tmp.str("moved"));
  fs::copy_file(tmp.str("full/last.h5"), tmp.str("moved/last.h5"));
  const auto r = test::run_atspeed(train_args(tmp, "moved") + " train.resume=true run.threads=2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("written with 1 intra-op threads, this run has 2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("run.threads=1"), std::string::npos) << r.output;
}

TEST(TrainCliDraft, DraftModelGetsKindDraftAndLoads) {
  test::TempDir tmp;
  make_data(tmp);
  const auto r = test::run_atspeed(train_args(tmp, "draft") + " model=draft_small train.max_steps=3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  CheckpointReader best(tmp.str("draft/best.h5"), std::string("draft"));
  EXPECT_EQ(model::model_config_from_checkpoint(best).name, "draft_small");
  EXPECT_NO_THROW(model::load_model(best));
  EXPECT_EQ(CheckpointReader(tmp.str("draft/last.h5")).attributes().kind, "draft");
}

}  // namespace
}  // namespace atspeed
