#include "core/decode/tree_scorer.h"

#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <optional>

#include "core/decode/selection.h"
#include "core/errors.h"
#include "core/model/fused_cpu.h"
#include "core/vocab/vocabulary.h"

namespace atspeed::decode {

struct LlamaTreeScorer::Timing {
  std::chrono::steady_clock::time_point t0;
  double seconds = 0;                             // CPU forwards, and CUDA pairs already read
  std::optional<c10::Event> open;                 // CUDA: the start event of the running forward
  std::vector<std::pair<c10::Event, c10::Event>> pending;  // CUDA: (start, end) not read yet
};

LlamaTreeScorer::LlamaTreeScorer(model::LlamaModel model) : model_(std::move(model)), timing_(std::make_shared<Timing>()) {
  ATSPEED_CHECK(!model_.is_empty(), "LlamaTreeScorer: null model");
}

namespace {
// What every forward returns: the full-vocabulary log_softmax of the logits (SPEC §2.1), float32.
at::Tensor log_probs(model::LlamaModel& model, const at::Tensor& hidden) {
  c10::InferenceMode guard;
  return torch::log_softmax(model->logits(hidden).to(at::kFloat), -1);
}

c10::Event recorded_event(const at::Device& device) {
  c10::Event e(device.type(), c10::EventFlag::BACKEND_DEFAULT);  // timing enabled
  e.record(c10::impl::VirtualGuardImpl(device.type()).getStream(device));
  return e;
}
}  // namespace

void LlamaTreeScorer::begin_forward() {
  const at::Device device = this->device();
  if (device.is_cpu()) {
    timing_->t0 = std::chrono::steady_clock::now();
  } else {
    timing_->open.emplace(recorded_event(device));
  }
}

void LlamaTreeScorer::end_forward() {
  const at::Device device = this->device();
  if (device.is_cpu()) {
    timing_->seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - timing_->t0).count();
  } else if (timing_->open) {
    timing_->pending.emplace_back(std::move(*timing_->open), recorded_event(device));
    timing_->open.reset();
  }
}

// One parameter, not parameters(): this runs several times per forward and parameters() builds a vector.
at::Device LlamaTreeScorer::device() const { return model_->model->embed_tokens->weight.device(); }

ScorerCounters LlamaTreeScorer::counters() const {
  // Event pairs are read once the device passed them (a search's copy to the host waits for that);
  // query() does not synchronise.
  auto& pending = timing_->pending;
  size_t done = 0;
  while (done < pending.size() && pending[done].second.query()) {
    timing_->seconds += pending[done].first.elapsedTime(pending[done].second) / 1000.0;  // ms
    ++done;
  }
  pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(done));
  return {forward_calls_, timing_->seconds};
}

int64_t LlamaTreeScorer::vocab_size() const { return model_->options().vocab_size; }

int64_t LlamaTreeScorer::prompt_length(int64_t request) const {
  ATSPEED_CHECK(request >= 0 && request < batch_size(), "prompt_length: request ", request, " outside [0, ",
                batch_size(), ")");
  return prompt_lengths_[static_cast<size_t>(request)];
}

// tokens/positions [B, n], new_visible bool [B, n, past + n] (the rows of the new slots).
at::Tensor LlamaTreeScorer::run(const at::Tensor& tokens, const at::Tensor& positions, const at::Tensor& new_visible) {
  c10::InferenceMode guard;
  const at::Device device = this->device();
  // Blocked = -inf; every row sees at least itself, so no row is all -inf (no NaN). Built on the
  // device from the visibility rows (bool, a quarter of the float mask's bytes to send).
  at::Tensor mask;
  if (device.is_cpu() && model::fused_cpu::enabled()) {
    mask = model::fused_cpu::additive_mask(new_visible);  // one loop instead of three operators
  } else {
    const at::Tensor visible = to_device_async(new_visible.contiguous(), device);
    mask = at::zeros(visible.sizes(), at::TensorOptions().dtype(at::kFloat).device(device))
               .masked_fill_(visible.logical_not(), -std::numeric_limits<float>::infinity());
  }
  at::Tensor hidden = model_->hidden_states(to_device_async(tokens.contiguous(), device),
                                            to_device_async(positions.contiguous(), device), mask, &cache_);
  ++forward_calls_;
  return hidden;
}

