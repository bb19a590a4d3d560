// Forward traces: what a search asked of a model, forward by forward, so that a cost model can price
// the same decode on another machine (the planner's predictions, bench decode's projections).
//
// A trace records each forward's kind and token counts (all requests of a batch together, padding
// included: that is what the forward computes), never its results. modelled_s() prices a trace
// with a CostCurve: a prefill of P tokens costs prefill_tokens_s(P), an extend of n tokens
// extend_s(n), and a deferred prefill run together with the next extend (SPEC §3.3) both, less the
// extend's fixed cost, which the one forward pays once.
#pragma once

#include <cstdint>
#include <vector>

#include "core/decode/cost_model.h"
#include "core/decode/tree_scorer.h"

namespace atspeed::decode {

struct ForwardRecord {
  enum Kind { Prefill, Extend, Fused } kind;  // Fused: a deferred prefill run with the next extend
  int64_t prompt_tokens = 0;                  // Prefill, Fused: prompt tokens of the batch
  int64_t tree_tokens = 0;                    // Extend, Fused: new tree tokens of the batch (B x width)
};

struct ForwardTrace {
  std::vector<ForwardRecord> forwards;
  // Seconds the cost model gives these forwards (>= 0).
  double modelled_s(const CostCurve& cost) const;
};

// A TreeScorer that passes every call through to `inner` and appends each forward to `trace`.
class TracingScorer final : public TreeScorer {
 public:
  TracingScorer(TreeScorer& inner, ForwardTrace& trace) : inner_(inner), trace_(trace) {}

  int64_t vocab_size() const override { return inner_.vocab_size(); }
  at::Tensor prefill(const std::vector<std::vector<int64_t>>& prompts) override;
  void prefill_deferred(const std::vector<std::vector<int64_t>>& prompts) override;
  at::Tensor prompt_logprobs() const override { return inner_.prompt_logprobs(); }
  at::Tensor extend(const at::Tensor& tokens, const at::Tensor& parents) override;
  int64_t length() const override { return inner_.length(); }
  int64_t batch_size() const override { return inner_.batch_size(); }
  int64_t prompt_length(int64_t request) const override { return inner_.prompt_length(request); }
  void truncate(int64_t len) override { inner_.truncate(len); }
  void compact(const at::Tensor& keep) override { inner_.compact(keep); }
  ScorerCounters counters() const override { return inner_.counters(); }
  at::Device device() const override { return inner_.device(); }

 private:
  TreeScorer& inner_;
  ForwardTrace& trace_;
  int64_t deferred_ = 0;  // prompt tokens of a deferred prefill not fed yet
};

}  // namespace atspeed::decode
