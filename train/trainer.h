// The training loop shared by train-target and train-draft (via set_objective): AdamW with no decay on norm
// weights, HF warm-up + cosine schedule, global-norm clipping, gradient accumulation, data
// parallelism over a Communicator, early stopping on a validation metric, and exact-resume HDF5
// checkpoints.
//
// Data: every optimizer step consumes one global batch = positions [s*G, (s+1)*G) of the epoch's
// shuffled order (G = train.global_batch). Rank r of N takes every N-th position (shard_indices), in
// micro-batches of train.micro_batch, grad_accum = G / (micro_batch * N) of them per step. The last
// partial global batch of an epoch is skipped (a new shuffle uses it next epoch), so every rank runs
// the same number of steps and the set of samples in step s does not depend on N. Within a step, a
// rank groups its samples into micro-batches by history length (less padding; the sum is the same).
//
// Loss normalisation: the loss of a step is (sum of CE over every response token of the global
// batch) / (global number of response tokens). Each rank counts its tokens first, one all_reduce
// gives the global count, each micro-batch backpropagates its token-loss sum / global count, and
// the gradients are summed over ranks. The result is the global token mean for any N, micro_batch
// and grad_accum (equal up to float summation order).
//
// Checkpoints (rank 0 writes, atomically; <dir> = train.checkpoint_dir or run.out_dir):
//   <dir>/last.h5   each epoch end, every train.checkpoint_every steps, and at SIGTERM/SIGINT;
//   <dir>/best.h5   parameters (no optimizer) whenever the validation metric improves.
// Content: the parameters (HF names), optimizer/{exp_avg,exp_avg_sq,step}.<param>, group
// trainer_state's attributes (epoch, step_in_epoch, global_step, total_steps, steps_per_epoch,
// best_metric, bad_evals, evals, num_train_samples, global_batch, seed, threads), and root attributes kind,
// config_yaml (resolved, model.vocab_size filled in) and fingerprint (ItemCatalog::fingerprint()).
// There is no RNG state to save: the data order is a pure function of (run.seed, epoch) and the
// model has no dropout. train.resume=true restores all of it and continues at the saved position,
// so the per-step losses equal those of an uninterrupted run (bitwise on CPU with the same threads;
// resuming with another intra-op thread count than the checkpoint's logs a warning).
//
// Objective hook: by default the loss is the response-token CE above. set_objective() replaces it
// (train-draft's alignment losses): the hook returns a micro-batch's loss as a SUM over its units
// (samples for train-draft) and the unit count; the trainer counts the step's global units first
// (units() + one all_reduce) and backpropagates sum / global units, so the same normalisation
// argument holds (the step's loss is the global mean for any N, micro_batch, grad_accum). The
// validation loss uses the same hook on the validation samples. Data order, sharding, checkpoints
// and resume are unchanged.
//
// Metrics: rank 0 appends one JSON line per step to <run.out_dir>/metrics.jsonl
// ({"step","epoch","loss","lr","grad_norm","tokens_per_s","tokens","items"}) and one per evaluation
// ({"step","epoch",<metric>,"best","bad_evals"}). On resume the file is cut back to the
// checkpoint's step first, so it reads like one uninterrupted run.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "core/config.h"
#include "core/dist/communicator.h"
#include "data/dataset.h"
#include "data/samples.h"

namespace atspeed::model {
class LlamaModelImpl;
}

namespace atspeed::train {

struct StepRecord {
  int64_t step = 0;  // 1-based global optimizer step
  int64_t epoch = 0;
  double loss = 0, lr = 0, grad_norm = 0, tokens_per_s = 0;
  int64_t tokens = 0;  // real (non-pad) tokens of the global batch
  int64_t items = 0;   // target items the global batch predicts (one per row, several in one_pass rows)
  double seconds = 0;  // wall time of the step
};

struct TrainResult {
  int64_t global_step = 0;  // steps done in total (resumed ones included)
  int64_t epoch = 0;        // epoch index the run stopped in (== epochs when complete)
  bool completed = false;   // all epochs (or max_steps) done
  bool early_stopped = false;
  int stop_signal = 0;      // SIGTERM/SIGINT that interrupted the run (0: none)
  double best_metric = 0;
  std::string last_checkpoint, best_checkpoint;
  std::vector<StepRecord> steps;  // the steps this process ran
  double tokens_per_s = 0;        // global tokens / wall time over this process's steps
};

// SIGTERM/SIGINT handlers that only record the signal; the trainer checks it at step boundaries
// (agreed across ranks), writes last.h5 and returns with stop_signal set.
void install_stop_signal_handlers();
int pending_stop_signal();
void request_stop(int signal);  // what the handler does (tests)
void clear_stop_request();

// One micro-batch as an objective sees it: the samples, their indices in the split (teacher files are
// indexed by them), the split and the device the model is on.
struct MicroBatch {
  const std::string& split;                  // "train" or "valid"
  const std::vector<int64_t>& indices;       // into Trainer::samples(split)
  const std::vector<const Sample*>& samples; // the samples at those indices, same order
  at::Device device;
};

// A training objective (see the header comment): the default response-token CE and train-draft's
// alignment losses (train/draft_objective.h) are all one of these.
struct TrainObjective {
  std::string name = "ce";
  // {differentiable scalar: sum of the units' losses, number of units}.
  std::function<std::pair<at::Tensor, int64_t>(model::LlamaModelImpl& model, const MicroBatch& batch)> loss;
  // The unit count of a micro-batch without running the model (the global normaliser).
  std::function<int64_t(const MicroBatch& batch)> units;
};

// Next-item CE summed over every response token (units: response tokens). `format` must outlive it.
TrainObjective token_ce_objective(const PromptFormat& format);

class Trainer {
 public:
  // `config` holds run, model, data and train sections (validated here); `kind` is the checkpoint
  // kind ("target", "draft"). Builds the model (seeded by run.seed), or restores last.h5 when
  // train.resume is set. `samples` picks the training samples (default: data.train_samples;
  // train-draft passes data.draft_samples).
  Trainer(const Config& config, const Dataset& dataset, Communicator& comm, std::string kind,
          std::optional<TrainSamples> samples = std::nullopt);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Replaces the loss (default: token_ce_objective), and thereby the validation loss. Call before run().
  void set_objective(TrainObjective objective);
  // The training ("train") or validation ("valid", already cut to train.max_valid_samples) samples.
  const std::vector<Sample>& samples(const std::string& split) const;
  // True when this run restored last.h5 (train.resume).
  bool resumed() const;
  c10::Device device() const;
  // Mean response-token CE over the first train.max_valid_samples validation samples (collective).
  double validation_loss();
  TrainResult run();

  model::LlamaModelImpl& model();
  int64_t steps_per_epoch() const;
  int64_t total_steps() const;
  int64_t grad_accum() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace atspeed::train