at::Tensor LlamaTreeScorer::set_prompts(const std::vector<std::vector<int64_t>>& prompts) {
  ATSPEED_CHECK(!prompts.empty(), "prefill: no prompts");
  const int64_t b = static_cast<int64_t>(prompts.size());
  int64_t width = 0;
  for (const auto& p : prompts) {
    ATSPEED_CHECK(!p.empty(), "prefill: empty prompt");
    width = std::max<int64_t>(width, static_cast<int64_t>(p.size()));
  }
  cache_.clear();
  pending_prompts_ = at::Tensor();
  prompt_logprobs_ = at::Tensor();
  prompt_lengths_.assign(prompts.size(), 0);
  at::Tensor tokens = at::full({b, width}, Vocabulary::kPad, at::kLong);
  positions_store_ = positions_ = at::zeros({b, width}, at::kLong);
  visible_store_ = visible_ = at::zeros({b, width, width}, at::kBool);
  auto tok = tokens.accessor<int64_t, 2>();
  auto pos = positions_.accessor<int64_t, 2>();
  auto vis = visible_.accessor<bool, 3>();
  for (int64_t r = 0; r < b; ++r) {
    const auto& p = prompts[static_cast<size_t>(r)];
    const int64_t len = static_cast<int64_t>(p.size());
    prompt_lengths_[static_cast<size_t>(r)] = len;
    for (int64_t s = 0; s < width; ++s) {
      if (s < len) {
        tok[r][s] = p[static_cast<size_t>(s)];
        pos[r][s] = s;
        for (int64_t c = 0; c <= s; ++c) vis[r][s][c] = true;
      } else {
        vis[r][s][s] = true;  // padding sees only itself
      }
    }
  }
  return tokens;
}

at::Tensor LlamaTreeScorer::prompt_rows(const at::Tensor& hidden) {
  c10::InferenceMode guard;
  const int64_t b = batch_size();
  at::Tensor last = to_device_async(torch::tensor(prompt_lengths_, torch::kLong).sub(1), hidden.device());
  at::Tensor rows = hidden.index({torch::arange(b, torch::TensorOptions().dtype(torch::kLong).device(hidden.device())), last});
  return log_probs(model_, rows);
}

at::Tensor LlamaTreeScorer::prefill(const std::vector<std::vector<int64_t>>& prompts) {
  const at::Tensor tokens = set_prompts(prompts);
  begin_forward();
  prompt_logprobs_ = prompt_rows(run(tokens, positions_, visible_));  // hidden [B, width, hidden]
  end_forward();
  return prompt_logprobs_;
}

void LlamaTreeScorer::prefill_deferred(const std::vector<std::vector<int64_t>>& prompts) {
  pending_prompts_ = set_prompts(prompts);
}

at::Tensor LlamaTreeScorer::prompt_logprobs() const {
  ATSPEED_CHECK(prompt_logprobs_.defined(), "prompt_logprobs: the prompts have not been through a forward yet");
  return prompt_logprobs_;
}

at::Tensor LlamaTreeScorer::extend(const at::Tensor& tokens_in, const at::Tensor& parents_in) {
  ATSPEED_CHECK(visible_.defined(), "extend before prefill");
  const int64_t b = batch_size(), s = length();
  ATSPEED_CHECK(tokens_in.dim() == 2 && tokens_in.size(0) == b && tokens_in.scalar_type() == at::kLong,
                "extend: tokens must be int64 [B=", b, ", n], got ", tokens_in.sizes());
  ATSPEED_CHECK(parents_in.sizes() == tokens_in.sizes() && parents_in.scalar_type() == at::kLong,
                "extend: parents must be int64 ", tokens_in.sizes(), ", got ", parents_in.sizes());
  const int64_t n = tokens_in.size(1);
  ATSPEED_CHECK(n > 0, "extend: no nodes");
  at::Tensor tokens = tokens_in.cpu().clone();
  const at::Tensor parents = parents_in.cpu().contiguous();
  reserve_slots(s + n);
  auto v = visible_store_.accessor<bool, 3>();
  auto ps = positions_store_.accessor<int64_t, 2>();
  auto par = parents.accessor<int64_t, 2>();
  auto tok = tokens.accessor<int64_t, 2>();
  for (int64_t r = 0; r < b; ++r) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t slot = s + i, p = par[r][i];
      ATSPEED_CHECK(p >= -1 && p < slot, "extend: parents[", r, "][", i, "] = ", p, " must be -1 or a slot < ", slot);
      // The node's row over columns [0, s + n): its parent's visibility, then itself. An old
      // slot's row is valid over [0, s) only (the store may hold stale columns beyond), and old
      // slots never see new nodes; a new node's row was written whole just before.
      bool* row = &v[r][slot][0];
      std::fill(row, row + s + n, false);
      if (p >= 0) {
        const bool* from = &v[r][p][0];
        std::copy(from, from + (p < s ? s : slot), row);
        ps[r][slot] = ps[r][p] + 1;
      } else {
        tok[r][i] = Vocabulary::kPad;
        ps[r][slot] = 0;
      }
      row[slot] = true;
    }
  }
  visible_ = visible_store_.narrow(1, 0, s + n).narrow(2, 0, s + n);
  positions_ = positions_store_.narrow(1, 0, s + n);
  const at::Tensor& vis = visible_;
  const at::Tensor& pos = positions_;
  begin_forward();
  at::Tensor out;
  if (pending_prompts_.defined()) {
    // Deferred prefill: the prompt slots [0, s) and the new nodes in one forward over an empty cache.
    const at::Tensor all = at::cat({pending_prompts_, tokens}, 1);
    pending_prompts_ = at::Tensor();
    const at::Tensor hidden = run(all, pos, vis);  // [B, s + n, hidden]
    prompt_logprobs_ = prompt_rows(hidden);
    out = log_probs(model_, hidden.narrow(1, s, n));
  } else {
    out = log_probs(model_, run(tokens, pos.narrow(1, s, n), vis.narrow(1, s, n)));
  }
  end_forward();
  return out;
}

