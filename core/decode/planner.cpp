#include "core/decode/planner.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/config.h"
#include "core/decode/trace.h"
#include "core/decode/tree_scorer.h"
#include "core/errors.h"
#include "core/io/text_file.h"

namespace atspeed::decode {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Prediction {
  double seconds_per_request = 0;
  double accepted_levels_per_round = 0;
};

// Runs `settings` on the calibration prompts in batches and predicts its time per request.
Prediction predict(TreeScorer& target, TreeScorer* draft, const Constraint& constraint, const RunSettings& settings,
                   const std::vector<std::vector<int64_t>>& calib, int64_t batch_size, const CostModel& cost) {
  ForwardTrace target_trace, draft_trace;
  TracingScorer rec_target(target, target_trace);
  std::optional<TracingScorer> rec_draft;
  if (draft != nullptr) rec_draft.emplace(*draft, draft_trace);
  const double measured_before =
      target.counters().forward_seconds + (draft != nullptr ? draft->counters().forward_seconds : 0.0);
  double wall = 0;
  int64_t rounds = 0, accepted = 0;
  for (size_t begin = 0; begin < calib.size(); begin += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(calib.size(), begin + static_cast<size_t>(batch_size));
    const std::vector<std::vector<int64_t>> prompts(calib.begin() + static_cast<std::ptrdiff_t>(begin),
                                                   calib.begin() + static_cast<std::ptrdiff_t>(end));
    const auto t = Clock::now();
    const auto out = run_batch(rec_target, rec_draft ? &*rec_draft : nullptr, constraint, settings, prompts);
    wall += since(t);
    for (const auto& o : out) {
      rounds += o.rounds;
      for (int64_t m : o.accepted_levels) accepted += m;
    }
  }
  // The forwards' own time (the scorers' counters; every forward was read, so complete on a GPU too).
  const double measured =
      target.counters().forward_seconds + (draft != nullptr ? draft->counters().forward_seconds : 0.0) - measured_before;
  double model = target_trace.modelled_s(cost.target);
  if (draft != nullptr) model += draft_trace.modelled_s(cost.draft);
  const double host = std::max(0.0, wall - measured);
  Prediction p;
  p.seconds_per_request = (model + host) / static_cast<double>(calib.size());
  p.accepted_levels_per_round = rounds > 0 ? static_cast<double>(accepted) / static_cast<double>(rounds) : 0.0;
  return p;
}

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

void PlannerOptions::validate() const {
  config_ensure(!ks.empty() && std::all_of(ks.begin(), ks.end(), [](int64_t k) { return k >= 1; }), "decode.auto.ks",
                "must be a non-empty list of beam widths >= 1");
  config_ensure(!draft_widths.empty() && std::all_of(draft_widths.begin(), draft_widths.end(), [](int64_t n) { return n >= 0; }),
                "decode.auto.draft_widths", "must be a non-empty list of widths >= 0 (0 = K)");
  config_ensure(!gammas.empty() && std::all_of(gammas.begin(), gammas.end(), [](int64_t g) { return g >= 1; }),
                "decode.auto.gammas", "must be a non-empty list of values >= 1");
  config_ensure(batch_size >= 1, "decode.auto.batch_size", "must be >= 1");
  for (const auto& [list, key] : {std::pair{&ks, "decode.auto.ks"}, std::pair{&draft_widths, "decode.auto.draft_widths"},
                                  std::pair{&gammas, "decode.auto.gammas"}}) {
    config_ensure(std::set<int64_t>(list->begin(), list->end()).size() == list->size(), key, "lists a value twice");
  }
  config_ensure(min_speedup >= 1.0, "decode.auto.min_speedup", "must be >= 1 (strict must be predicted faster)");
}

RunSettings PlanChoice::settings(const RunSettings& base) const {
  RunSettings s = base;
  s.mode = mode;
  s.k = k;
  s.sample = false;
  if (mode.is_strict()) {
    s.draft_width = draft_width;
    s.gamma = gamma;
  }
  return s;
}

PlanChoice Plan::choose(int64_t k) const {
  const PlanChoice* below = nullptr;
  for (const auto& c : choices) {
    if (c.k == k) return c;
    if (c.k < k) below = &c;
  }
  PlanChoice out;
  out.k = k;
  if (below != nullptr && below != &choices.back() && below->mode.is_strict()) {
    out.mode = DecodeMode::Strict;
    out.draft_width = effective_draft_width(below->draft_width, k);
    out.gamma = below->gamma;
  }
  return out;
}

std::string PlanKey::text() const {
  return fmt::format("plan-v1 target={} draft={} device={} dtype={} constraint={} threads={} batch={} calib_users={} "
                     "ks={} draft_widths={} gammas={} min_speedup={}",
                     target, draft, device, dtype, constraint, threads, batch_size, calib_users, fmt::join(ks, ","),
                     fmt::join(draft_widths, ","), fmt::join(gammas, ","), min_speedup);
}

PlanKey PlanKey::of(const std::string& target_path, const std::string& draft_path, const std::string& device,
                    const std::string& dtype, const std::string& constraint, int threads, int64_t batch_size,
                    int64_t calib_users, const PlannerOptions& planner) {
  PlanKey key;
  key.target = file_identity(target_path);
  key.draft = file_identity(draft_path);
  key.device = device;
  key.dtype = dtype;
  key.constraint = constraint;
  key.threads = threads;
  key.batch_size = batch_size;
  key.calib_users = calib_users;
  key.ks = planner.ks;
  key.draft_widths = planner.draft_widths;
  key.gammas = planner.gammas;
  key.min_speedup = planner.min_speedup;
  return key;
}

std::string file_identity(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path abs = fs::absolute(path, ec);
  const auto size = fs::file_size(path, ec);
  const auto mtime = fs::last_write_time(path, ec).time_since_epoch().count();
  return fmt::format("{}:{}:{}", abs.string(), ec ? 0 : size, ec ? 0 : mtime);
}

Plan make_plan(TreeScorer& target, TreeScorer& draft, const Constraint& constraint,
               const std::vector<std::vector<int64_t>>& calib, const CostModel& cost, const PlannerOptions& options,
               const RunSettings& base) {
  options.validate();
  ATSPEED_CHECK(!calib.empty(), "make_plan: no calibration prompts");
  ATSPEED_CHECK(cost.has_draft(), "make_plan: the cost model has no draft curve");
  Plan plan;
  std::vector<int64_t> ks = options.ks;
  std::sort(ks.begin(), ks.end());
  ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
  for (int64_t k : ks) {
    PlanChoice c;
    c.k = k;
    RunSettings t = base;
    t.mode = DecodeMode::Target;
    t.k = k;
    t.sample = false;
    c.target_s = predict(target, nullptr, constraint, t, calib, options.batch_size, cost).seconds_per_request;
    std::vector<int64_t> ns;
    for (int64_t n : options.draft_widths) {
      const int64_t nn = effective_draft_width(n, k);
      if (nn <= std::max<int64_t>(40, k)) ns.push_back(nn);
    }
    std::sort(ns.begin(), ns.end());
    ns.erase(std::unique(ns.begin(), ns.end()), ns.end());
    for (int64_t n : ns) {
      for (int64_t g : options.gammas) {
        RunSettings s = base;
        s.mode = DecodeMode::Strict;
        s.k = k;
        s.draft_width = n;
        s.gamma = g;
        const Prediction p = predict(target, &draft, constraint, s, calib, options.batch_size, cost);
        if (c.strict_s == 0 || p.seconds_per_request < c.strict_s) {
          c.strict_s = p.seconds_per_request;
          c.best_draft_width = n;
          c.best_gamma = g;
          c.accepted_levels_per_round = p.accepted_levels_per_round;
        }
      }
    }
    if (c.strict_s > 0 && c.target_s >= options.min_speedup * c.strict_s) {
      c.mode = DecodeMode::Strict;
      c.draft_width = c.best_draft_width;
      c.gamma = c.best_gamma;
    }
    spdlog::info("auto K={}: {} (predicted ms/request: target {:.3f}, best strict N={} gamma={} {:.3f}, {:.2f} levels/round)",
                 k, c.mode.is_strict() ? fmt::format("strict N={} gamma={}", c.draft_width, c.gamma) : "target beam search",
                 c.target_s * 1e3, c.best_draft_width, c.best_gamma, c.strict_s * 1e3, c.accepted_levels_per_round);
    plan.choices.push_back(c);
  }
  return plan;
}

std::string default_plan_dir() {
  if (const char* c = std::getenv("ATSPEED_CACHE"); c != nullptr && *c != '\0') return std::string(c) + "/plans";
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x != '\0') return std::string(x) + "/atspeed/plans";
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : ".") + "/.cache/atspeed/plans";
}

