// `atspeed bench decode`: latency of the decoding methods on test users, measured interleaved in one
// run (SPEC §5.2, §9.10): target beam search and target beam sampling (the baselines), the naive
// per-beam-cache beam search (what HF generate does), AtSpeed-S (strict), AtSpeed-R (relaxed) and
// `auto` (per K the planner's choice among the exact methods, core/decode/planner.h). For every K
// and batch size: median and p90 latency per request, speedup (mean of per-request ratios and ratio
// of totals, each against its own baseline), accepted levels per round, target forwards per request,
// Recall@K / NDCG@K, and for the exact methods the share identical to target beam search and the
// near-tie flips (core/metrics/agreement.h). Before that, the cost model (core/decode/cost_model.h)
// and the ideal speedup if every drafted level were accepted. Prints tables, writes JSON and (with
// python3 + matplotlib) a PNG plot.
//
// Methods run interleaved per batch, in alternating order. A method configuration is identified by its full settings (kind, N, gamma): a configuration named
// twice (--draft-widths 0 5 at K = 5) runs once, and every result is kept by its configuration's
// index, never by its display name, so results cannot be paired with another run's users.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "core/config.h"
#include "core/config_types.h"
#include "core/decode/beam_search.h"
#include "core/decode/cost_model.h"
#include "core/decode/decode_config.h"
#include "core/decode/planner.h"
#include "core/decode/runner.h"
#include "core/decode/trace.h"
#include "core/decode/tree_scorer.h"
#include "core/errors.h"
#include "core/io/checkpoint.h"
#include "core/io/text_file.h"
#include "core/metrics/agreement.h"
#include "core/metrics/metrics.h"
#include "core/progress.h"
#include "core/vocab/constraint.h"
#include "data/data_config.h"
#include "data/dataset.h"
#include "data/evaluation.h"
#include "data/samples.h"
#include "launch/commands.h"
#include "launch/model_loading.h"

namespace fs = std::filesystem;

namespace atspeed::launch {
namespace {

struct BenchDecodeOptions {
  std::string target, draft;
  std::vector<int64_t> ks{1, 3, 5, 10, 20};
  int64_t users = 200;                       // test users (seeded sample); 0 = all
  std::vector<int64_t> batch_sizes{1, 8};
  std::vector<std::string> methods{"target", "sampling", "naive", "strict", "relaxed", "auto"};
  std::vector<int64_t> draft_widths;         // strict runs once per N; 0 means N = K; default decode.draft_width
  int64_t calib_users = 0;                   // validation users for auto; 0 = decode.auto.calib_users
  int64_t naive_max_k = 20;                  // the naive baseline is slow: skip it above this K
  std::string json, plot;
  // Projection: a bench forward JSON measured elsewhere and the two presets in it that price this
  // run's traces (target and draft forwards).
  std::string project;
  std::string project_target = "target_llama7b", project_draft = "draft_llama68m";
  std::vector<std::string> overrides;

