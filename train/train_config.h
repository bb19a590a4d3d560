// The `train` config section (configs/train/<name>.yaml): optimiser, schedule, batch, epochs, early
// stopping, evaluation, logging and checkpoints. Used by train-target and train-draft.
#pragma once

#include <cstdint>
#include <string>

#include "core/config.h"

namespace atspeed {

struct TrainConfig {
  std::string name = "target";
  // Checkpoint kind (root attribute): auto = "draft" when model.name starts with "draft", else "target".
  std::string kind = "auto";

  // AdamW (decoupled weight decay; none on RMSNorm weights) with HF's linear warm-up + cosine to 0.
  double lr = 1e-3;            // from-scratch small model; SPEC §4.5's 1e-4 is for LoRA on a 7B target
  int64_t warmup_steps = 100;  // SPEC §4.5 (reference code: 100; §9.8 suggests 200 for the draft)
  double weight_decay = 0.01;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double grad_clip = 1.0;  // max global L2 norm of the gradient; 0 = no clipping

  // global_batch = micro_batch x grad_accum x data-parallel ranks; grad_accum is derived, so the
  // same config runs on any rank count that divides global_batch / micro_batch.
  int64_t global_batch = 256;
  int64_t micro_batch = 32;
  int64_t epochs = 20;
  int64_t max_steps = 0;  // > 0: stop after this many optimizer steps (tests, benchmarks); also ends the schedule

  // Early stopping on a validation metric, evaluated every eval_every steps (0 = each epoch end).
  std::string metric = "valid_loss";  // valid_loss (lower is better), the only one
  int64_t patience = 5;               // evaluations without improvement before stopping; 0 = never stop early
  int64_t eval_every = 0;
  int64_t max_valid_samples = 2000;   // first N valid samples (0 = all)
  int64_t eval_batch = 64;

  int64_t log_every = 20;          // progress line / log every N steps (metrics.jsonl gets every step)
  int64_t checkpoint_every = 200;  // periodic mid-epoch last.h5 every N steps (0 = only at epoch ends)
  std::string checkpoint_dir;      // "" = run.out_dir
  bool resume = false;             // continue exactly from <checkpoint_dir>/last.h5
  int64_t bucket_mb = 16;          // gradient all-reduce bucket size (MiB of float32)
  std::string device = "cpu";      // cpu, or cuda (GPU local_rank % devices; dist.backend=nccl across GPUs)

  void read(ConfigSection& s);
  void validate() const;
  // The kind after resolving "auto" from the model name.
  std::string resolved_kind(const std::string& model_name) const;
};

}  // namespace atspeed
