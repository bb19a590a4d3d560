// Data-parallel train-draft equals single-process train-draft: N ranks with micro_batch 2 and
// grad_accum 2 (global batch 4N) give the same per-step losses, gradient norms and parameters as one
// process with the whole global batch in one micro-batch (float tolerance), for every objective (CE
// only and the five alignment losses) with the online teacher (a random target, identical on every rank).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <filesystem>

#include "core/config.h"
#include "core/dist/communicator.h"
#include "core/errors.h"
#include "core/io/checkpoint.h"
#include "core/model/hf_checkpoint.h"
#include "core/model/model_io.h"
#include "data/data_config.h"
#include "data/dataset.h"
#include "tests/test_models.h"
#include "train/draft_config.h"
#include "train/draft_objective.h"
#include "train/trainer.h"

namespace atspeed {
namespace {

namespace fs = std::filesystem;

std::string shared_dir(Communicator& comm) {
  at::Tensor name = at::zeros({256}, at::kByte);
  if (comm.rank() == 0) {
    std::string templ = (fs::temp_directory_path() / "atspeed_mpi_draft_XXXXXX").string();
    ATSPEED_CHECK(mkdtemp(templ.data()) != nullptr, "mkdtemp failed");
    std::memcpy(name.data_ptr(), templ.data(), std::min<size_t>(templ.size(), 255));
  }
  comm.broadcast(name, 0);
  return std::string(reinterpret_cast<const char*>(name.data_ptr()));
}

struct DraftRun {
  train::TrainResult result;
  std::vector<at::Tensor> initial;  // parameters before the first step
  std::vector<at::Tensor> params;   // after the last
};

// lcrec: the LC-Rec fixture (tests/data/lcrec: text prompts through its SentencePiece tokenizer,
// V = 1,461) with its converted target as the online teacher, instead of synthetic data and a
// random target.
DraftRun draft_run(const std::string& dir, const std::string& out, const std::string& objective, int64_t micro,
                   int64_t global, Communicator& comm, bool lcrec = false) {
  const std::string lcrec_dir = std::string(ATSPEED_SOURCE_DIR) + "/tests/data/lcrec";
  std::vector<std::string> data_overrides = {"data=synthetic", "data.dir=" + dir + "/data", "data.synthetic.users=150",
                                             "data.synthetic.items=120", "data.history_len=5"};
  if (lcrec)
    data_overrides = {"data.dir=" + lcrec_dir + "/data", "data.prompt_format=lcrec",
                      "data.tokenizer=" + lcrec_dir + "/tokenizer", "data.history_len=20"};
  std::vector<std::string> overrides = {
      "train=draft", "model.hidden_size=16", "model.intermediate_size=32",
      "model.num_hidden_layers=2", "model.num_attention_heads=2", "model.num_key_value_heads=1",
      "run.out_dir=" + dir + "/" + out, "train.micro_batch=" + std::to_string(micro),
      "train.global_batch=" + std::to_string(global), "train.warmup_steps=2", "train.max_steps=4",
      "train.max_valid_samples=12", "train.eval_batch=6", "train.checkpoint_every=2", "align.objective=" + objective,
      "align.target=random", "align.beams=4"};
  overrides.insert(overrides.begin(), data_overrides.begin(), data_overrides.end());
  const Config config = Config::compose(find_config_dir(""), "config", overrides);
  const auto data = read_section<DataConfig>(config, "data");
  Dataset ds;
  if (comm.rank() == 0) ds = load_dataset(data);
  comm.barrier();
  if (comm.rank() != 0) ds = load_dataset(data);
  const auto align = read_section<AlignConfig>(config, "align");
  train::Trainer trainer(config, ds, comm, "draft", TrainSamples::Last);
  std::unique_ptr<train::TeacherComputer> online;
  if (objective != "ce")
    online = std::make_unique<train::TeacherComputer>(
        lcrec ? model::load_hf_model(lcrec_dir + "/target") : test::random_model(ds.catalog->vocab().size(), 9),
        ds.catalog, align.beams, 8, at::kCPU);
  train::DraftObjective obj(align, ds.catalog, data.layout(), trainer, std::move(online));
  trainer.set_objective(obj.objective());
  DraftRun r;
  for (const auto& p : trainer.model().parameters()) r.initial.push_back(p.detach().clone());
  r.result = trainer.run();
  for (const auto& p : trainer.model().parameters()) r.params.push_back(p.detach().clone());
  return r;
}

TEST(DraftMpi, DataParallelEqualsSingleProcess) {
  at::set_num_threads(1);
  auto world = make_communicator("auto");
  const int n = world->size();
  const std::string dir = shared_dir(*world);
  for (const std::string objective : {"ce", "atspeed_s", "atspeed_r", "wordkd", "tvdkd", "seqkd"}) {
    const int64_t global = 4 * n;
    const DraftRun dp = draft_run(dir, "dp_" + objective, objective, 2, global, *world);
    ASSERT_EQ(dp.result.steps.size(), 4u);
    world->barrier();
    if (world->rank() == 0) {
      auto local = make_local_communicator();
      const DraftRun single = draft_run(dir, "single_" + objective, objective, global, global, *local);
      ASSERT_EQ(single.result.steps.size(), dp.result.steps.size());
      for (size_t i = 0; i < single.result.steps.size(); ++i) {
        EXPECT_TRUE(std::isfinite(dp.result.steps[i].loss));
        EXPECT_NEAR(single.result.steps[i].loss, dp.result.steps[i].loss, 1e-5) << objective << " step " << i + 1;
        EXPECT_NEAR(single.result.steps[i].grad_norm, dp.result.steps[i].grad_norm, 1e-4)
            << objective << " step " << i + 1;
      }
      for (size_t i = 0; i < single.params.size(); ++i)
        EXPECT_TRUE(at::allclose(single.params[i], dp.params[i], 1e-4, 1e-5)) << objective << " parameter " << i;
      EXPECT_NEAR(single.result.best_metric, dp.result.best_metric, 1e-5) << objective;
    }
    world->barrier();
  }
  if (world->rank() == 0) fs::remove_all(dir);
  world->barrier();
}

// The same on a converted LC-Rec target and its text prompts (V = 1,461), for CE and one
// alignment objective.
TEST(DraftMpi, DataParallelEqualsSingleProcessOnLcrecTextPrompts) {
  at::set_num_threads(1);
  auto world = make_communicator("auto");
  const int n = world->size();
  const std::string dir = shared_dir(*world);
  for (const std::string objective : {"ce", "atspeed_r"}) {
    const int64_t global = 4 * n;
    const DraftRun dp = draft_run(dir, "dp_" + objective, objective, 2, global, *world, true);
    ASSERT_EQ(dp.result.steps.size(), 4u);
    world->barrier();
    if (world->rank() == 0) {
      auto local = make_local_communicator();
      const DraftRun single = draft_run(dir, "single_" + objective, objective, global, global, *local, true);
      for (size_t i = 0; i < single.result.steps.size(); ++i) {
        EXPECT_TRUE(std::isfinite(dp.result.steps[i].loss));
        EXPECT_NEAR(single.result.steps[i].loss, dp.result.steps[i].loss, 1e-5) << objective << " step " << i + 1;
      }
      // The updates, not the weights, within 1% of the update's norm: the text prompts touch hundreds
      // of embedding rows a few times each, and Adam scales their tiny gradients up to full lr-sized
      // steps, so float summation order across ranks moves single elements by up to a step (CI
      // measured 6.3e-5 on weights of magnitude 0.08 at np 2, this machine 1.25e-5 at np 3), while
      // a data-parallel bug (a missing or doubled all-reduce, a skipped micro-batch) changes the
      // update by tens of percent. The per-step losses above stay at 1e-5.
      ASSERT_EQ(single.initial.size(), dp.initial.size());
      for (size_t i = 0; i < single.params.size(); ++i) {
        ASSERT_TRUE(at::equal(single.initial[i], dp.initial[i])) << objective << " parameter " << i << " init";
        const at::Tensor single_step = single.params[i] - single.initial[i];
        const at::Tensor dp_step = dp.params[i] - dp.initial[i];
        const double step_norm = single_step.norm().item<double>();
        const double diff_norm = (single_step - dp_step).norm().item<double>();
        EXPECT_GT(step_norm, 0.0) << objective << " parameter " << i << " did not move";
        EXPECT_LE(diff_norm, 1e-2 * step_norm)
            << objective << " parameter " << i << ": |update difference| " << diff_norm << " of |update| " << step_norm
            << ", max abs weight diff " << (single.params[i] - dp.params[i]).abs().max().item<double>();
      }
      // The draft's checkpoint carries the tokenizer of its text vocabulary.
      EXPECT_TRUE(model::read_tokenizer(CheckpointReader(dir + "/single_" + objective + "/last.h5")).has_value());
    }
    world->barrier();
  }
  if (world->rank() == 0) fs::remove_all(dir);
  world->barrier();
}

}  // namespace
}  // namespace atspeed