void LlamaTreeScorer::reserve_slots(int64_t slots) {
  if (visible_store_.size(1) >= slots) return;
  const int64_t b = visible_.size(0), s = visible_.size(1), cap = std::max<int64_t>(2 * slots, 64);
  at::Tensor vis = at::zeros({b, cap, cap}, at::kBool);
  vis.narrow(1, 0, s).narrow(2, 0, s).copy_(visible_);
  at::Tensor pos = at::zeros({b, cap}, at::kLong);
  pos.narrow(1, 0, s).copy_(positions_);
  visible_store_ = vis;
  positions_store_ = pos;
  visible_ = vis.narrow(1, 0, s).narrow(2, 0, s);
  positions_ = pos.narrow(1, 0, s);
}

void LlamaTreeScorer::truncate(int64_t len) {
  ATSPEED_CHECK(!pending_prompts_.defined(), "truncate: the deferred prompts were never fed (call extend first)");
  ATSPEED_CHECK(len >= 0 && len <= length(), "truncate(", len, ") with length ", length());
  visible_ = visible_.narrow(1, 0, len).narrow(2, 0, len);  // views: the stores keep their room
  positions_ = positions_.narrow(1, 0, len);
  cache_.truncate(len);
}

void LlamaTreeScorer::compact(const at::Tensor& keep_in) {
  const int64_t b = batch_size(), s = length();
  ATSPEED_CHECK(keep_in.dim() == 2 && keep_in.size(0) == b && keep_in.scalar_type() == at::kLong,
                "compact: keep must be int64 [B=", b, ", m], got ", keep_in.sizes());
  ATSPEED_CHECK(!pending_prompts_.defined(), "compact: the deferred prompts were never fed (call extend first)");
  const at::Tensor keep = keep_in.cpu().contiguous();
  const int64_t m = keep.size(1);
  const int64_t* kp = keep.data_ptr<int64_t>();
  for (int64_t i = 0; i < keep.numel(); ++i)  // a host loop: min()/max() and item() cost two ops each
    ATSPEED_CHECK(kp[i] >= 0 && kp[i] < s, "compact: slot ", kp[i], " outside [0, ", s, ")");
  // The kept rows and columns go back to the front of the same stores (m <= s), so the next extend
  // finds its room there instead of allocating and zeroing a new [B, cap, cap] store every round.
  const at::Tensor kept_visible =
      visible_.gather(1, keep.unsqueeze(2).expand({b, m, s})).gather(2, keep.unsqueeze(1).expand({b, m, m}));
  const at::Tensor kept_positions = positions_.gather(1, keep);
  visible_ = visible_store_.narrow(1, 0, m).narrow(2, 0, m);
  visible_.copy_(kept_visible);
  positions_ = positions_store_.narrow(1, 0, m);
  positions_.copy_(kept_positions);
  c10::InferenceMode guard;
  if (!cache_.k.empty()) cache_.gather(to_device_async(keep, cache_.k[0].device()));
}

}  // namespace atspeed::decode