std::vector<int64_t> typical_prompt(const std::vector<std::vector<int64_t>>& prompts) {
  ATSPEED_CHECK(!prompts.empty(), "typical_prompt: no prompts");
  double mean = 0;
  for (const auto& p : prompts) mean += static_cast<double>(p.size());
  mean /= static_cast<double>(prompts.size());
  const std::vector<int64_t>* best = &prompts.front();
  for (const auto& p : prompts) {
    if (std::abs(static_cast<double>(p.size()) - mean) < std::abs(static_cast<double>(best->size()) - mean)) best = &p;
  }
  return *best;
}

Plan load_or_make_plan(TreeScorer& target, TreeScorer& draft, const Constraint& constraint,
                       const std::vector<std::vector<int64_t>>& calib, const AutoOptions& options, const PlanKey& key,
                       const RunSettings& base, bool* from_cache, CostModel* cost_out) {
  const std::string dir = options.cache_dir.empty() ? default_plan_dir() : options.cache_dir;
  if (options.cache) {
    if (auto cached = load_cached_plan(dir, key)) {
      if (from_cache) *from_cache = true;
      spdlog::info("auto: plan from the cache ({} K)", cached->choices.size());
      return *cached;
    }
  }
  if (from_cache) *from_cache = false;
  if (static_cast<int64_t>(calib.size()) < 4 * key.batch_size) {
    // Seen on an H200: 16 users in batches of 8 predicted strict 1.11x faster; it ran at 0.88x.
    spdlog::warn("auto: {} calibration users make only {} batches of {}: the host time of each candidate is measured "
                 "on too few; raise decode.auto.calib_users to at least {}",
                 calib.size(), (static_cast<int64_t>(calib.size()) + key.batch_size - 1) / key.batch_size,
                 key.batch_size, 4 * key.batch_size);
  }
  const auto t = Clock::now();
  const std::vector<int64_t> prompt = typical_prompt(calib);
  CostOptions co = options.cost;
  int64_t max_n = 0;
  for (int64_t k : options.planner.ks) {
    for (int64_t n : options.planner.draft_widths) max_n = std::max(max_n, effective_draft_width(n, k));
  }
  co.ns.push_back(3 * max_n);  // the biggest verification tree the grid drafts
  std::sort(co.ns.begin(), co.ns.end());
  co.ns.erase(std::unique(co.ns.begin(), co.ns.end()), co.ns.end());
  CostModel cost;
  cost.target = measure_cost(target, prompt, co);
  cost.draft = measure_cost(draft, prompt, co);
  PlannerOptions po = options.planner;
  po.batch_size = key.batch_size;
  Plan plan = make_plan(target, draft, constraint, calib, cost, po, base);
  plan.key = key.text();
  spdlog::info("auto: planned {} K on {} calibration users in {:.1f} s", plan.choices.size(), calib.size(), since(t));
  if (options.cache) {
    try {
      spdlog::info("auto: plan cached in {}", save_plan(dir, plan));
    } catch (const Error& e) {
      spdlog::warn("auto: could not cache the plan in {}: {}", dir, e.message());
    }
  }
  if (cost_out) *cost_out = cost;
  return plan;
}

