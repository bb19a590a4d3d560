// Constrained beam search over code tuples (SPEC §2): the target's decoding and its baselines.
//
//   TargetBeamSearch  tree attention over one shared prompt KV per request (SPEC §2.3), several
//                     requests per forward (SPEC §9.9); deterministic top-K or beam sampling.
//   NaiveBeamSearch   what HF generate does: K rows, each with its own copy of the prompt KV,
//                     ordinary causal attention, the cache reordered by parent after every step.
//
// Both select with expand_beams(), so they agree token for token whenever the model's scores
// agree: candidates (beam, token) with token allowed by the Constraint after the beam's prefix,
// cand = S_beam + log_softmax(full vocabulary)[token] (float32 sums, no renormalisation after
// masking), top-K by cand descending, exact ties by code tuple ascending (SPEC §9.2).
// Candidates whose score is -inf (or NaN) are never kept, so a step with fewer than K finite
// candidates yields fewer than K beams; a request may therefore return fewer than K tuples (with
// the trie only when fewer than K items exist under the live prefixes).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "core/decode/selection.h"
#include "core/decode/tree_scorer.h"
#include "core/random.h"  // uniform01, used with these draws
#include "core/model/llama.h"
#include "core/vocab/constraint.h"

namespace atspeed::decode {

struct SearchOptions {
  int64_t beam_width = 5;    // K
  bool sample = false;       // false: deterministic top-K; true: beam sampling (SPEC §2.1)
  double temperature = 1.0;  // sampling only: ls / T (skipped when T == 1)
  int64_t top_k = 50;        // sampling only: per-row top-k warper (at least 2 kept when K > 1); 0 = off
  uint64_t seed = 0;         // sampling only: request i of a run() draws from mt19937_64(seed + i) unless seeds are given

  void validate() const;  // Error(Config) naming the field
};

// One hypothesis: the code tokens generated so far and its cumulative score.
struct Beam {
  std::vector<int64_t> tokens;  // code token ids, one per level generated
  float score = 0;              // sum of (warped, when sampling) full-vocabulary log-probs
  int64_t parent = -1;          // index of the beam it extends in the previous step's list (-1 at the root)
};

// Per-request statistics of a decode.
struct SearchStats {
  int64_t forward_calls = 0;  // model forwards this request took part in (prefill included)
  int64_t nodes = 0;          // tokens fed for this request after the prompt (its tree size)
  double seconds = 0;         // wall time of the run() call that decoded it (shared by its batch)
  double forward_seconds = 0; // of which inside the model's forwards (the batch's; TreeScorer::counters)
  TransferStats to_host;      // the batch's device-to-host copies and bytes
  // Deterministic search: the smallest gap, over its steps, between the K-th kept candidate's
  // score and the best dropped one's (+inf when nothing was dropped). Below float noise (1e-4) a
  // different but equally valid computation may keep the other one, and everything after that
  // level can differ: the root of a near-tie flip (SPEC §9.2).
  float min_boundary_gap = std::numeric_limits<float>::infinity();
};

struct SearchResult {
  std::vector<Beam> beams;  // at most K, best first (score descending, ties by tuple ascending)
  SearchStats stats;
};

// A constraint-allowed candidate (row, token) of one search step: raw = S_row + log p(token);
// warped = S_row + the warped log-prob (temperature, then the row's top-k; -inf outside it). Without
// warping (deterministic search) warped == raw.
struct Candidate {
  int64_t row;
  int64_t token;
  float raw;
  float warped;
};
// Every allowed candidate after `beams` (row order, then ascending token); rows[i]: beam i's allowed
// tokens and their log-probs. top_k: per-row warper (0 = off; at least 2 kept when k > 1, as HF).
std::vector<Candidate> scored_candidates(const std::vector<Beam>& beams, const AllowedRows& rows, double temperature,
                                         int64_t top_k, int64_t k);
// The same from dense log_probs float32 [beams, V] (the constraint gives each beam's allowed tokens).
std::vector<Candidate> scored_candidates(const std::vector<Beam>& beams, const at::Tensor& log_probs,
                                         const Constraint& constraint, double temperature, int64_t top_k, int64_t k);
// softmax over the finite warped scores of `cands` (0 for the others); all 0 when none is finite.
std::vector<double> warped_softmax(const std::vector<Candidate>& cands);
// Draws up to n distinct indices from non-negative weights w without replacement, each draw
// proportional to the remaining weight; never a zero entry (fewer than n when fewer are positive).
std::vector<int64_t> draw_without_replacement(const std::vector<double>& w, int64_t n, std::mt19937_64& rng);

// Ranking order of SPEC §9.2: score descending, then the code tuple ascending ((level, code) per
// position, Vocabulary::order_key; not token ids, which a text vocabulary orders as strings).
bool beam_before(const Beam& a, const Beam& b, const Vocabulary& vocab);

// One search step. beams: the current list (all of one depth); rows[i]: the allowed tokens after
// beams[i] and their log-probs (gather_allowed). Returns the next list, each new Beam's parent the
// index into `beams`, best first (deterministic) or in draw order (sampling; `rng` required).
// boundary_gap (deterministic search, optional): set to the K-th kept score minus the best dropped
// score, +inf when no candidate was dropped. The constraint gives the tie order (its vocabulary).
std::vector<Beam> expand_beams(const std::vector<Beam>& beams, const AllowedRows& rows, const Constraint& constraint,
                               const SearchOptions& options, std::mt19937_64* rng = nullptr,
                               float* boundary_gap = nullptr);
// The same from dense log_probs float32 [beams, V] (any device; row i = the log-probs after beams[i]).
std::vector<Beam> expand_beams(const std::vector<Beam>& beams, const at::Tensor& log_probs, const Constraint& constraint,
                               const SearchOptions& options, std::mt19937_64* rng = nullptr,
                               float* boundary_gap = nullptr);

// Sorts a final list into ranking order.
void sort_beams(std::vector<Beam>& beams, const Vocabulary& vocab);

class TargetBeamSearch {
 public:
  // `levels` code levels are generated (no EOS step at inference, SPEC §1.6); default: the
  // constraint vocabulary's levels.
  TargetBeamSearch(TreeScorer& scorer, const Constraint& constraint, SearchOptions options, int levels = 0);

  // Decodes a batch of prompts (one request each) in lockstep; every request is its own tree in the
  // scorer, and requests that finish (all levels done, or no live beam) feed padding nodes until the
  // batch is done. seeds (sampling only): one per request, else options.seed + i.
  std::vector<SearchResult> run(const std::vector<std::vector<int64_t>>& prompts,
                                const std::vector<uint64_t>& seeds = {});

  const SearchOptions& options() const { return options_; }

 private:
  TreeScorer& scorer_;
  const Constraint& constraint_;
  SearchOptions options_;
  int levels_;
};

class NaiveBeamSearch {
 public:
  NaiveBeamSearch(model::LlamaModel model, const Constraint& constraint, SearchOptions options, int levels = 0);
  // One request at a time (HF's beam search with batch size 1): the prompt is run K times (K rows),
  // then each step feeds one token per live beam with the cache rows reordered by parent.
  std::vector<SearchResult> run(const std::vector<std::vector<int64_t>>& prompts,
                                const std::vector<uint64_t>& seeds = {});

 private:
  SearchResult run_one(const std::vector<int64_t>& prompt, uint64_t seed);

  model::LlamaModel model_;
  const Constraint& constraint_;
  SearchOptions options_;
  int levels_;
};

}  // namespace atspeed::decode
