// Optimiser pieces of the trainer, separate so they can be tested alone: the learning-rate
// schedule, AdamW parameter groups, global-norm clipping, data-parallel gradient all-reduce, and
// optimizer state in checkpoints.
#pragma once

#include <torch/nn/module.h>
#include <torch/optim/adamw.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/dist/communicator.h"
#include "core/io/checkpoint.h"

namespace atspeed::train {

// HF get_cosine_schedule_with_warmup as a multiplier of the base lr for optimizer step `step`
// (0-based, the step about to be taken): step / warmup during warm-up (so the first step has lr 0,
// as in HF), then 0.5 * (1 + cos(pi * (step - warmup) / (total - warmup))), reaching 0 at total.
double warmup_cosine_factor(int64_t step, int64_t warmup_steps, int64_t total_steps);

// AdamW hyper-parameters; lr is overwritten every step by the schedule.
struct AdamWSettings {
  double lr = 1e-3;
  double weight_decay = 0.01;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

// Whether a parameter is exempt from weight decay: RMSNorm weights (any 1-d tensor: biases and
// norms, HF's rule; this model has no biases) and nothing else.
bool no_weight_decay(const std::string& name, const at::Tensor& param);

// AdamW over the module's parameters in two groups: group 0 decays, group 1 (norm weights) does not.
std::unique_ptr<torch::optim::AdamW> make_adamw(torch::nn::Module& module, const AdamWSettings& settings);
// Sets the lr of every group (the no-decay group keeps weight_decay 0).
void set_learning_rate(torch::optim::AdamW& optimizer, double lr);

// Scales the gradients so their global L2 norm is at most max_norm (no-op when max_norm <= 0);
// returns the norm before clipping (computed in float64 for rank-count independence).
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);

// Sums the gradients of `params` over the ranks of `comm`, in flat buckets of about bucket_bytes
// (one all_reduce per bucket instead of one per tensor). Works on CPU (MPI) and CUDA (NCCL)
// tensors alike. Parameters without a gradient get a zero gradient first, so every rank reduces the
// same layout.
void all_reduce_gradients(const std::vector<at::Tensor>& params, Communicator& comm, ReduceOp op,
                          int64_t bucket_bytes);

// Optimizer state in a checkpoint group "optimizer/": exp_avg.<name>, exp_avg_sq.<name> and
// step.<name> (int64 scalar) per parameter that has state (parameters in module order).
void write_optimizer_state(CheckpointWriter& writer, torch::optim::AdamW& optimizer, torch::nn::Module& module);
// Restores it: every parameter of the module must have its three tensors with matching shapes;
// Error(Checkpoint) naming the file and the tensor otherwise. A file without any optimizer state
// (fresh optimizer saved before its first step) restores nothing.
void read_optimizer_state(const CheckpointReader& reader, torch::optim::AdamW& optimizer, torch::nn::Module& module);

}  // namespace atspeed::train
