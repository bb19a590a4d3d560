// The planner behind mode `auto` (serve, eval, bench decode): per beam width K, the faster of the
// exact methods, target beam search or strict speculative decoding with the best (N, gamma), so that
// auto is never slower than beam search by more than the planner's errors.
//
// How it predicts. Each candidate (target beam search at K; strict at each (N, gamma) of the grid) is
// run once on the calibration prompts (validation users) in batches of the serving batch size, through
// scorers that record every forward's token count and wall time. A candidate's predicted time is
//   sum over its forwards of the cost model's time for that many tokens     (model time, medians)
// + its run's wall time minus the measured time of those forwards           (host time: selection,
//                                                                            masks, bookkeeping)
// so a noisy forward is replaced by the cost model's median, and what the cost model does not see
// (the host work of each method) is measured, not guessed. The acceptance of the draft enters through
// the recorded forwards (how many rounds, how big the trees). Strict is chosen only when predicted
// at least `min_speedup` times faster than target beam search.
//
// A plan is only valid for what it was measured on: the checkpoints, the device, dtype, threads,
// batch size, constraint and grid. PlanKey names all of it; plans are cached on disk under that key.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/decode/cost_model.h"
#include "core/decode/decode_mode.h"
#include "core/decode/runner.h"

namespace atspeed {
class Constraint;
}  // namespace atspeed

namespace atspeed::decode {

class TreeScorer;

struct PlannerOptions {
  std::vector<int64_t> ks{1, 3, 5, 10, 20};  // beam widths to plan
  std::vector<int64_t> draft_widths{0, 10, 20, 40};  // N candidates (0 = K; each raised to K; above max(40, K) dropped)
  std::vector<int64_t> gammas{1, 2, 3};      // gamma candidates
  int64_t batch_size = 1;                    // requests decoded together
  double min_speedup = 1.05;                 // strict must be predicted this much faster than target

  void validate() const;  // Error(Config) naming the field (decode.auto.*)
};

struct PlanChoice {
  int64_t k = 0;
  DecodeMode mode = DecodeMode::Target;  // target or strict
  int64_t draft_width = 0;               // strict only (N)
  int64_t gamma = 0;                     // strict only
  double target_s = 0;                   // predicted seconds per request, target beam search
  double strict_s = 0;                   // predicted seconds per request, best strict candidate (0: none ran)
  int64_t best_draft_width = 0, best_gamma = 0;  // that candidate (also when target was chosen)
  double accepted_levels_per_round = 0;  // its mean acceptance on the calibration users
  // The run settings of this choice (mode target or strict), the others taken from `base`.
  RunSettings settings(const RunSettings& base) const;
};

struct Plan {
  std::string key;                  // PlanKey::text() it was made for
  std::vector<PlanChoice> choices;  // ascending K
  // The choice for beam width k: the planned K's; for an unplanned k, the nearest planned K below it
  // (strict with N raised to k), target beam search above the largest planned K or below the smallest.
  PlanChoice choose(int64_t k) const;
};

// What a plan depends on. file identities: see file_identity().
struct PlanKey {
  std::string target, draft;        // file identities of the checkpoints
  std::string device, dtype, constraint;
  int threads = 0;
  int64_t batch_size = 1;
  int64_t calib_users = 0;
  std::vector<int64_t> ks, draft_widths, gammas;
  double min_speedup = 0;
  std::string text() const;         // one line naming every field
  // The key of checkpoints target_path/draft_path (by file_identity) under `planner`'s grid.
  static PlanKey of(const std::string& target_path, const std::string& draft_path, const std::string& device,
                    const std::string& dtype, const std::string& constraint, int threads, int64_t batch_size,
                    int64_t calib_users, const PlannerOptions& planner);
};

// "<absolute path> <size> <mtime>": changes whenever the file is rewritten.
std::string file_identity(const std::string& path);

// Runs the candidates and chooses (see the header comment). calib: the calibration prompts (at
// least one). cost: the cost model of both scorers on this machine. base: temperature etc.
Plan make_plan(TreeScorer& target, TreeScorer& draft, const Constraint& constraint,
               const std::vector<std::vector<int64_t>>& calib, const CostModel& cost, const PlannerOptions& options,
               const RunSettings& base = {});

// Mode auto's settings (the decode.auto config section).
struct AutoOptions {
  PlannerOptions planner;       // ks, draft_widths, gammas, min_speedup (batch_size: the caller's)
  int64_t calib_users = 64;     // validation users the candidates run on
  std::string cache_dir;        // plans are cached here; "" = default_plan_dir()
  bool cache = true;            // false: always measure (and do not write)
  CostOptions cost;
};
// ${ATSPEED_CACHE:-${XDG_CACHE_HOME:-~/.cache}/atspeed}/plans
std::string default_plan_dir();

// The prompt whose length is closest to the mean (the cost model's prompt).
std::vector<int64_t> typical_prompt(const std::vector<std::vector<int64_t>>& prompts);

// The plan for `key`: from the cache when there, else the cost model is measured, the plan made
// and cached. `from_cache` (optional) says which; `cost_out` (optional) gets the cost model when
// it was measured.
Plan load_or_make_plan(TreeScorer& target, TreeScorer& draft, const Constraint& constraint,
                       const std::vector<std::vector<int64_t>>& calib, const AutoOptions& options, const PlanKey& key,
                       const RunSettings& base = {}, bool* from_cache = nullptr, CostModel* cost_out = nullptr);

nlohmann::json to_json(const Plan& plan);
Plan plan_from_json(const nlohmann::json& j);

// The cached plan for `key` in `dir` (nullopt when absent, unreadable or made for another key).
std::optional<Plan> load_cached_plan(const std::string& dir, const PlanKey& key);
// Writes the plan atomically to dir/plan-<hash of key>.json; returns the path.
std::string save_plan(const std::string& dir, const Plan& plan);

}  // namespace atspeed::decode
