// The one place that turns a decode mode and its settings into a search over a batch of prompts:
// serve, eval and bench decode all decode through run_batch(), so a mode means the same everywhere.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "core/decode/beam_search.h"
#include "core/decode/decode_mode.h"

namespace atspeed {
class Constraint;
}  // namespace atspeed

namespace atspeed::decode {

class TreeScorer;

// The draft width used for beam width k: n raised to k (a speculative search needs N >= K); n = 0
// means N = K.
int64_t effective_draft_width(int64_t n, int64_t k);

// What run_batch() does. mode is target, strict or relaxed (auto is resolved by a Plan first).
struct RunSettings {
  DecodeMode mode = DecodeMode::Target;
  int64_t k = 10;             // beam width K
  bool sample = false;        // target only: beam sampling (the baseline of relaxed) instead of top-K
  int64_t draft_width = 40;   // speculative: N (raised to K by effective_draft_width)
  int64_t gamma = 4;          // speculative: drafted levels per round
  double temperature = 1.0;   // sampling and relaxed: warpers (SPEC §2.1)
  int64_t top_k = 50;         // sampling and relaxed: per-row top-k warper; 0 = off
};

// One request's outcome, whatever the mode.
struct RunOutput {
  std::vector<Beam> beams;         // best first
  int64_t target_forwards = 0;     // target forwards the request took part in (prefill included)
  int64_t draft_forwards = 0;      // speculative only
  int64_t rounds = 0;              // speculative only
  std::vector<int64_t> accepted_levels;  // speculative only: per round
  float min_boundary_gap = std::numeric_limits<float>::infinity();  // deterministic target search only
  double seconds = 0;              // wall time of the batch
  // Of which inside model forwards (the batch's; TreeScorer::counters): the rest, seconds minus
  // both, is selection, masks and bookkeeping on the host.
  double target_forward_seconds = 0;
  double draft_forward_seconds = 0;
  TransferStats to_host;           // the batch's device-to-host copies and bytes
  int64_t batch_forwards = 0;      // forwards the batch ran, both models (copies per forward = to_host.copies / this)
};

// Decodes `prompts` together. draft: required for strict and relaxed. seeds: one per prompt
// (sampling and relaxed draw from them), or empty for 0, 1, 2, ...
std::vector<RunOutput> run_batch(TreeScorer& target, TreeScorer* draft, const Constraint& constraint,
                                 const RunSettings& settings, const std::vector<std::vector<int64_t>>& prompts,
                                 const std::vector<uint64_t>& seeds = {});

}  // namespace atspeed::decode
