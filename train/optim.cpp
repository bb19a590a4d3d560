#include "train/optim.h"

#include <torch/torch.h>

#include <cmath>
#include <numbers>

#include "core/errors.h"

namespace atspeed::train {

double warmup_cosine_factor(int64_t step, int64_t warmup_steps, int64_t total_steps) {
  if (step < warmup_steps) return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup_steps));
  const double progress = static_cast<double>(step - warmup_steps) /
                          static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * std::min(1.0, progress))));
}

bool no_weight_decay(const std::string& name, const at::Tensor& param) {
  (void)name;
  return param.dim() <= 1;
}

std::unique_ptr<torch::optim::AdamW> make_adamw(torch::nn::Module& module, const AdamWSettings& s) {
  std::vector<at::Tensor> decay, no_decay;
  for (const auto& p : module.named_parameters()) (no_weight_decay(p.key(), p.value()) ? no_decay : decay).push_back(p.value());
  auto options = [&](double wd) {
    auto o = std::make_unique<torch::optim::AdamWOptions>(s.lr);
    o->betas({s.beta1, s.beta2}).eps(s.eps).weight_decay(wd).amsgrad(false);
    return o;
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, options(s.weight_decay));
  groups.emplace_back(no_decay, options(0.0));
  return std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(s.lr));
}

void set_learning_rate(torch::optim::AdamW& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  double sq = 0.0;
  for (const auto& p : params)
    if (p.grad().defined()) sq += p.grad().to(at::kDouble).pow(2).sum().item<double>();
  const double norm = std::sqrt(sq);
  if (max_norm > 0 && norm > max_norm) {
    // Same coefficient as torch.nn.utils.clip_grad_norm_ (1e-6 guards a zero norm).
    const double coef = max_norm / (norm + 1e-6);
    for (const auto& p : params)
      if (p.grad().defined()) p.grad().mul_(coef);
  }
  return norm;
}

void all_reduce_gradients(const std::vector<at::Tensor>& params, Communicator& comm, ReduceOp op,
                          int64_t bucket_bytes) {
  if (comm.size() == 1) return;
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  grads.reserve(params.size());
  for (const auto& p : params) {
    at::Tensor p_mut = p;
    if (!p_mut.grad().defined()) p_mut.mutable_grad() = at::zeros_like(p_mut);
    grads.push_back(p_mut.grad());
  }
  size_t i = 0;
  while (i < grads.size()) {
    // A bucket: consecutive gradients of one dtype and device up to bucket_bytes (at least one).
    size_t j = i;
    int64_t bytes = 0;
    while (j < grads.size() && grads[j].scalar_type() == grads[i].scalar_type() &&
           grads[j].device() == grads[i].device() &&
           (j == i || bytes + grads[j].numel() * grads[j].element_size() <= bucket_bytes)) {
      bytes += grads[j].numel() * grads[j].element_size();
      ++j;
    }
    std::vector<at::Tensor> flat_parts;
    for (size_t k = i; k < j; ++k) flat_parts.push_back(grads[k].reshape({-1}));
    at::Tensor flat = at::cat(flat_parts);
    comm.all_reduce(flat, op);
    int64_t offset = 0;
    for (size_t k = i; k < j; ++k) {
      const int64_t n = grads[k].numel();
      grads[k].copy_(flat.narrow(0, offset, n).view_as(grads[k]));
      offset += n;
    }
    i = j;
  }
}

void write_optimizer_state(CheckpointWriter& writer, torch::optim::AdamW& optimizer, torch::nn::Module& module) {
  auto& state = optimizer.state();
  for (const auto& p : module.named_parameters()) {
    auto it = state.find(p.value().unsafeGetTensorImpl());
    if (it == state.end()) continue;
    auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
    writer.write("optimizer/exp_avg." + p.key(), s.exp_avg());
    writer.write("optimizer/exp_avg_sq." + p.key(), s.exp_avg_sq());
    writer.write("optimizer/step." + p.key(), at::scalar_tensor(s.step(), at::kLong));
  }
}

void read_optimizer_state(const CheckpointReader& reader, torch::optim::AdamW& optimizer, torch::nn::Module& module) {
  bool any = false;
  for (const auto& t : reader.list()) any = any || t.name.rfind("optimizer/", 0) == 0;
  if (!any) return;
  auto& state = optimizer.state();
  for (const auto& p : module.named_parameters()) {
    const std::string names[3] = {"optimizer/exp_avg." + p.key(), "optimizer/exp_avg_sq." + p.key(),
                                  "optimizer/step." + p.key()};
    for (const auto& n : names)
      ATSPEED_ENSURE(Checkpoint, reader.contains(n), reader.path(), ": missing optimizer tensor '", n, "'");
    auto s = std::make_unique<torch::optim::AdamWParamState>();
    at::Tensor exp_avg = reader.read(names[0]), exp_avg_sq = reader.read(names[1]);
    for (const at::Tensor* t : {&exp_avg, &exp_avg_sq})
      ATSPEED_ENSURE(Checkpoint, t->sizes() == p.value().sizes(), reader.path(), ": optimizer tensor for '", p.key(),
                     "' has shape ", t->sizes(), ", the parameter ", p.value().sizes());
    s->exp_avg(exp_avg.to(p.value().options()).contiguous());
    s->exp_avg_sq(exp_avg_sq.to(p.value().options()).contiguous());
    s->step(reader.read(names[2]).item<int64_t>());
    state[p.value().unsafeGetTensorImpl()] = std::move(s);
  }
}

}  // namespace atspeed::train
