// Speculative beam search (SPEC §3): the draft proposes beams for several levels, the target
// verifies the whole drafted tree in one forward, and strict (AtSpeed-S, §3.4) or relaxed
// (AtSpeed-R, §3.5 with the fixes of §9.4) verification decides how many levels are accepted.
//
// Conventions: `target_…`/`draft_…` name the two models' values; a "node" is one token of the
// decoding tree of a request (the root is the prompt's last token); a node's `target_slot` /
// `draft_slot` is where its token sits in that model's TreeScorer (-1 = not fed yet).
//
// Round (per request, SPEC §3.1): d = min(gamma, levels - done - 1) drafted levels; d = 0 is one
// plain target step. Draft phase: feed the frontier (the K beams whose tokens are not yet in the
// draft KV, plus any accepted level-d ancestors the draft never fed), then d levels of width N,
// feeding levels 1..d-1. Verify phase: ONE target forward over [frontier][level 1]..[level d];
// then strict or relaxed verification gives m accepted levels and K new beams at level
// done + m + 1. Afterwards both caches are compacted to the prompt plus the ancestors of the live
// beams (SPEC §9.3), never the reference's K extra entries.
//
// Batching (SPEC §9.9): requests decode in lockstep, one forward per phase for the whole batch;
// each request advances by its own accepted levels and pads (parent -1) once finished.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/decode/beam_search.h"
#include "core/decode/decode_mode.h"
#include "core/decode/tree_scorer.h"
#include "core/vocab/constraint.h"

namespace atspeed::decode {

struct SpeculativeOptions {
  int64_t beam_width = 5;                   // K: beams returned (and kept by the target) per request
  int64_t draft_width = 40;                 // N: draft beams per level, N >= K
  int64_t gamma = 4;                        // drafted levels per round (at most levels - done - 1)
  DecodeMode verification = DecodeMode::Strict;  // strict (AtSpeed-S) or relaxed (AtSpeed-R)
  double temperature = 1.0;                 // relaxed only: warpers of SPEC §2.1, for both models
  int64_t top_k = 50;                       // relaxed only: per-row top-k warper; 0 = off
  uint64_t seed = 0;                        // relaxed only: request i draws from mt19937_64(seed + i)

  void validate() const;  // Error(Config) naming the field
};

// Per-request statistics (issue: rounds, accepted levels per round, calls, time per phase).
struct SpeculativeStats {
  int64_t rounds = 0;                      // draft + verify rounds (a final plain target step is not a round)
  std::vector<int64_t> accepted_levels;    // m of every round
  std::vector<int64_t> drafted_levels;     // d of every round
  int64_t target_calls = 0;                // target forwards this request took part in (prefill included)
  int64_t draft_calls = 0;                 // draft forwards (prefill included)
  int64_t target_nodes = 0;                // tree tokens the target scored after the prompt
  double draft_seconds = 0;                // batch wall time in draft forwards + draft selection
  double verify_seconds = 0;               // batch wall time in target forwards
  double bookkeeping_seconds = 0;          // verification logic, cache compaction, tensor assembly
  double seconds = 0;                      // wall time of the run() call (shared by its batch)
  // The batch's time inside model forwards (TreeScorer::counters): seconds minus both is the rest
  // (selection, masks, bookkeeping), the host work the lean path keeps small.
  double target_forward_seconds = 0;
  double draft_forward_seconds = 0;
  TransferStats to_host;                   // the batch's device-to-host copies and bytes

  double mean_accepted_levels() const;     // mean of accepted_levels (0 without rounds)
};

struct SpeculativeResult {
  std::vector<Beam> beams;  // at most K, best first (score descending, ties by tuple ascending)
  SpeculativeStats stats;
};

class SpeculativeBeamSearch {
 public:
  // `target` and `draft` must score the same vocabulary; `levels` code levels are generated
  // (default: the constraint vocabulary's levels).
  SpeculativeBeamSearch(TreeScorer& target, TreeScorer& draft, const Constraint& constraint,
                        SpeculativeOptions options, int levels = 0);

  // Decodes a batch of prompts in lockstep. seeds (relaxed only): one per request, else seed + i.
  std::vector<SpeculativeResult> run(const std::vector<std::vector<int64_t>>& prompts,
                                     const std::vector<uint64_t>& seeds = {});

  const SpeculativeOptions& options() const { return options_; }

 private:
  TreeScorer& target_;
  TreeScorer& draft_;
  const Constraint& constraint_;
  SpeculativeOptions options_;
  int levels_;
};

// --- The verification rules, exposed for unit tests on hand-built distributions. ---

// AtSpeed-R acceptance of one drafted candidate (SPEC §9.4): u < p / q (strict, so p = 0 never
// passes); q must be > 0.
bool relaxed_accept(double p, double q, double u);

// draw_without_replacement() (beam_search.h) draws the relaxed fallbacks.

}  // namespace atspeed::decode
