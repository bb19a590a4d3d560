// Data-parallel training equals single-process training: N ranks with micro_batch 2 and
// grad_accum 2 (global batch 4N) give the same per-step losses, gradient norms and final parameters
// as one process with the whole global batch in one micro-batch, computed in this same job on
// rank 0 (float tolerance: only the summation order differs).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <mpi.h>
#include <torch/torch.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "core/config.h"
#include "core/dist/communicator.h"
#include "core/errors.h"
#include "core/model/llama.h"
#include "data/data_config.h"
#include "data/dataset.h"
#include "train/trainer.h"

namespace atspeed {
namespace {

namespace fs = std::filesystem;

// A directory all ranks share: rank 0 creates it and broadcasts its name.
std::string shared_temp_dir(Communicator& comm) {
  at::Tensor name = at::zeros({256}, at::kByte);
  if (comm.rank() == 0) {
    std::string templ = (fs::temp_directory_path() / "atspeed_mpi_train_XXXXXX").string();
    ATSPEED_CHECK(mkdtemp(templ.data()) != nullptr, "mkdtemp failed");
    std::memcpy(name.data_ptr(), templ.data(), std::min<size_t>(templ.size(), 255));
  }
  comm.broadcast(name, 0);
  return std::string(reinterpret_cast<const char*>(name.data_ptr()));
}

struct TrainRun {
  train::TrainResult result;
  std::vector<at::Tensor> params;
};

TrainRun train_run(const std::string& dir, const std::string& out, int64_t micro, int64_t global, Communicator& comm) {
  const std::vector<std::string> overrides = {
      "data=synthetic", "data.dir=" + dir + "/data", "data.synthetic.users=150", "data.synthetic.items=120",
      "data.history_len=6", "model.hidden_size=16", "model.intermediate_size=32", "model.num_hidden_layers=2",
      "model.num_attention_heads=2", "model.num_key_value_heads=1", "run.out_dir=" + dir + "/" + out,
      "train.micro_batch=" + std::to_string(micro), "train.global_batch=" + std::to_string(global),
      "train.warmup_steps=2", "train.max_steps=6", "train.max_valid_samples=20", "train.checkpoint_every=3"};
  const Config config = Config::compose(find_config_dir(""), "config", overrides);
  const auto data = read_section<DataConfig>(config, "data");
  Dataset ds;
  // Rank 0 generates the synthetic data once; then everyone reads it.
  if (comm.rank() == 0) ds = load_dataset(data);
  comm.barrier();
  if (comm.rank() != 0) ds = load_dataset(data);
  train::Trainer trainer(config, ds, comm, "target");
  TrainRun r;
  r.result = trainer.run();
  for (const auto& p : trainer.model().parameters()) r.params.push_back(p.detach().clone());
  return r;
}

TEST(TrainMpi, DataParallelEqualsSingleProcess) {
  at::set_num_threads(1);
  auto world = make_communicator("auto");
  const int n = world->size();
  const std::string dir = shared_temp_dir(*world);
  const int64_t global = 4 * n;
  const TrainRun dp = train_run(dir, "dp", 2, global, *world);  // grad_accum 2 on every rank
  EXPECT_EQ(dp.result.steps.size(), 6u);
  // Every rank holds the same parameters after the all-reduced steps.
  for (const auto& p : dp.params) {
    at::Tensor g = world->all_gather(p);
    for (int r = 1; r < n; ++r) EXPECT_TRUE(at::equal(g[r], g[0]));
  }
  world->barrier();
  if (world->rank() == 0) {
    auto local = make_local_communicator();
    const TrainRun single = train_run(dir, "single", global, global, *local);
    ASSERT_EQ(single.result.steps.size(), dp.result.steps.size());
    for (size_t i = 0; i < single.result.steps.size(); ++i) {
      EXPECT_NEAR(single.result.steps[i].loss, dp.result.steps[i].loss, 1e-5) << "step " << i + 1;
      EXPECT_NEAR(single.result.steps[i].grad_norm, dp.result.steps[i].grad_norm, 1e-4) << "step " << i + 1;
      EXPECT_EQ(single.result.steps[i].tokens, dp.result.steps[i].tokens) << "step " << i + 1;
    }
    ASSERT_EQ(single.params.size(), dp.params.size());
    for (size_t i = 0; i < single.params.size(); ++i)
      EXPECT_TRUE(at::allclose(single.params[i], dp.params[i], 1e-4, 1e-5))
          << "parameter " << i << " max diff " << (single.params[i] - dp.params[i]).abs().max().item<double>();
    EXPECT_NEAR(single.result.best_metric, dp.result.best_metric, 1e-5);
    EXPECT_TRUE(fs::exists(dir + "/dp/last.h5"));
    fs::remove_all(dir);
  }
  world->barrier();
}

}  // namespace
}  // namespace atspeed
