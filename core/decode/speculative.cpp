#include "core/decode/speculative.h"

#include <chrono>
#include <cmath>
#include <numeric>

#include "core/config.h"
#include "core/decode/speculative_state.h"
#include "core/errors.h"

namespace atspeed::decode {

void SpeculativeOptions::validate() const {
  config_ensure(beam_width >= 1, "speculative.beam_width", "must be >= 1");
  config_ensure(draft_width >= beam_width, "speculative.draft_width",
                "must be >= the beam width K (" + std::to_string(beam_width) + ")");
  config_ensure(gamma >= 1, "speculative.gamma", "must be >= 1");
  config_ensure(verification.is_speculative(), "speculative.verification",
                std::string("must be strict or relaxed (got '") + verification.name() + "')");
  config_ensure(temperature > 0 && std::isfinite(temperature), "speculative.temperature", "must be a finite number > 0");
  config_ensure(top_k >= 0, "speculative.top_k", "must be >= 0 (0 = no top-k warper)");
}

double SpeculativeStats::mean_accepted_levels() const {
  if (accepted_levels.empty()) return 0.0;
  return static_cast<double>(std::accumulate(accepted_levels.begin(), accepted_levels.end(), int64_t{0})) /
         static_cast<double>(accepted_levels.size());
}

bool relaxed_accept(double p, double q, double u) {
  ATSPEED_CHECK(q > 0, "relaxed_accept: q must be > 0 for a drafted candidate (got ", q, ")");
  return u < p / q;
}

SpeculativeBeamSearch::SpeculativeBeamSearch(TreeScorer& target, TreeScorer& draft, const Constraint& constraint,
                                             SpeculativeOptions options, int levels)
    : target_(target), draft_(draft), constraint_(constraint), options_(options),
      levels_(levels > 0 ? levels : constraint.vocab().levels()) {
  options_.validate();
  ATSPEED_CHECK(levels_ >= 1 && levels_ <= constraint.vocab().levels(), "speculative search: levels ", levels_,
                " outside [1, ", constraint.vocab().levels(), "]");
}

std::vector<SpeculativeResult> SpeculativeBeamSearch::run(const std::vector<std::vector<int64_t>>& prompts,
                                                          const std::vector<uint64_t>& seeds) {
  const auto start = std::chrono::steady_clock::now();
  ATSPEED_CHECK(seeds.empty() || seeds.size() == prompts.size(), "speculative search: ", seeds.size(), " seeds for ",
                prompts.size(), " prompts");
  ATSPEED_CHECK(draft_.vocab_size() == target_.vocab_size(), "speculative search: draft vocabulary ",
                draft_.vocab_size(), " != target vocabulary ", target_.vocab_size());
  if (prompts.empty()) return {};
  detail::SpeculativeBatch batch(target_, draft_, constraint_, options_, levels_, prompts, seeds);
  while (batch.start_round()) {
    batch.draft_phase();
    batch.verify_forward();
    batch.verify_all();
    batch.compact_both();
    batch.charge_round();
  }
  return batch.results(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

}  // namespace atspeed::decode
