// The cost model of decoding (DESIGN §3): each model's forward time against the number of new tokens
// it scores, measured through its TreeScorer. Serve, eval and bench decode share it; the planner
// (planner.h) turns it into the choice between target beam search and strict speculative decoding.
//
// Measurement: a prompt of typical length is prefilled, then extend(n) adds a star of n nodes under
// its last token and truncate() drops them again. Every point is the median of `reps` timings with
// its interquartile range; the repetitions go round-robin over the n values (n1, n2, ..., n1, n2, ...)
// so a burst of load on a busy machine spreads over all points instead of bending one of them.
// A least-squares line t(n) = a + b n through the medians gives the model used between points.
// The time of a call is the scorer's forward time (TreeScorer::counters: the model forward and its
// log_softmax; CUDA events on a GPU), not the scorer's host bookkeeping, which decode stats count
// as the rest. A scorer that does not count (a test fake) measures 0.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace atspeed::decode {

class TreeScorer;

struct CostPoint {
  int64_t n = 0;          // new tokens in one extend()
  double median_s = 0;    // median seconds over the repetitions
  double q1_s = 0, q3_s = 0;  // interquartile range
};

struct CostCurve {
  double prefill_s = 0;      // median seconds to prefill the typical prompt (batch 1)
  int64_t prompt_tokens = 0; // its length
  double a_s = 0, b_s = 0;   // extend(n) ~ a + b n seconds (least squares through the medians)
  std::vector<CostPoint> points;

  bool empty() const { return points.empty(); }
  // Seconds of one forward over `tokens` new tokens (all requests of a batch together), >= 0.
  double extend_s(int64_t tokens) const;
  // Seconds of a prefill of `tokens` prompt tokens (a batch's prompts together): the measured
  // prefill plus b per token beyond the measured prompt.
  double prefill_tokens_s(int64_t tokens) const;
  // The median measured at n, or the line when n was not measured.
  double at(int64_t n) const;
  // A curve from a fixed law (tests, projections): prefill p, extend a + b n.
  static CostCurve linear(double prefill_s, double a_s, double b_s, int64_t prompt_tokens = 16);
};

struct CostModel {
  CostCurve target, draft;  // draft empty without a draft model
  bool has_draft() const { return !draft.empty(); }
};

struct CostOptions {
  std::vector<int64_t> ns{1, 5, 10, 20, 40, 80, 120};  // new-token counts measured
  int reps = 7;                                         // timed repetitions per point (after one warm-up)
};

// Measures one scorer (see the header comment). Leaves the scorer prefilled with `prompt`.
CostCurve measure_cost(TreeScorer& scorer, const std::vector<int64_t>& prompt, const CostOptions& options);

nlohmann::json to_json(const CostCurve& c);
CostCurve cost_curve_from_json(const nlohmann::json& j);

}  // namespace atspeed::decode
