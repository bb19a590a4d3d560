#include "launch/training_run.h"

#include <spdlog/spdlog.h>

#include "launch/commands.h"

namespace atspeed::launch {

Dataset load_dataset_rank0_first(const DataConfig& data, Communicator& comm) {
  Dataset ds;
  if (comm.rank() == 0) ds = load_dataset(data);
  comm.barrier();
  if (comm.rank() != 0) ds = load_dataset(data);
  return ds;
}

void finish_training(const train::TrainResult& r, const std::string& metric) {
  if (r.stop_signal != 0) {
    spdlog::warn("stopped by signal {} at global step {}; {} holds the state: rerun with train.resume=true to continue",
                 r.stop_signal, r.global_step, r.last_checkpoint);
    throw ExitRequest{128 + r.stop_signal};
  }
  spdlog::info("done: {} steps{}, best {} {:.5f} ({}), last {}; {:.0f} tokens/s", r.global_step,
               r.early_stopped ? " (early stopped)" : "", metric, r.best_metric,
               r.best_checkpoint.empty() ? "no evaluation" : r.best_checkpoint, r.last_checkpoint, r.tokens_per_s);
}

}  // namespace atspeed::launch
