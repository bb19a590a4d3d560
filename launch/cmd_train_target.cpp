// `atspeed train-target [overrides]`: next-item CE training of the target (or, with
// model=draft_small, of a CE-only draft; the checkpoint kind follows train.kind, "auto" = draft when
// model.name starts with "draft"). Multi-process: `mpirun -np N atspeed train-target ...`
// (data parallel; dist.backend=nccl with train.device=cuda on GPUs).
//
// SIGTERM/SIGINT: the current step finishes, last.h5 is written, and the process exits with
// 128 + signal (143/130) so a scheduler sees an interrupted job; train.resume=true continues it.
#include <spdlog/spdlog.h>

#include <memory>

#include "core/config.h"
#include "core/config_types.h"
#include "core/dist/communicator.h"
#include "core/errors.h"
#include "core/logging.h"
#include "data/data_config.h"
#include "data/dataset.h"
#include "launch/commands.h"
#include "launch/training_run.h"
#include "train/train_config.h"
#include "train/trainer.h"

namespace atspeed::launch {
namespace {

struct TrainTargetOptions {
  std::vector<std::string> overrides;
};

void run_train_target(const TrainTargetOptions& o) {
  const Config config = load_config(o.overrides);
  const auto dist = read_section<DistConfig>(config, "dist");
  const auto log = read_section<LogConfig>(config, "log");
  const auto model = read_section<ModelConfig>(config, "model");
  const auto train_config = read_section<TrainConfig>(config, "train");
  const auto data = read_section<DataConfig>(config, "data");
  auto comm = make_communicator(dist.backend);
  set_log_rank(comm->rank(), comm->size(), log.all_ranks);
  // Install before the (possibly long) dataset load so an early Ctrl-C is not a hard kill.
  train::install_stop_signal_handlers();
  const Dataset ds = load_dataset_rank0_first(data, *comm);
  train::Trainer trainer(config, ds, *comm, train_config.resolved_kind(model.name));
  const train::TrainResult r = trainer.run();
  comm->barrier();
  finish_training(r, train_config.metric);
}

const RegisterCommand register_train_target([](CLI::App& app) {
  auto o = std::make_shared<TrainTargetOptions>();
  auto* cmd = app.add_subcommand("train-target",
                                 "train the target (next-item CE on response tokens) with checkpoints and exact resume");
  cmd->add_option("overrides", o->overrides, "config overrides: model=draft_small, train.lr=1e-3, train.resume=true, ...");
  cmd->callback([o]() { run_train_target(*o); });
});

}  // namespace
}  // namespace atspeed::launch