  // Error(Usage) naming the option: empty lists, values out of range, a value listed twice.
  void validate() const;
};

template <typename T>
void ensure_distinct(const std::vector<T>& v, const char* option) {
  std::set<T> seen;
  for (const auto& x : v) {
    ATSPEED_ENSURE(Usage, seen.insert(x).second, option, " lists ", x, " twice");
  }
}

void BenchDecodeOptions::validate() const {
  ATSPEED_ENSURE(Usage, !target.empty(), "bench decode needs --target CKPT (a train-target checkpoint)");
  ATSPEED_ENSURE(Usage, !ks.empty() && std::all_of(ks.begin(), ks.end(), [](int64_t k) { return k >= 1; }),
                 "--ks: list of beam widths >= 1");
  ATSPEED_ENSURE(Usage, !batch_sizes.empty() && std::all_of(batch_sizes.begin(), batch_sizes.end(), [](int64_t b) { return b >= 1; }),
                 "--batch-sizes: list of sizes >= 1");
  ATSPEED_ENSURE(Usage, std::all_of(draft_widths.begin(), draft_widths.end(), [](int64_t n) { return n >= 0; }),
                 "--draft-widths: list of widths >= 0 (0 = N = K)");
  ATSPEED_ENSURE(Usage, users >= 0, "--users must be >= 0 (0 = all)");
  ATSPEED_ENSURE(Usage, calib_users >= 0, "--calib-users must be >= 0");
  const std::set<std::string> known{"target", "sampling", "naive", "strict", "relaxed", "auto"};
  for (const auto& m : methods) {
    ATSPEED_ENSURE(Usage, known.count(m), "--methods: unknown method '", m, "' (known: target sampling naive strict relaxed auto)");
  }
  ensure_distinct(ks, "--ks");
  ensure_distinct(batch_sizes, "--batch-sizes");
  ensure_distinct(draft_widths, "--draft-widths");
  ensure_distinct(methods, "--methods");
  const bool needs_draft = std::any_of(methods.begin(), methods.end(), [](const std::string& m) {
    return m == "strict" || m == "relaxed" || m == "auto";
  });
  ATSPEED_ENSURE(Usage, !needs_draft || !draft.empty(), "methods strict/relaxed/auto need --draft CKPT");
}

// One method's outcome for one request.
struct Row {
  double latency = 0;  // seconds (batch wall time: requests of a batch finish together)
  double share = 0;    // latency / requests in the batch: the request's share of the total time
  decode::RunOutput out;
  // The batch's forward traces priced by a cost model (seconds, the whole batch): this machine's
  // (measured at the start of the run) and the projection's (--project), 0 without one.
  double model_local_s = 0, model_projected_s = 0;
};

// A method configuration: its identity is (kind, n, gamma, sample); name is for display only.
struct MethodSpec {
  std::string name;      // e.g. "strict(N=40)", "auto(target)"
  std::string kind;      // target | sampling | naive | strict | relaxed
  int64_t n = 0, gamma = 0;
  std::string baseline;  // target | sampling: the configuration it is compared with
  bool same_config(const MethodSpec& o) const { return kind == o.kind && n == o.n && gamma == o.gamma; }
};

// Adds `spec` unless a configuration with the same settings is there already (its name then stays).
void add_spec(std::vector<MethodSpec>& specs, MethodSpec spec) {
  for (const auto& s : specs) {
    if (s.same_config(spec)) return;
  }
  specs.push_back(std::move(spec));
}

// Everything a bench run decodes with, loaded once.
struct BenchSetup {
  Dataset ds;
  at::Device device = at::kCPU;
  model::LlamaModel target_model{nullptr}, draft_model{nullptr};
  std::unique_ptr<decode::LlamaTreeScorer> target_scorer, draft_scorer;
  std::unique_ptr<Constraint> constraint;
  std::unique_ptr<PromptFormat> format;
  EvalUsers users;
  decode::CostModel local_cost;                  // this machine's, measured before the runs
  std::optional<decode::CostModel> projected_cost;  // --project's
};

// The cost models of presets `target` and `draft` in a bench forward JSON (`atspeed bench forward
// --json`), for projections. Error(Usage) naming the file and what is missing.
decode::CostModel read_projection(const std::string& path, const std::string& target, const std::string& draft) {
  ATSPEED_ENSURE(Usage, fs::exists(path), "--project ", path, ": no such file (a JSON of `atspeed bench forward`)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    ATSPEED_THROW(Usage, "--project ", path, ": not JSON (", e.what(), ")");
  }
  ATSPEED_ENSURE(Usage, j.contains("models") && j["models"].is_array(), "--project ", path,
                 ": no \"models\" list (a JSON of `atspeed bench forward`)");
  decode::CostModel out;
  for (const auto& [name, curve] : {std::pair{target, &out.target}, std::pair{draft, &out.draft}}) {
    bool found = false;
    std::vector<std::string> have;
    for (const auto& m : j["models"]) {
      have.push_back(m.value("model", std::string("?")));
      if (m.value("model", std::string()) != name) continue;
      try {
        *curve = decode::cost_curve_from_json(m.at("cost"));
      } catch (const nlohmann::json::exception& e) {
        ATSPEED_THROW(Usage, "--project ", path, ": model ", name, " has no readable cost curve (", e.what(), ")");
      }
      found = true;
    }
    ATSPEED_ENSURE(Usage, found, "--project ", path, ": no model '", name, "' (it has: ", fmt::format("{}", fmt::join(have, ", ")),
                   "); choose with --project-target / --project-draft");
  }
  return out;
}

BenchSetup load_bench(const BenchDecodeOptions& o, DataConfig data, const DecodeConfig& dec, const RunConfig& run,
                      bool needs_draft) {
  BenchSetup b;
  const CheckpointReader target_reader(o.target);
  std::unique_ptr<CheckpointReader> draft_reader;
  if (needs_draft) draft_reader = std::make_unique<CheckpointReader>(o.draft);
  apply_prompt_settings(target_reader, data);  // before the dataset: the layout and tokenizer decide its vocabulary
  b.ds = load_dataset(data);
  b.device = resolve_device(dec.device);
  b.target_model = load_model_for(target_reader, b.ds, b.device, "target", dec.dtype);
  if (draft_reader) b.draft_model = load_model_for(*draft_reader, b.ds, b.device, "draft", dec.dtype);
  if (b.draft_model) warn_if_draft_larger(*b.target_model, *b.draft_model, o.target, o.draft);
  b.format = std::make_unique<PromptFormat>(b.ds.catalog, data.layout());
  b.constraint = make_constraint(data.constraint, *b.ds.catalog);
  b.users = make_eval_users(b.ds, *b.format, "test", data.history_len, o.users, static_cast<uint64_t>(run.seed), dec.seed);
  b.target_scorer = std::make_unique<decode::LlamaTreeScorer>(b.target_model);
  if (b.draft_model) b.draft_scorer = std::make_unique<decode::LlamaTreeScorer>(b.draft_model);
  return b;
}

// The cost model (batch 1, the prompt of typical length), printed, with the ideal speedup if every
// drafted level were accepted; returns its JSON.
nlohmann::json measure_cost_model(BenchSetup& b, const BenchDecodeOptions& o) {
  const auto& users = b.users;
  decode::TreeScorer& target_scorer = *b.target_scorer;
  decode::TreeScorer* draft_ptr = b.draft_scorer.get();
  const std::vector<int64_t> prompt = decode::typical_prompt(users.prompts);
  const int64_t max_n = *std::max_element(o.draft_widths.begin(), o.draft_widths.end());
  const int64_t max_k = *std::max_element(o.ks.begin(), o.ks.end());
  decode::CostOptions co;
  co.ns.push_back(3 * std::max(max_n, max_k));
  std::sort(co.ns.begin(), co.ns.end());
  co.ns.erase(std::unique(co.ns.begin(), co.ns.end()), co.ns.end());
  decode::CostModel& cost = b.local_cost;
  cost.target = decode::measure_cost(target_scorer, prompt, co);
  if (draft_ptr) cost.draft = decode::measure_cost(*draft_ptr, prompt, co);
  std::cout << fmt::format("\ncost model (prompt {} tokens, batch 1): forward ms against new tokens n (median [IQR] of {})\n",
                           prompt.size(), co.reps);
  std::cout << fmt::format("{:>6} {:>24} {:>24}\n", "n", "target", "draft");
  auto cell = [](const decode::CostPoint& p) {
    return fmt::format("{:.3f} [{:.3f}-{:.3f}]", p.median_s * 1e3, p.q1_s * 1e3, p.q3_s * 1e3);
  };
  nlohmann::json cost_json = {{"prompt_tokens", prompt.size()}, {"points", nlohmann::json::array()}};
  for (size_t i = 0; i < co.ns.size(); ++i) {
    const decode::CostPoint& t = cost.target.points[i];
    const decode::CostPoint d = cost.has_draft() ? cost.draft.points[i] : decode::CostPoint{};
    std::cout << fmt::format("{:>6} {:>24} {:>24}\n", co.ns[i], cell(t), cost.has_draft() ? cell(d) : "-");
    cost_json["points"].push_back({{"n", co.ns[i]}, {"target_s", t.median_s}, {"draft_s", d.median_s},
                                   {"target_q1_s", t.q1_s}, {"target_q3_s", t.q3_s}, {"draft_q1_s", d.q1_s},
                                   {"draft_q3_s", d.q3_s}});
  }
  std::cout << fmt::format("prefill ms: target {:.3f}, draft {:.3f}; fit extend(n) = a + b n: target {:.3f} + {:.4f} n ms, draft {:.3f} + {:.4f} n ms\n",
                           cost.target.prefill_s * 1e3, cost.draft.prefill_s * 1e3, cost.target.a_s * 1e3,
                           cost.target.b_s * 1e3, cost.draft.a_s * 1e3, cost.draft.b_s * 1e3);
  cost_json["target"] = {{"prefill_s", cost.target.prefill_s}, {"a_s", cost.target.a_s}, {"b_s", cost.target.b_s}};
  cost_json["draft"] = {{"prefill_s", cost.draft.prefill_s}, {"a_s", cost.draft.a_s}, {"b_s", cost.draft.b_s}};
  // Ideal: every drafted level accepted in round 1 (d = 3 of 4 levels): draft prefill + 2 draft
  // steps of N nodes + one target forward over the prompt and 3N nodes (prefill + extend(3N) less
  // the extend's fixed cost a, paid once), against target prefill + 3 steps of K.
  nlohmann::json ideal = nlohmann::json::array();
  if (cost.has_draft()) {
    std::cout << "ideal speedup if every level were accepted (cost model):\n";
    for (int64_t k : o.ks) {
      const int64_t n = decode::effective_draft_width(o.draft_widths[0], k);
      const double base = cost.target.prefill_s + 3 * cost.target.extend_s(k);
      const double spec = cost.draft.prefill_s + 2 * cost.draft.extend_s(n) + cost.target.prefill_s +
                          cost.target.extend_s(3 * n) - cost.target.a_s;
      std::cout << fmt::format("  K={:<3} N={:<3} {:.2f}x\n", k, n, base / spec);
      ideal.push_back({{"k", k}, {"n", n}, {"ideal_speedup", base / spec}, {"baseline_s", base}, {"speculative_s", spec}});
    }
  }
  cost_json["ideal"] = ideal;
  return cost_json;
}

// auto's plans, one per batch size (a plan is only valid for the batch size it was made for);
// their choices go into `auto_json`.
std::map<int64_t, decode::Plan> plan_auto(BenchSetup& b, const BenchDecodeOptions& o, const DecodeConfig& dec,
                                          const DataConfig& data, nlohmann::json& auto_json) {
  const auto& ds = b.ds;
  const auto& format = *b.format;
  const auto& constraint = b.constraint;
  const at::Device device = b.device;
  decode::TreeScorer& target_scorer = *b.target_scorer;
  decode::TreeScorer* draft_ptr = b.draft_scorer.get();
  std::map<int64_t, decode::Plan> plans;
  decode::AutoOptions ao = dec.auto_plan;
  ao.planner.ks = o.ks;
  if (o.calib_users > 0) ao.calib_users = o.calib_users;
  const EvalUsers calib = make_eval_users(ds, format, "valid", data.history_len, ao.calib_users, std::nullopt, dec.seed);
  std::cout << fmt::format("\nauto: planning K = {} on {} validation users\n", fmt::join(o.ks, ","), calib.size());
  for (int64_t bs : o.batch_sizes) {
    const auto key = decode::PlanKey::of(o.target, o.draft, device.str(), dec.dtype, constraint->name(),
                                         at::get_num_threads(), bs, static_cast<int64_t>(calib.size()), ao.planner);
    bool from_cache = false;
    plans[bs] = decode::load_or_make_plan(target_scorer, *draft_ptr, *constraint, calib.prompts, ao, key,
                                          dec.run_settings(decode::DecodeMode::Strict, 0), &from_cache);
    for (const auto& c : plans[bs].choices) {
      std::cout << fmt::format("  batch {} K={:<3} {}  (predicted ms/request: target {:.3f}, strict N={} gamma={} {:.3f})\n",
                               bs, c.k, c.mode.is_strict() ? fmt::format("strict N={} gamma={}", c.draft_width, c.gamma)
                                                           : std::string("target beam search"),
                               c.target_s * 1e3, c.best_draft_width, c.best_gamma, c.strict_s * 1e3);
      auto_json.push_back({{"batch_size", bs}, {"k", c.k}, {"mode", c.mode.name()}, {"n", c.draft_width},
                           {"gamma", c.gamma}, {"predicted_target_ms", c.target_s * 1e3},
                           {"predicted_strict_ms", c.strict_s * 1e3}, {"best_n", c.best_draft_width},
                           {"best_gamma", c.best_gamma}, {"min_speedup", ao.planner.min_speedup},
                           {"from_cache", from_cache}});
    }
  }
  return plans;
}

// The configurations run at K with batch size bs: each listed method once per distinct setting,
// then auto's choice as its own configuration, timed from its own runs even when it equals another.
struct Specs {
  std::vector<MethodSpec> list;
  std::optional<size_t> auto_index;
  // The plain configuration of `kind` (target or sampling), never auto's.
  std::optional<size_t> index_of(const std::string& kind) const {
    for (size_t i = 0; i < list.size(); ++i) {
      if (list[i].kind == kind && list[i].n == 0 && (!auto_index || i != *auto_index)) return i;
    }
    return std::nullopt;
  }
};

Specs method_specs(const BenchDecodeOptions& o, const DecodeConfig& dec, int64_t k, const decode::Plan* plan) {
  Specs out;
  std::vector<MethodSpec>& specs = out.list;
  for (const auto& m : o.methods) {
    if (m == "target") add_spec(specs, {"target", "target", 0, 0, "target"});
    if (m == "sampling") add_spec(specs, {"sampling", "sampling", 0, 0, "sampling"});
    if (m == "naive" && k <= o.naive_max_k) add_spec(specs, {"naive", "naive", 0, 0, "target"});
    if (m == "strict") {
      for (int64_t n : o.draft_widths) {
        const int64_t nn = decode::effective_draft_width(n, k);
        add_spec(specs, {fmt::format("strict(N={})", nn), "strict", nn, dec.gamma, "target"});
      }
    }
    if (m == "relaxed") {
      const int64_t nn = decode::effective_draft_width(dec.draft_width, k);
      add_spec(specs, {fmt::format("relaxed(N={})", nn), "relaxed", nn, dec.gamma, "sampling"});
    }
  }
  // Every speedup is against a baseline decoded side by side: add it when --methods left it out
  // (a relaxed row without target beam sampling used to report 1.00x against itself).
  for (const std::string base : {"target", "sampling"}) {
    bool needed = base == "target" && plan != nullptr;
    for (const auto& s : specs) needed = needed || s.baseline == base;
    if (needed) add_spec(specs, {base, base, 0, 0, base});
  }
  if (plan != nullptr) {
    const decode::PlanChoice c = plan->choose(k);
    out.auto_index = specs.size();
    if (c.mode.is_strict()) {
      specs.push_back({fmt::format("auto(N={},g={})", c.draft_width, c.gamma), "strict", c.draft_width, c.gamma, "target"});
    } else {
      specs.push_back({"auto(target)", "target", 0, 0, "target"});
    }
  }
  return out;
}

// Every configuration on every batch of `bs` users: interleaved (every method on a batch before the
// next batch) in alternating order, forward on even batches and backward on odd ones, so running
// first or last (warm caches, a burst of load) favours no method. Rows are kept by configuration
// index and user position.
std::vector<std::vector<Row>> run_interleaved(BenchSetup& b, const Specs& specs, const DecodeConfig& dec, int64_t k,
                                              int64_t bs, ProgressBar& bar, int64_t& work) {
  const auto& users = b.users;
  const auto& spec_list = specs.list;
  std::vector<std::vector<Row>> rows(spec_list.size());
  for (size_t begin = 0; begin < users.size(); begin += static_cast<size_t>(bs)) {
    const size_t end = std::min(users.size(), begin + static_cast<size_t>(bs));
    const std::vector<std::vector<int64_t>> prompts(users.prompts.begin() + static_cast<std::ptrdiff_t>(begin),
                                                    users.prompts.begin() + static_cast<std::ptrdiff_t>(end));
    const std::vector<uint64_t> seeds(users.seeds.begin() + static_cast<std::ptrdiff_t>(begin),
                                      users.seeds.begin() + static_cast<std::ptrdiff_t>(end));
    // Interleaved: every method on this batch before the next batch, in alternating order (forward
    // on even batches, backward on odd ones) so that running first or last (warm caches, a burst
    // of load) favours no method.
    const bool backward = (begin / static_cast<size_t>(bs)) % 2 == 1;
    for (size_t step = 0; step < spec_list.size(); ++step) {
      const size_t si = backward ? spec_list.size() - 1 - step : step;
      const MethodSpec& spec = spec_list[si];
      std::vector<decode::RunOutput> res;
      double model_local = 0, model_projected = 0;
      if (spec.kind == "naive") {
        const auto t0 = std::chrono::steady_clock::now();
        const auto naive = decode::NaiveBeamSearch(b.target_model, *b.constraint, dec.search_options(k)).run(prompts, seeds);
        const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        for (const auto& r : naive) {
          decode::RunOutput ro;
          ro.beams = r.beams;
          ro.target_forwards = r.stats.forward_calls;
          ro.seconds = t;
          res.push_back(std::move(ro));
        }
      } else {
        decode::RunSettings s = dec.run_settings(spec.kind == "sampling" ? decode::DecodeMode::Target
                                                                         : *decode::DecodeMode::from_name(spec.kind), k);
        s.sample = spec.kind == "sampling";
        if (spec.n > 0) s.draft_width = spec.n;
        if (spec.gamma > 0) s.gamma = spec.gamma;
        // Through tracing scorers: the batch's forwards, priced below by the cost models.
        decode::ForwardTrace target_trace, draft_trace;
        decode::TracingScorer target(*b.target_scorer, target_trace);
        std::optional<decode::TracingScorer> draft;
        if (b.draft_scorer) draft.emplace(*b.draft_scorer, draft_trace);
        res = decode::run_batch(target, draft ? &*draft : nullptr, *b.constraint, s, prompts, seeds);
        model_local = target_trace.modelled_s(b.local_cost.target) +
                      (b.local_cost.has_draft() ? draft_trace.modelled_s(b.local_cost.draft) : 0.0);
        if (b.projected_cost) {
          model_projected = target_trace.modelled_s(b.projected_cost->target) + draft_trace.modelled_s(b.projected_cost->draft);
        }
      }
      for (auto& r : res) {
        const double t = r.seconds;
        rows[si].push_back({t, t / static_cast<double>(res.size()), std::move(r), model_local, model_projected});
      }
    }
    work += static_cast<int64_t>(end - begin);
    bar.update(work, fmt::format("K={} batch {}", k, bs));
  }
  return rows;
}

// One JSON row per configuration: latency, speedup against its baseline, forwards, acceptance,
// Recall/NDCG, and for the exact speculative configurations (and auto) the strict invariant's judge.
void summarize(const BenchSetup& b, const Specs& specs, const std::vector<std::vector<Row>>& rows, int64_t k,
               int64_t bs, nlohmann::json& results) {
  const auto& ds = b.ds;
  const auto& users = b.users;
  const auto& auto_index = specs.auto_index;
  auto index_of = [&](const std::string& kind) { return specs.index_of(kind); };
  const auto target_i = index_of("target");
  for (size_t si = 0; si < specs.list.size(); ++si) {
    const MethodSpec& spec = specs.list[si];
    const auto base_i = index_of(spec.baseline);
    const auto& list = rows[si];
    const auto& base = base_i ? rows[*base_i] : list;
    ATSPEED_CHECK(base.size() == list.size(), "bench decode: ", spec.name, " and its baseline decoded different users");
    std::vector<double> lat;
    double ratio_sum = 0, total = 0, base_total = 0, tf = 0, df = 0, rounds = 0, accepted = 0;
    // The time split and host traffic, each batch counted once (a request's share is 1 / batch).
    double target_fwd_s = 0, draft_fwd_s = 0, copies = 0, bytes = 0, forwards = 0;
    // Projections (totals over the batches, like speedup_total): the traces priced by a cost model.
    double model_local = 0, base_model_local = 0, model_proj = 0, base_model_proj = 0, base_fwd_s = 0;
    int64_t identical = 0, near_tie = 0, cascade = 0, mismatch = 0;
    metrics::TopKAccumulator acc({k});
    // The exact speculative configurations (and auto, whatever it chose) against target beam search.
    const bool judged = target_i && si != *target_i && (spec.kind == "strict" || (auto_index && si == *auto_index));
    for (size_t u = 0; u < list.size(); ++u) {
      const Row& r = list[u];
      lat.push_back(r.latency);
      total += r.share;
      base_total += base[u].share;
      ratio_sum += base[u].latency / r.latency;
      tf += static_cast<double>(r.out.target_forwards);
      df += static_cast<double>(r.out.draft_forwards);
      rounds += static_cast<double>(r.out.rounds);
      for (int64_t m : r.out.accepted_levels) accepted += static_cast<double>(m);
      const double weight = r.latency > 0 ? r.share / r.latency : 0.0;  // 1 / requests in its batch
      target_fwd_s += weight * r.out.target_forward_seconds;
      draft_fwd_s += weight * r.out.draft_forward_seconds;
      copies += weight * static_cast<double>(r.out.to_host.copies);
      bytes += weight * static_cast<double>(r.out.to_host.bytes);
      forwards += weight * static_cast<double>(r.out.batch_forwards);
      const Row& br = base[u];
      const double base_weight = br.latency > 0 ? br.share / br.latency : 0.0;
      model_local += weight * r.model_local_s;
      model_proj += weight * r.model_projected_s;
      base_model_local += base_weight * br.model_local_s;
      base_model_proj += base_weight * br.model_projected_s;
      base_fwd_s += base_weight * (br.out.target_forward_seconds + br.out.draft_forward_seconds);
      acc.add_at(0, ranking_of(*ds.catalog, r.out.beams), users.truth[u]);
      if (!judged) continue;
      const Row& t = rows[*target_i][u];
      switch (metrics::compare_lists(r.out.beams, t.out.beams, t.out.min_boundary_gap)) {
        case metrics::Agreement::Identical: ++identical; break;
        case metrics::Agreement::NearTie: ++near_tie; break;
        case metrics::Agreement::NearTieCascade: ++near_tie; ++cascade; break;
        case metrics::Agreement::Mismatch:
          ++mismatch;
          spdlog::warn("K={} {}: test user {} differs from target beam search (smallest boundary gap {:.3g}): "
                       "first items {} ({:.5f}) vs {} ({:.5f})", k, spec.name, users.samples[u].user,
                       t.out.min_boundary_gap,
                       r.out.beams.empty() ? -1 : ds.catalog->find_tuple_by_tokens(r.out.beams[0].tokens),
                       r.out.beams.empty() ? 0.0f : r.out.beams[0].score,
                       t.out.beams.empty() ? -1 : ds.catalog->find_tuple_by_tokens(t.out.beams[0].tokens),
                       t.out.beams.empty() ? 0.0f : t.out.beams[0].score);
          break;
      }
    }
    const double n = static_cast<double>(list.size());
    nlohmann::json row = {{"k", k},
                          {"batch_size", bs},
                          {"method", spec.name},
                          {"kind", spec.kind},
                          {"baseline", base_i ? spec.baseline : spec.name},
                          {"draft_width", spec.n},
                          {"gamma", spec.gamma},
                          {"requests", list.size()},
                          {"median_ms", metrics::quantile(lat, 0.5) * 1e3},
                          {"p90_ms", metrics::quantile(lat, 0.9) * 1e3},
                          {"speedup_mean_ratio", ratio_sum / n},
                          {"speedup_total", base_total / total},
                          {"target_forwards", tf / n},
                          {"draft_forwards", df / n},
                          {"recall", acc.recall(0)},
                          {"ndcg", acc.ndcg(0)}};
    if (forwards > 0 && total > 0) {  // not for naive, which decodes outside the scorers
      row["target_forward_fraction"] = target_fwd_s / total;
      row["draft_forward_fraction"] = draft_fwd_s / total;
      row["rest_fraction"] = std::max(0.0, 1.0 - (target_fwd_s + draft_fwd_s) / total);
      row["rest_ms_per_request"] = std::max(0.0, total - target_fwd_s - draft_fwd_s) / n * 1e3;
      row["copies_per_forward"] = copies / forwards;
      row["bytes_per_forward"] = bytes / forwards;
    }
    if (base_i && *base_i != si && model_local > 0 && base_model_local > 0) {
      // Validation where the traces were taken: this machine's cost model against the measured
      // speedup (ratio of totals). "forwards only" prices the forwards and ignores the host's rest;
      // "with rest" adds each method's measured rest (what a projection cannot know elsewhere).
      const double rest = std::max(0.0, total - target_fwd_s - draft_fwd_s);
      const double base_rest = std::max(0.0, base_total - base_fwd_s);
      const double measured = base_total / total;
      const double fwd_only = base_model_local / model_local;
      const double with_rest = (base_model_local + base_rest) / (model_local + rest);
      row["projection_local"] = {{"measured_speedup_total", measured},
                                 {"forwards_only", fwd_only},
                                 {"forwards_only_error", fwd_only / measured - 1},
                                 {"with_rest", with_rest},
                                 {"with_rest_error", with_rest / measured - 1}};
      if (model_proj > 0 && base_model_proj > 0) row["projected_speedup"] = base_model_proj / model_proj;
    }
    if (spec.kind == "strict" || spec.kind == "relaxed") {
      row["rounds"] = rounds / n;
      row["accepted_levels_per_round"] = rounds > 0 ? accepted / rounds : 0.0;
    }
    if (judged) {
      row["identical_fraction"] = static_cast<double>(identical) / n;
      row["near_tie_flips"] = near_tie;
      row["near_tie_cascades"] = cascade;  // of near_tie_flips: rooted at an earlier level's K boundary
      row["mismatches"] = mismatch;
      if (mismatch > 0) spdlog::error("K={} {}: {} requests differ from target beam search beyond near-ties", k, spec.name, mismatch);
    }
    results.push_back(row);
  }
}

void print_table(const nlohmann::json& results) {
  std::cout << "\n";
  std::cout << fmt::format("{:>3} {:>5} {:<22} {:>9} {:>9} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8} {:>9}\n", "K", "batch",
                           "method", "median ms", "p90 ms", "speedup", "(total)", "acc/rd", "tgt fw", "Recall@K",
                           "NDCG@K", "identical");
  for (const auto& r : results) {
    std::string accs = r.contains("accepted_levels_per_round") ? fmt::format("{:.2f}", r["accepted_levels_per_round"].get<double>()) : "-";
    std::string ident = r.contains("identical_fraction")
                            ? fmt::format("{:.3f}/{}", r["identical_fraction"].get<double>(), r["near_tie_flips"].get<int64_t>())
                            : "-";
    std::cout << fmt::format("{:>3} {:>5} {:<22} {:>9.2f} {:>9.2f} {:>7.2f}x {:>7.2f}x {:>7} {:>7.2f} {:>8.4f} {:>8.4f} {:>9}\n",
                             r["k"].get<int64_t>(), r["batch_size"].get<int64_t>(), r["method"].get<std::string>(),
                             r["median_ms"].get<double>(), r["p90_ms"].get<double>(), r["speedup_mean_ratio"].get<double>(),
                             r["speedup_total"].get<double>(), accs, r["target_forwards"].get<double>(),
                             r["recall"].get<double>(), r["ndcg"].get<double>(), ident);
  }
  std::cout << fmt::format("\n{:>3} {:>5} {:<22} {:>8} {:>8} {:>8} {:>12} {:>10} {:>10}\n", "K", "batch", "method",
                           "tgt fwd", "drf fwd", "rest", "rest ms/req", "copies/fw", "KB/fw");
  for (const auto& r : results) {
    if (!r.contains("rest_fraction")) continue;
    std::cout << fmt::format("{:>3} {:>5} {:<22} {:>7.1f}% {:>7.1f}% {:>7.1f}% {:>12.3f} {:>10.2f} {:>10.2f}\n",
                             r["k"].get<int64_t>(), r["batch_size"].get<int64_t>(), r["method"].get<std::string>(),
                             100 * r["target_forward_fraction"].get<double>(), 100 * r["draft_forward_fraction"].get<double>(),
                             100 * r["rest_fraction"].get<double>(), r["rest_ms_per_request"].get<double>(),
                             r["copies_per_forward"].get<double>(), r["bytes_per_forward"].get<double>() / 1024);
  }
  bool any_projection = false;
  for (const auto& r : results) any_projection = any_projection || r.contains("projection_local");
  if (any_projection) {
    std::cout << fmt::format("\n{:>3} {:>5} {:<22} {:>9} {:>18} {:>18} {:>11}\n", "K", "batch", "method", "measured",
                             "fwd-only (error)", "+ rest (error)", "projection");
    for (const auto& r : results) {
      if (!r.contains("projection_local")) continue;
      const auto& p = r["projection_local"];
      std::cout << fmt::format(
          "{:>3} {:>5} {:<22} {:>8.2f}x {:>18} {:>18} {:>11}\n", r["k"].get<int64_t>(), r["batch_size"].get<int64_t>(),
          r["method"].get<std::string>(), p["measured_speedup_total"].get<double>(),
          fmt::format("{:.2f}x ({:+.0f}%)", p["forwards_only"].get<double>(), 100 * p["forwards_only_error"].get<double>()),
          fmt::format("{:.2f}x ({:+.0f}%)", p["with_rest"].get<double>(), 100 * p["with_rest_error"].get<double>()),
          r.contains("projected_speedup") ? fmt::format("{:.2f}x", r["projected_speedup"].get<double>()) : "-");
    }
    std::cout << "measured: speedup as ratio of total times against the baseline. This machine's cost model priced\n"
                 "the run's forward traces: fwd-only (what a projection to another machine assumes: no host time),\n"
                 "+ rest (each method's measured rest added); the error is against measured. projection: the same\n"
                 "traces priced by --project's cost models (forwards only), a PROJECTION, not a measurement.\n";
  }
  std::cout << "time split of decode time: target forwards, draft forwards, and the rest (selection, masks,\n"
               "bookkeeping on the host); copies/fw and KB/fw: device-to-host copies and kilobytes per model forward\n"
               "(on a CPU model the bytes the search reads; one copy of each on a GPU).\n";
  std::cout << "speedup: mean of per-request (baseline / method) latency ratios; (total): ratio of total times.\n"
               "Baselines: target beam search for target, naive, strict, auto; target beam sampling for sampling and relaxed.\n"
               "identical: share of requests equal to target beam search / near-tie flips (score gap < 1e-4 at the\n"
               "list or at an earlier level's K boundary, SPEC §9.2); mismatches are logged with the user.\n";

}

// The JSON (and its config.yaml beside it), then the plot when python3 with matplotlib is there.
void write_outputs(const BenchDecodeOptions& o, const Config& config, const RunConfig& run, const nlohmann::json& out) {
  std::string path = o.json.empty() ? (fs::path(run.out_dir) / "bench_decode.json").string() : o.json;
  if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path());
  config.save_to_dir(fs::path(path).has_parent_path() ? fs::path(path).parent_path().string() : ".");
  write_text_file_atomic(path, out.dump(2) + "\n");
  std::cout << "wrote " << path << "\n";
  if (o.plot != "none") {
    const std::string png = o.plot.empty() ? (fs::path(path).replace_extension(".png")).string() : o.plot;
    const char* py = std::getenv("ATSPEED_PYTHON");  // exported by launch/setup.sh: the torch venv's python
    const std::string python = py ? py : "python3";
    const std::string script = std::string(ATSPEED_SOURCE_DIR) + "/tools/plot_bench_decode.py";
    const std::string cmd = fmt::format("'{}' '{}' '{}' '{}'", python, script, path, png);
    if (std::system(cmd.c_str()) == 0) {
      std::cout << "wrote " << png << "\n";
    } else {
      spdlog::warn("no plot: `{}` failed (needs python3 with matplotlib; `. launch/setup.sh` installs it)", cmd);
    }
  }
}

void run_bench_decode(BenchDecodeOptions o) {
  o.validate();
  const Config config = load_config(o.overrides);
  const auto run = read_section<RunConfig>(config, "run");
  const auto data = read_section<DataConfig>(config, "data");
  const auto dec = read_section<DecodeConfig>(config, "decode");
  if (o.draft_widths.empty()) o.draft_widths = {dec.draft_width};
  const bool needs_draft = std::any_of(o.methods.begin(), o.methods.end(), [](const std::string& m) {
    return m == "strict" || m == "relaxed" || m == "auto";
  });
  const bool run_auto = std::find(o.methods.begin(), o.methods.end(), "auto") != o.methods.end();
  BenchSetup b = load_bench(o, data, dec, run, needs_draft);

  nlohmann::json out;
  out["dataset"] = b.ds.name;
  out["target"] = o.target;
  out["draft"] = o.draft;
  out["users"] = b.users.size();
  out["constraint"] = b.constraint->name();
  out["device"] = b.device.str();
  out["dtype"] = dec.dtype;
  out["threads"] = at::get_num_threads();
  out["ks"] = o.ks;
  out["batch_sizes"] = o.batch_sizes;
  std::cout << fmt::format("bench decode: {} test users of {}, constraint {}, device {}, {} threads\n", b.users.size(),
                           b.ds.name, b.constraint->name(), b.device.str(), at::get_num_threads());
  torch::NoGradGuard no_grad;
  out["cost_model"] = measure_cost_model(b, o);
  if (!o.project.empty()) {
    b.projected_cost = read_projection(o.project, o.project_target, o.project_draft);
    out["projection"] = {{"file", o.project}, {"target", o.project_target}, {"draft", o.project_draft},
                         {"target_cost", decode::to_json(b.projected_cost->target)},
                         {"draft_cost", decode::to_json(b.projected_cost->draft)}};
  }
  nlohmann::json auto_json = nlohmann::json::array();
  std::map<int64_t, decode::Plan> plans;
  if (run_auto) plans = plan_auto(b, o, dec, data, auto_json);
  out["auto"] = auto_json;

  nlohmann::json results = nlohmann::json::array();
  ProgressBar bar("bench", static_cast<int64_t>(o.ks.size() * o.batch_sizes.size() * b.users.size()), stderr);
  int64_t work = 0;
  for (int64_t k : o.ks) {
    for (int64_t bs : o.batch_sizes) {
      const Specs specs = method_specs(o, dec, k, run_auto ? &plans.at(bs) : nullptr);
      const auto rows = run_interleaved(b, specs, dec, k, bs, bar, work);
      summarize(b, specs, rows, k, bs, results);
    }
  }
  bar.finish();
  out["results"] = results;
  print_table(results);
  write_outputs(o, config, run, out);
}

const RegisterCommand register_bench_decode([](CLI::App& app) {
  auto* bench = find_or_add_subcommand(app, "bench", "benchmarks: print a table and write JSON");
  auto o = std::make_shared<BenchDecodeOptions>();
  auto* cmd = bench->add_subcommand("decode", "latency, speedup and acceptance of the decoding methods on test users");
  cmd->add_option("--target", o->target, "target checkpoint (train-target)")->required();
  cmd->add_option("--draft", o->draft, "draft checkpoint (train-target model=draft_small, or train-draft)");
  cmd->add_option("--ks", o->ks, "beam widths K")->capture_default_str();
  cmd->add_option("--users", o->users, "test users, a seeded sample (0 = all)")->capture_default_str();
  cmd->add_option("--batch-sizes", o->batch_sizes, "requests decoded together")->capture_default_str();
  cmd->add_option("--methods", o->methods, "target sampling naive strict relaxed auto")->capture_default_str();
  cmd->add_option("--draft-widths", o->draft_widths, "N for strict (0 = N = K); default decode.draft_width");
  cmd->add_option("--calib-users", o->calib_users, "validation users auto plans on (default decode.auto.calib_users)")
      ->capture_default_str();
  cmd->add_option("--naive-max-k", o->naive_max_k, "skip the (slow) naive baseline above this K")->capture_default_str();
  cmd->add_option("--json", o->json, "JSON output (default <run.out_dir>/bench_decode.json)");
  cmd->add_option("--plot", o->plot, "PNG output (default: beside the JSON; 'none' = no plot)");
  cmd->add_option("--project", o->project,
                  "a bench forward JSON measured elsewhere: price this run's forward traces with its cost models and "
                  "print the projected speedup (a projection, not a measurement)");
  cmd->add_option("--project-target", o->project_target, "the target preset in --project's JSON")->capture_default_str();
  cmd->add_option("--project-draft", o->project_draft, "the draft preset in --project's JSON")->capture_default_str();
  cmd->add_option("overrides", o->overrides,
                  "config overrides (data=games decode.gamma=3 run.threads=2 ...); list flags take every following "
                  "word, so put overrides before them or after --");
  cmd->callback([o]() { run_bench_decode(*o); });
});

}  // namespace
}  // namespace atspeed::launch
