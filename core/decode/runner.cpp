#include "core/decode/runner.h"

#include <algorithm>
#include <chrono>

#include "core/decode/speculative.h"
#include "core/decode/tree_scorer.h"
#include "core/errors.h"

namespace atspeed::decode {

int64_t effective_draft_width(int64_t n, int64_t k) { return n <= 0 ? k : std::max(n, k); }

std::vector<RunOutput> run_batch(TreeScorer& target, TreeScorer* draft, const Constraint& constraint,
                                 const RunSettings& settings, const std::vector<std::vector<int64_t>>& prompts,
                                 const std::vector<uint64_t>& seeds) {
  ATSPEED_CHECK(!settings.mode.is_auto(), "run_batch: mode auto must be resolved by a plan first");
  const auto start = std::chrono::steady_clock::now();
  const int64_t forwards_before = target.counters().forwards + (draft != nullptr ? draft->counters().forwards : 0);
  std::vector<RunOutput> out(prompts.size());
  if (settings.mode.is_target()) {
    SearchOptions o;
    o.beam_width = settings.k;
    o.sample = settings.sample;
    o.temperature = settings.temperature;
    o.top_k = settings.top_k;
    const auto results = TargetBeamSearch(target, constraint, o).run(prompts, seeds);
    for (size_t i = 0; i < results.size(); ++i) {
      out[i].beams = results[i].beams;
      out[i].target_forwards = results[i].stats.forward_calls;
      out[i].min_boundary_gap = results[i].stats.min_boundary_gap;
      out[i].target_forward_seconds = results[i].stats.forward_seconds;
      out[i].to_host = results[i].stats.to_host;
    }
  } else {
    ATSPEED_CHECK(draft != nullptr, "run_batch: mode ", settings.mode.name(), " needs a draft scorer");
    SpeculativeOptions o;
    o.beam_width = settings.k;
    o.draft_width = effective_draft_width(settings.draft_width, settings.k);
    o.gamma = settings.gamma;
    o.verification = settings.mode;
    o.temperature = settings.temperature;
    o.top_k = settings.top_k;
    const auto results = SpeculativeBeamSearch(target, *draft, constraint, o).run(prompts, seeds);
    for (size_t i = 0; i < results.size(); ++i) {
      const auto& s = results[i].stats;
      out[i].beams = results[i].beams;
      out[i].target_forwards = s.target_calls;
      out[i].draft_forwards = s.draft_calls;
      out[i].rounds = s.rounds;
      out[i].accepted_levels = s.accepted_levels;
      out[i].target_forward_seconds = s.target_forward_seconds;
      out[i].draft_forward_seconds = s.draft_forward_seconds;
      out[i].to_host = s.to_host;
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t forwards =
      target.counters().forwards + (draft != nullptr ? draft->counters().forwards : 0) - forwards_before;
  for (auto& o : out) {
    o.seconds = seconds;
    o.batch_forwards = forwards;
  }
  return out;
}

}  // namespace atspeed::decode
