// `atspeed teacher` and `atspeed train-draft` through the real binary on a tiny synthetic dataset
// and a random target: an interrupted teacher run finished by a rerun writes the same files as an
// uninterrupted one; a SIGKILLed train-draft resumed with train.resume=true logs the same per-step
// losses as an uninterrupted run.
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

#include "core/config.h"
#include "core/io/checkpoint.h"
#include "core/model/model_io.h"
#include "data/data_config.h"
#include "data/dataset.h"
#include "data/teacher.h"
#include "tests/test_models.h"
#include "tests/test_util.h"

extern char** environ;

namespace atspeed {
namespace {

namespace fs = std::filesystem;

std::string data_args(const test::TempDir& tmp) {
  return "data=synthetic data.source=files data.dir=" + tmp.str("data") + " data.history_len=20 run.threads=1";
}

// Synthetic data + a random target checkpoint for its index.
void make_setup(const test::TempDir& tmp) {
  const auto r = test::run_atspeed("data synth --out " + tmp.str("data") + " --users 150 --items 120 --seed 5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Config config = Config::compose(find_config_dir(""), "config",
                                        {"data=synthetic", "data.source=files", "data.dir=" + tmp.str("data")});
  const Dataset ds = load_dataset(read_section<DataConfig>(config, "data"));
  auto target = test::random_model(ds.catalog->vocab().size(), 11);
  test::write_model_checkpoint(tmp.str("target.h5"), target, ds.catalog->fingerprint(), "target", "stream");
}

std::string teacher_args(const test::TempDir& tmp, const std::string& out) {
  return "teacher " + data_args(tmp) + " teacher.target=" + tmp.str("target.h5") + " teacher.out=" + tmp.str(out) +
         " teacher.beams=4 teacher.chunk_size=16 teacher.max_valid=24 teacher.batch_size=8 run.out_dir=" +
         tmp.str("teacher_run");
}

std::vector<std::string> part_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(fs::relative(e.path(), dir).string());
  std::sort(out.begin(), out.end());
  return out;
}

std::map<int64_t, double> losses(const std::string& path) {
  std::map<int64_t, double> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) out[j["step"].get<int64_t>()] = j["loss"].get<double>();
  }
  return out;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(DraftCli, TeacherResumeEqualsUninterruptedAndTrainDraftSigkillResume) {
  test::TempDir tmp;
  make_setup(tmp);
  // Uninterrupted teacher run.
  auto r = test::run_atspeed(teacher_args(tmp, "full"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("teacher data complete"), std::string::npos) << r.output;
  // Interrupted after 2 parts (plus a stale temp file, as a kill mid-write leaves), then finished.
  r = test::run_atspeed(teacher_args(tmp, "resumed") + " teacher.max_parts=2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("incomplete"), std::string::npos) << r.output;
  std::ofstream(tmp.str("resumed/train/part-000002.h5.tmp.12345")) << "half a file";
  EXPECT_THROW(TeacherReader(tmp.str("resumed"), "train"), Error);
  r = test::run_atspeed(teacher_args(tmp, "resumed"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("2 already complete"), std::string::npos) << r.output;
  fs::remove(tmp.str("resumed/train/part-000002.h5.tmp.12345"));
  const auto files = part_files(tmp.str("full"));
  ASSERT_EQ(files, part_files(tmp.str("resumed")));
  ASSERT_GE(files.size(), 4u);
  for (const auto& f : files) {
    const auto a = load_checkpoint(tmp.str("full/" + f)), b = load_checkpoint(tmp.str("resumed/" + f));
    ASSERT_EQ(a.size(), b.size()) << f;
    for (const auto& [name, t] : a) EXPECT_TRUE(at::equal(t, b.at(name))) << f << " " << name;
  }
  // Fingerprints: item index (root) and target weights.
  const TeacherReader reader(tmp.str("full"), "train");
  CheckpointReader target_ckpt(tmp.str("target.h5"));
  auto target = model::load_model(target_ckpt);
  EXPECT_NO_THROW(reader.check_fingerprints(target_ckpt.attributes().fingerprint, model::parameter_fingerprint(*target)));
  EXPECT_EQ(TeacherReader(tmp.str("full"), "valid").size(), 24);
  // Settings that differ from the existing parts are refused.
  r = test::run_atspeed(teacher_args(tmp, "full") + " teacher.dtype=float16");
  EXPECT_EQ(r.exit_code, 4) << r.output;
  // Repacking rewrites every part with the same contents (no target needed).
  r = test::run_atspeed("teacher " + data_args(tmp) + " teacher.repack=true teacher.out=" + tmp.str("resumed"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("teacher data repacked"), std::string::npos) << r.output;
  for (const auto& f : files) {
    const auto a = load_checkpoint(tmp.str("full/" + f)), b = load_checkpoint(tmp.str("resumed/" + f));
    for (const auto& [name, t] : a) EXPECT_TRUE(at::equal(t, b.at(name))) << "repacked " << f << " " << name;
  }

  // train-draft from the files: uninterrupted vs SIGKILL + resume.
  const std::string train = "train-draft " + data_args(tmp) + " align.objective=atspeed_s align.teacher=" +
                            tmp.str("full") + " align.target=" + tmp.str("target.h5") +
                            " model.hidden_size=16 model.intermediate_size=32 model.num_hidden_layers=2"
                            " model.num_attention_heads=2 model.num_key_value_heads=1 train.global_batch=16"
                            " train.micro_batch=8 train.epochs=3 train.warmup_steps=2 train.checkpoint_every=5"
                            " train.max_valid_samples=16 train.eval_batch=16 run.out_dir=";
  r = test::run_atspeed(train + tmp.str("u"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto reference = losses(tmp.str("u/metrics.jsonl"));
  ASSERT_GE(reference.size(), 15u);
  EXPECT_EQ(CheckpointReader(tmp.str("u/best.h5")).attributes().kind, "draft");

  // seqkd reads only the beams from the files (TeacherReadOptions::logits = false): the same losses
  // as with the online teacher, which computes the same beams in the training loop.
  const std::string seqkd = "train-draft " + data_args(tmp) + " align.objective=seqkd align.target=" + tmp.str("target.h5") +
                            " model.hidden_size=16 model.intermediate_size=32 model.num_hidden_layers=2"
                            " model.num_attention_heads=2 model.num_key_value_heads=1 train.global_batch=16"
                            " train.micro_batch=8 train.max_steps=4 train.warmup_steps=2 train.max_valid_samples=16"
                            " train.eval_batch=16 run.out_dir=";
  r = test::run_atspeed(seqkd + tmp.str("sq_files") + " align.teacher=" + tmp.str("full"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_atspeed(seqkd + tmp.str("sq_online") + " align.beams=4");  // the files' teacher.beams
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto files_losses = losses(tmp.str("sq_files/metrics.jsonl")), online_losses = losses(tmp.str("sq_online/metrics.jsonl"));
  ASSERT_EQ(files_losses.size(), 4u);
  ASSERT_EQ(online_losses.size(), files_losses.size());
  for (const auto& [step, loss] : files_losses) EXPECT_NEAR(online_losses.at(step), loss, 1e-5) << "seqkd step " << step;

  const std::string log = tmp.str("k.log");
  const std::string cmd = std::string("exec ") + ATSPEED_BIN + " " + train + tmp.str("k") + " >" + log + " 2>&1";
  const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
  pid_t pid = -1;
  ASSERT_EQ(posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ), 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int status = 0;
  bool ended = false;
  while (std::chrono::steady_clock::now() < deadline) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      ended = true;
      break;
    }
    if (losses(tmp.str("k/metrics.jsonl")).size() >= 8) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_FALSE(ended) << "the run ended before it could be killed:\n" << read_text(log);
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  const int64_t saved =
      CheckpointReader(tmp.str("k/last.h5"), std::string("draft")).int_attribute("trainer_state", "global_step").value();
  EXPECT_GE(saved, 5);
  EXPECT_LT(saved, static_cast<int64_t>(reference.size()));
  r = test::run_atspeed(train + tmp.str("k") + " train.resume=true");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto resumed = losses(tmp.str("k/metrics.jsonl"));
  ASSERT_EQ(resumed.size(), reference.size());
  for (const auto& [step, loss] : reference) EXPECT_EQ(resumed.at(step), loss) << "step " << step;
}

}  // namespace
}  // namespace atspeed
