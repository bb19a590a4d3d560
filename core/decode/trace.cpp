#include "core/decode/trace.h"

#include <algorithm>

namespace atspeed::decode {
namespace {
int64_t tokens_of(const std::vector<std::vector<int64_t>>& prompts) {
  int64_t n = 0;
  for (const auto& p : prompts) n += static_cast<int64_t>(p.size());
  return n;
}
}  // namespace

double ForwardTrace::modelled_s(const CostCurve& c) const {
  double s = 0;
  for (const auto& f : forwards) {
    switch (f.kind) {
      case ForwardRecord::Prefill: s += c.prefill_tokens_s(f.prompt_tokens); break;
      case ForwardRecord::Extend: s += c.extend_s(f.tree_tokens); break;
      case ForwardRecord::Fused: s += c.prefill_tokens_s(f.prompt_tokens) + c.extend_s(f.tree_tokens) - c.a_s; break;
    }
  }
  return std::max(0.0, s);
}

at::Tensor TracingScorer::prefill(const std::vector<std::vector<int64_t>>& prompts) {
  at::Tensor out = inner_.prefill(prompts);
  trace_.forwards.push_back({ForwardRecord::Prefill, tokens_of(prompts), 0});
  return out;
}

void TracingScorer::prefill_deferred(const std::vector<std::vector<int64_t>>& prompts) {
  inner_.prefill_deferred(prompts);
  deferred_ = tokens_of(prompts);
}

at::Tensor TracingScorer::extend(const at::Tensor& tokens, const at::Tensor& parents) {
  at::Tensor out = inner_.extend(tokens, parents);
  trace_.forwards.push_back({deferred_ > 0 ? ForwardRecord::Fused : ForwardRecord::Extend, deferred_, tokens.numel()});
  deferred_ = 0;
  return out;
}

}  // namespace atspeed::decode