nlohmann::json to_json(const Plan& plan) {
  nlohmann::json choices = nlohmann::json::array();
  for (const auto& c : plan.choices) {
    choices.push_back({{"k", c.k}, {"mode", c.mode.name()}, {"draft_width", c.draft_width}, {"gamma", c.gamma},
                       {"target_s", c.target_s}, {"strict_s", c.strict_s}, {"best_draft_width", c.best_draft_width},
                       {"best_gamma", c.best_gamma}, {"accepted_levels_per_round", c.accepted_levels_per_round}});
  }
  return {{"key", plan.key}, {"choices", choices}};
}

Plan plan_from_json(const nlohmann::json& j) {
  Plan plan;
  plan.key = j.at("key").get<std::string>();
  for (const auto& c : j.at("choices")) {
    PlanChoice p;
    p.k = c.at("k").get<int64_t>();
    p.mode = DecodeMode::parse(c.at("mode").get<std::string>(), "plan.mode");
    p.draft_width = c.at("draft_width").get<int64_t>();
    p.gamma = c.at("gamma").get<int64_t>();
    p.target_s = c.at("target_s").get<double>();
    p.strict_s = c.at("strict_s").get<double>();
    p.best_draft_width = c.at("best_draft_width").get<int64_t>();
    p.best_gamma = c.at("best_gamma").get<int64_t>();
    p.accepted_levels_per_round = c.at("accepted_levels_per_round").get<double>();
    plan.choices.push_back(p);
  }
  return plan;
}

namespace {
std::string plan_path(const std::string& dir, const std::string& key_text) {
  return (std::filesystem::path(dir) / fmt::format("plan-{:016x}.json", fnv1a64(key_text))).string();
}
}  // namespace

std::optional<Plan> load_cached_plan(const std::string& dir, const PlanKey& key) {
  const std::string text = key.text();
  const std::string path = plan_path(dir, text);
  if (!std::filesystem::exists(path)) return std::nullopt;
  try {
    Plan p = plan_from_json(nlohmann::json::parse(read_text_file(path)));
    if (p.key != text) return std::nullopt;  // a hash collision or another version
    return p;
  } catch (const std::exception& e) {
    spdlog::warn("ignoring the unreadable plan cache {}: {}", path, e.what());
    return std::nullopt;
  }
}

std::string save_plan(const std::string& dir, const Plan& plan) {
  const std::string path = plan_path(dir, plan.key);
  write_text_file_atomic(path, to_json(plan).dump(2) + "\n");
  return path;
}

}  // namespace atspeed::decode
