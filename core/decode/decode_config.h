// The `decode:` section (configs/decode/<name>.yaml) and the `eval:` section (configs/config.yaml).
// The constraint (trie or level) is data.constraint: it belongs to the dataset's index.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/decode/beam_search.h"
#include "core/decode/planner.h"
#include "core/decode/speculative.h"

namespace atspeed {

// Reads `key` of `s` as a DecodeMode (`mode` when absent); an unknown name fails naming the key and
// its file. The one place a mode is read from a config.
decode::DecodeMode read_mode(ConfigSection& s, const std::string& key, decode::DecodeMode mode);

struct DecodeConfig {
  std::string name = "beam";
  int64_t beam_width = 20;     // K when a command decodes with one width (eval uses eval.ks)
  bool sample = false;         // beam sampling (SPEC §2.1) instead of deterministic top-K
  double temperature = 1.0;    // sampling only
  int64_t top_k = 50;          // sampling only: per-row top-k warper (HF's default); 0 = off
  int64_t seed = 0;            // sampling only: request seeds are seed + user id
  std::string device = "auto"; // auto (cuda when available), cpu, cuda, cuda:N
  std::string dtype = "checkpoint";  // model weights: checkpoint (as stored), float32, bfloat16
  int64_t draft_width = 40;    // speculative: N draft beams per level (>= K)
  int64_t gamma = 4;           // speculative: drafted levels per round (SPEC §9.8)
  decode::DecodeMode verification = decode::DecodeMode::Strict;  // speculative: strict (AtSpeed-S) | relaxed (AtSpeed-R)
  decode::AutoOptions auto_plan;  // decode.auto: mode auto's planner (core/decode/planner.h)

  void read(ConfigSection& s);
  void validate() const;
  // The search options for beam width k (k <= 0: beam_width).
  decode::SearchOptions search_options(int64_t k = 0) const;
  // The speculative options for beam width k (k <= 0: beam_width); draft width max(N, k).
  decode::SpeculativeOptions speculative_options(int64_t k = 0) const;
  // run_batch() settings of `mode` at beam width k (gamma, N, warpers from this section).
  decode::RunSettings run_settings(decode::DecodeMode mode, int64_t k) const;
};

struct EvalConfig {
  std::string split = "test";             // test (history = train + valid) or valid (history = train)
  std::vector<int64_t> ks = {1, 3, 5, 10, 20};  // beam widths = cutoffs (Recall@K uses the beam-K list)
  int64_t max_users = 0;                  // evaluate the first N users of the split; 0 = all
  int64_t batch_size = 16;                // requests per forward
  std::string out;                        // JSON path; "" = <run.out_dir>/eval.json
  double log_every_s = 10.0;              // progress line interval
  decode::DecodeMode mode = decode::DecodeMode::Target;  // target, strict, relaxed or auto (strict/relaxed/auto need draft)
  std::string draft;                      // draft checkpoint for the speculative modes and auto

  void read(ConfigSection& s);
  void validate() const;
};

}  // namespace atspeed
