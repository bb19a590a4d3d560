// `atspeed bench decode`: latency of the decoding methods on test users, measured interleaved in one
// run (SPEC §5.2, §9.10): the tree-attention target beam search and target beam sampling (the
// baselines), the naive per-beam-cache beam search (what HF generate does), AtSpeed-S (strict) and
// AtSpeed-R (relaxed), plus AtSpeed-S with N and gamma picked per K by calibration. For every K and
// batch size: median and p90 latency per request, speedup (mean of per-request ratios and ratio of
// totals, each against its own baseline), accepted levels per round, target forwards per request,
// Recall@K / NDCG@K, and for strict the share identical to target beam search and the near-tie
// flips (SPEC §9.2). Before that, a cost model: each model's forward time against the number of new
// tokens, and the ideal speedup if every drafted level were accepted. Prints tables, writes JSON
// and (with python3 + matplotlib) a PNG plot.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <set>

#include "core/config.h"
#include "core/config_types.h"
#include "core/decode/beam_search.h"
#include "core/decode/decode_config.h"
#include "core/decode/speculative.h"
#include "core/decode/tree_scorer.h"
#include "core/errors.h"
#include "core/io/checkpoint.h"
#include "core/metrics/metrics.h"
#include "core/progress.h"
#include "core/vocab/constraint.h"
#include "data/data_config.h"
#include "data/dataset.h"
#include "data/lcrec.h"
#include "data/sampler.h"
#include "data/samples.h"
#include "launch/commands.h"
#include "launch/model_loading.h"

namespace fs = std::filesystem;

namespace atspeed::launch {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct BenchDecodeOptions {
  std::string target, draft;
  std::vector<int64_t> ks{1, 3, 5, 10, 20};
  int64_t users = 200;                       // test users (seeded sample); 0 = all
  std::vector<int64_t> batch_sizes{1, 8};
  std::vector<std::string> methods{"target", "sampling", "naive", "strict", "relaxed", "adaptive"};
  std::vector<int64_t> draft_widths;         // strict runs once per N; 0 means N = K; default decode.draft_width
  int64_t calib_users = 16;                  // validation users for the adaptive choice
  int64_t naive_max_k = 20;                  // the naive baseline is slow: skip it above this K
  std::string json, plot;
  std::vector<std::string> overrides;
};

// One method's outcome for one request.
struct Row {
  double latency = 0;        // seconds (batch wall time: requests of a batch finish together)
  double share = 0;          // latency / requests in the batch: the request's share of the total time
  std::vector<decode::Beam> beams;
  int64_t target_forwards = 0, draft_forwards = 0, rounds = 0;
  double accepted_levels = 0;  // mean over rounds (speculative only)
  int64_t accepted_sum = 0;
  float min_boundary_gap = std::numeric_limits<float>::infinity();  // target beam search only (SearchStats)
};

struct MethodSpec {
  std::string name;      // display name, e.g. "strict(N=40)"
  std::string kind;      // target | sampling | naive | strict | relaxed
  int64_t n = 0, gamma = 0;
  std::string baseline;  // the method it is compared with
};

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos)), hi = static_cast<size_t>(std::ceil(pos));
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

// Same items in the same order: identical. Otherwise a near-tie flip (SPEC §9.2) when the two score
// sequences agree position by position within 1e-4 (a swap of near-equal scores), or when target
// beam search itself had a pair of candidates within 1e-4 at the boundary of its K kept beams at some
// level (`target_gap`, SearchStats::min_boundary_gap): keeping the other one of that pair changes
// every later level, so the lists may then differ anywhere after it (a cascade). Else a mismatch.
enum class Agreement { Identical, NearTie, NearTieCascade, Mismatch };
Agreement compare_lists(const std::vector<decode::Beam>& a, const std::vector<decode::Beam>& b, float target_gap) {
  bool same = a.size() == b.size();
  for (size_t i = 0; same && i < a.size(); ++i) same = a[i].tokens == b[i].tokens;
  if (same) return Agreement::Identical;
  bool close = a.size() == b.size();
  for (size_t i = 0; close && i < a.size(); ++i) close = std::abs(a[i].score - b[i].score) < 1e-4f;
  if (close) return Agreement::NearTie;
  return target_gap < 1e-4f ? Agreement::NearTieCascade : Agreement::Mismatch;
}

// Median time of `fn` over `reps` runs after one warm-up.
template <typename Fn>
double time_of(Fn&& fn, int reps = 3) {
  fn();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    fn();
    t.push_back(since(t0));
  }
  return percentile(t, 0.5);
}

// Forward time of a scorer against new tokens n (a star of n nodes under the prompt), batch 1.
struct CostCurve {
  double prefill = 0;      // seconds for the prompt
  double a = 0, b = 0;     // extend(n) ~ a + b n seconds
  std::vector<std::pair<int64_t, double>> points;
};
CostCurve measure_cost(decode::TreeScorer& scorer, const std::vector<int64_t>& prompt, const std::vector<int64_t>& ns) {
  CostCurve c;
  c.prefill = time_of([&] { scorer.prefill({prompt}); });
  const int64_t base = scorer.length();
  const int64_t root = static_cast<int64_t>(prompt.size()) - 1;
  for (int64_t n : ns) {
    at::Tensor tokens = at::full({1, n}, 5, at::kLong);
    at::Tensor parents = at::full({1, n}, root, at::kLong);
    const double t = time_of([&] {
      scorer.extend(tokens, parents);
      scorer.truncate(base);
    });
    c.points.emplace_back(n, t);
  }
  // Least squares t = a + b n.
  double sn = 0, st = 0, snn = 0, snt = 0;
  const double m = static_cast<double>(c.points.size());
  for (const auto& [n, t] : c.points) {
    sn += static_cast<double>(n);
    st += t;
    snn += static_cast<double>(n * n);
    snt += static_cast<double>(n) * t;
  }
  c.b = (m * snt - sn * st) / std::max(1e-12, m * snn - sn * sn);
  c.a = (st - c.b * sn) / m;
  return c;
}
double cost_at(const CostCurve& c, int64_t n) { return std::max(0.0, c.a + c.b * static_cast<double>(n)); }

void run_bench_decode(BenchDecodeOptions o) {
  ATSPEED_ENSURE(Usage, !o.target.empty(), "bench decode needs --target CKPT (a train-target checkpoint)");
  const Config config = load_config(o.overrides);
  const auto run = read_section<RunConfig>(config, "run");
  auto data = read_section<DataConfig>(config, "data");
  const auto dec = read_section<DecodeConfig>(config, "decode");
  ATSPEED_ENSURE(Usage, !o.ks.empty() && std::all_of(o.ks.begin(), o.ks.end(), [](int64_t k) { return k >= 1; }),
                 "--ks: list of beam widths >= 1");
  ATSPEED_ENSURE(Usage, !o.batch_sizes.empty() && std::all_of(o.batch_sizes.begin(), o.batch_sizes.end(), [](int64_t b) { return b >= 1; }),
                 "--batch-sizes: list of sizes >= 1");
  const std::set<std::string> known{"target", "sampling", "naive", "strict", "relaxed", "adaptive"};
  for (const auto& m : o.methods) ATSPEED_ENSURE(Usage, known.count(m), "--methods: unknown method '", m, "' (known: target sampling naive strict relaxed adaptive)");
  const bool needs_draft = std::any_of(o.methods.begin(), o.methods.end(), [](const std::string& m) {
    return m == "strict" || m == "relaxed" || m == "adaptive";
  });
  ATSPEED_ENSURE(Usage, !needs_draft || !o.draft.empty(), "methods strict/relaxed/adaptive need --draft CKPT");
  if (o.draft_widths.empty()) o.draft_widths = {dec.draft_width};

  const CheckpointReader target_reader(o.target);
  std::unique_ptr<CheckpointReader> draft_reader;
  if (needs_draft) draft_reader = std::make_unique<CheckpointReader>(o.draft);
  const Dataset ds = load_dataset(data);
  apply_prompt_settings(target_reader, data);
  const at::Device device = resolve_device(dec.device);
  model::LlamaModel target_model = load_model_for(target_reader, ds, device, "target", dec.dtype);
  model::LlamaModel draft_model{nullptr};
  if (draft_reader) draft_model = load_model_for(*draft_reader, ds, device, "draft", dec.dtype);
  const PromptFormat format(ds.catalog, data.sep_token);
  const auto constraint = make_constraint(data.constraint, *ds.catalog);

  // Users: a seeded sample of the test split (all with --users 0), in a fixed order.
  std::vector<Sample> samples = make_test_samples(ds, data.history_len);
  if (o.users > 0 && static_cast<int64_t>(samples.size()) > o.users) {
    std::mt19937_64 rng(static_cast<uint64_t>(run.seed));
    seeded_shuffle(samples, rng);
    samples.resize(static_cast<size_t>(o.users));
    std::sort(samples.begin(), samples.end(), [](const Sample& a, const Sample& b) { return a.user < b.user; });
  }
  ATSPEED_ENSURE(Data, !samples.empty(), "no test users in ", ds.dir);
  std::vector<std::vector<int64_t>> truth(samples.size());
  for (size_t u = 0; u < samples.size(); ++u) {
    for (int64_t item : samples[u].targets) truth[u].push_back(ds.catalog->tuple_of_item(item));
  }

  decode::LlamaTreeScorer target_scorer(target_model);
  std::unique_ptr<decode::LlamaTreeScorer> draft_scorer;
  if (draft_model) draft_scorer = std::make_unique<decode::LlamaTreeScorer>(draft_model);

  nlohmann::json out;
  out["dataset"] = ds.name;
  out["target"] = o.target;
  out["draft"] = o.draft;
  out["users"] = samples.size();
  out["constraint"] = constraint->name();
  out["device"] = device.str();
  out["threads"] = at::get_num_threads();
  out["ks"] = o.ks;
  out["batch_sizes"] = o.batch_sizes;
  std::cout << fmt::format("bench decode: {} test users of {}, constraint {}, device {}, {} threads\n", samples.size(),
                           ds.name, constraint->name(), device.str(), at::get_num_threads());

  // ---- Cost model (batch 1, a prompt of the users' mean length).
  double mean_len = 0;
  for (const auto& s : samples) mean_len += static_cast<double>(format.prompt(s.history).size());
  mean_len /= static_cast<double>(samples.size());
  const Sample* typical = &samples[0];
  for (const auto& s : samples) {
    if (std::abs(static_cast<double>(format.prompt(s.history).size()) - mean_len) <
        std::abs(static_cast<double>(format.prompt(typical->history).size()) - mean_len)) {
      typical = &s;
    }
  }
  const std::vector<int64_t> typical_prompt = format.prompt(typical->history);
  const int64_t max_n = *std::max_element(o.draft_widths.begin(), o.draft_widths.end());
  const int64_t max_k = *std::max_element(o.ks.begin(), o.ks.end());
  std::vector<int64_t> ns{1, 5, 10, 20, 40, 80, 120};
  ns.push_back(3 * std::max(max_n, max_k));
  std::sort(ns.begin(), ns.end());
  ns.erase(std::unique(ns.begin(), ns.end()), ns.end());
  torch::NoGradGuard no_grad;
  const CostCurve target_cost = measure_cost(target_scorer, typical_prompt, ns);
  CostCurve draft_cost;
  if (draft_scorer) draft_cost = measure_cost(*draft_scorer, typical_prompt, ns);
  std::cout << fmt::format("\ncost model (prompt {} tokens, batch 1): forward ms against new tokens n\n", typical_prompt.size());
  std::cout << fmt::format("{:>6} {:>10} {:>10}\n", "n", "target", "draft");
  nlohmann::json cost = {{"prompt_tokens", typical_prompt.size()}, {"points", nlohmann::json::array()}};
  for (size_t i = 0; i < ns.size(); ++i) {
    const double td = draft_scorer ? draft_cost.points[i].second : 0.0;
    std::cout << fmt::format("{:>6} {:>10.3f} {:>10.3f}\n", ns[i], target_cost.points[i].second * 1e3, td * 1e3);
    cost["points"].push_back({{"n", ns[i]}, {"target_s", target_cost.points[i].second}, {"draft_s", td}});
  }
  std::cout << fmt::format("prefill ms: target {:.3f}, draft {:.3f}; fit extend(n) = a + b n: target {:.3f} + {:.4f} n ms, draft {:.3f} + {:.4f} n ms\n",
                           target_cost.prefill * 1e3, draft_cost.prefill * 1e3, target_cost.a * 1e3,
                           target_cost.b * 1e3, draft_cost.a * 1e3, draft_cost.b * 1e3);
  cost["target"] = {{"prefill_s", target_cost.prefill}, {"a_s", target_cost.a}, {"b_s", target_cost.b}};
  cost["draft"] = {{"prefill_s", draft_cost.prefill}, {"a_s", draft_cost.a}, {"b_s", draft_cost.b}};
  // Ideal: every drafted level accepted in round 1 (d = 3 of 4 levels): draft prefill + 2 draft
  // steps of N nodes + one target forward over the prompt and 3N nodes (prefill + extend(3N) less
  // the extend's fixed cost a, paid once), against target prefill + 3 steps of K.
  nlohmann::json ideal = nlohmann::json::array();
  if (draft_scorer) {
    std::cout << "ideal speedup if every level were accepted (cost model):\n";
    for (int64_t k : o.ks) {
      const int64_t n = std::max(k, o.draft_widths[0] == 0 ? k : o.draft_widths[0]);
      const double base = target_cost.prefill + 3 * cost_at(target_cost, k);
      const double spec = draft_cost.prefill + 2 * cost_at(draft_cost, n) + target_cost.prefill + cost_at(target_cost, 3 * n) - target_cost.a;
      std::cout << fmt::format("  K={:<3} N={:<3} {:.2f}x\n", k, n, base / spec);
      ideal.push_back({{"k", k}, {"n", n}, {"ideal_speedup", base / spec}, {"baseline_s", base}, {"speculative_s", spec}});
    }
  }
  cost["ideal"] = ideal;
  out["cost_model"] = cost;

  // ---- Adaptive: per K, the (N, gamma) with the lowest measured mean latency on validation users.
  std::map<int64_t, std::pair<int64_t, int64_t>> adaptive;
  nlohmann::json adaptive_json = nlohmann::json::array();
  if (std::find(o.methods.begin(), o.methods.end(), "adaptive") != o.methods.end()) {
    std::vector<Sample> calib = make_valid_samples(ds, data.history_len);
    if (static_cast<int64_t>(calib.size()) > o.calib_users) calib.resize(static_cast<size_t>(o.calib_users));
    std::vector<std::vector<int64_t>> prompts;
    for (const auto& s : calib) prompts.push_back(format.prompt(s.history));
    std::cout << "\nadaptive drafting: calibrating N and gamma per K on " << calib.size() << " validation users\n";
    for (int64_t k : o.ks) {
      std::vector<int64_t> n_grid{k, 2 * k, 4 * k, 40};
      std::sort(n_grid.begin(), n_grid.end());
      n_grid.erase(std::unique(n_grid.begin(), n_grid.end()), n_grid.end());
      n_grid.erase(std::remove_if(n_grid.begin(), n_grid.end(), [&](int64_t n) { return n < k || n > std::max<int64_t>(40, k); }), n_grid.end());
      double best = 1e30;
      int64_t best_n = k, best_g = 1;
      for (int64_t n : n_grid) {
        for (int64_t g : {1, 2, 3}) {
          decode::SpeculativeOptions so = dec.speculative_options(k);
          so.verification = decode::Verification::Strict;
          so.draft_width = n;
          so.gamma = g;
          decode::SpeculativeBeamSearch spec(target_scorer, *draft_scorer, *constraint, so);
          double total = 0;
          for (const auto& p : prompts) {
            const auto t0 = Clock::now();
            spec.run({p});
            total += since(t0);
          }
          if (total < best) {
            best = total;
            best_n = n;
            best_g = g;
          }
        }
      }
      // Plain target beam search on the same users, to know whether speculation pays at all.
      decode::TargetBeamSearch plain(target_scorer, *constraint, dec.search_options(k));
      double plain_total = 0;
      for (const auto& p : prompts) {
        const auto t0 = Clock::now();
        plain.run({p});
        plain_total += since(t0);
      }
      // Speculation that does not pay on the calibration users falls back to target beam search
      // (N = gamma = 0), which is always a valid choice and gives the same items.
      const bool fallback = plain_total <= best;
      if (fallback) best_n = best_g = 0;
      adaptive[k] = {best_n, best_g};
      std::cout << fmt::format("  K={:<3} {}  (best speculative {:.2f} ms/request; target beam search {:.2f})\n", k,
                               fallback ? std::string("target beam search") : fmt::format("N={:<3} gamma={}", best_n, best_g),
                               best / static_cast<double>(prompts.size()) * 1e3,
                               plain_total / static_cast<double>(prompts.size()) * 1e3);
      adaptive_json.push_back({{"k", k}, {"n", best_n}, {"gamma", best_g}, {"fallback_to_target", fallback},
                               {"calib_ms", best / static_cast<double>(prompts.size()) * 1e3},
                               {"calib_target_ms", plain_total / static_cast<double>(prompts.size()) * 1e3}});
    }
  }
  out["adaptive"] = adaptive_json;

  // ---- The interleaved runs.
  nlohmann::json results = nlohmann::json::array();
  const int64_t total_work = static_cast<int64_t>(o.ks.size() * o.batch_sizes.size() * samples.size());
  ProgressBar bar("bench", total_work, stderr);
  int64_t work = 0;
  for (int64_t k : o.ks) {
    std::vector<MethodSpec> specs;
    for (const auto& m : o.methods) {
      if (m == "target") specs.push_back({"target", "target", 0, 0, "target"});
      if (m == "sampling") specs.push_back({"sampling", "sampling", 0, 0, "sampling"});
      if (m == "naive" && k <= o.naive_max_k) specs.push_back({"naive", "naive", 0, 0, "target"});
      if (m == "strict") {
        for (int64_t n : o.draft_widths) {
          const int64_t nn = n == 0 ? k : std::max(n, k);
          specs.push_back({fmt::format("strict(N={})", nn), "strict", nn, dec.gamma, "target"});
        }
      }
      if (m == "relaxed") specs.push_back({fmt::format("relaxed(N={})", std::max(dec.draft_width, k)), "relaxed", std::max(dec.draft_width, k), dec.gamma, "sampling"});
      if (m == "adaptive" && adaptive.count(k)) {
        if (adaptive[k].first == 0)
          specs.push_back({"adaptive(target)", "target", 0, 0, "target"});
        else
          specs.push_back({fmt::format("adaptive(N={},g={})", adaptive[k].first, adaptive[k].second), "strict", adaptive[k].first, adaptive[k].second, "target"});
      }
    }
    for (int64_t bs : o.batch_sizes) {
      std::map<std::string, std::vector<Row>> rows;
      for (size_t begin = 0; begin < samples.size(); begin += static_cast<size_t>(bs)) {
        const size_t end = std::min(samples.size(), begin + static_cast<size_t>(bs));
        std::vector<std::vector<int64_t>> prompts;
        std::vector<uint64_t> seeds;
        for (size_t u = begin; u < end; ++u) {
          prompts.push_back(format.prompt(samples[u].history));
          seeds.push_back(static_cast<uint64_t>(dec.seed + samples[u].user));
        }
        for (const auto& spec : specs) {  // interleaved: every method on this batch before the next batch
          auto& list = rows[spec.name];
          const auto t0 = Clock::now();
          if (spec.kind == "target" || spec.kind == "sampling") {
            decode::SearchOptions so = dec.search_options(k);
            so.sample = spec.kind == "sampling";
            decode::TargetBeamSearch search(target_scorer, *constraint, so);
            const auto res = search.run(prompts, seeds);
            const double t = since(t0);
            for (const auto& r : res)
              list.push_back({t, t / static_cast<double>(res.size()), r.beams, r.stats.forward_calls, 0, 0, 0, 0,
                              r.stats.min_boundary_gap});
          } else if (spec.kind == "naive") {
            decode::NaiveBeamSearch search(target_model, *constraint, dec.search_options(k));
            const auto res = search.run(prompts, seeds);
            const double t = since(t0);
            for (const auto& r : res) list.push_back({t, t / static_cast<double>(res.size()), r.beams, r.stats.forward_calls, 0, 0, 0, 0});
          } else {
            decode::SpeculativeOptions so = dec.speculative_options(k);
            so.verification = spec.kind == "strict" ? decode::Verification::Strict : decode::Verification::Relaxed;
            so.draft_width = spec.n;
            so.gamma = spec.gamma;
            decode::SpeculativeBeamSearch search(target_scorer, *draft_scorer, *constraint, so);
            const auto res = search.run(prompts, seeds);
            const double t = since(t0);
            for (const auto& r : res) {
              int64_t acc = 0;
              for (int64_t m : r.stats.accepted_levels) acc += m;
              list.push_back({t, t / static_cast<double>(res.size()), r.beams, r.stats.target_calls, r.stats.draft_calls, r.stats.rounds,
                              r.stats.mean_accepted_levels(), acc});
            }
          }
        }
        work += static_cast<int64_t>(end - begin);
        bar.update(work, fmt::format("K={} batch {}", k, bs));
      }
      // Summaries.
      for (const auto& spec : specs) {
        const auto& list = rows[spec.name];
        const auto& base = rows.count(spec.baseline) ? rows[spec.baseline] : list;
        std::vector<double> lat;
        double ratio_sum = 0, total = 0, base_total = 0, tf = 0, df = 0, rounds = 0, accepted = 0;
        int64_t identical = 0, near_tie = 0, cascade = 0, mismatch = 0;
        metrics::TopKAccumulator acc({k});
        for (size_t u = 0; u < list.size(); ++u) {
          const Row& r = list[u];
          lat.push_back(r.latency);
          total += r.share;
          base_total += base[u].share;
          ratio_sum += base[u].latency / r.latency;
          tf += static_cast<double>(r.target_forwards);
          df += static_cast<double>(r.draft_forwards);
          rounds += static_cast<double>(r.rounds);
          accepted += static_cast<double>(r.accepted_sum);
          std::vector<int64_t> ranking;
          for (const auto& b : r.beams) ranking.push_back(ds.catalog->find_tuple_by_tokens(b.tokens));
          acc.add_at(0, ranking, truth[u]);
          if (spec.kind == "strict" && rows.count("target")) {
            const Row& t = rows["target"][u];
            switch (compare_lists(r.beams, t.beams, t.min_boundary_gap)) {
              case Agreement::Identical: ++identical; break;
              case Agreement::NearTie: ++near_tie; break;
              case Agreement::NearTieCascade: ++near_tie; ++cascade; break;
              case Agreement::Mismatch:
                ++mismatch;
                spdlog::warn("K={} {}: test user {} differs from target beam search (smallest boundary gap {:.3g}): "
                             "first items {} ({:.5f}) vs {} ({:.5f})", k, spec.name, samples[u].user, t.min_boundary_gap,
                             r.beams.empty() ? -1 : ds.catalog->find_tuple_by_tokens(r.beams[0].tokens),
                             r.beams.empty() ? 0.0f : r.beams[0].score,
                             t.beams.empty() ? -1 : ds.catalog->find_tuple_by_tokens(t.beams[0].tokens),
                             t.beams.empty() ? 0.0f : t.beams[0].score);
                break;
            }
          }
        }
        const double n = static_cast<double>(list.size());
        nlohmann::json row = {{"k", k},
                              {"batch_size", bs},
                              {"method", spec.name},
                              {"kind", spec.kind},
                              {"baseline", spec.baseline},
                              {"draft_width", spec.n},
                              {"gamma", spec.gamma},
                              {"requests", list.size()},
                              {"median_ms", percentile(lat, 0.5) * 1e3},
                              {"p90_ms", percentile(lat, 0.9) * 1e3},
                              {"speedup_mean_ratio", ratio_sum / n},
                              {"speedup_total", base_total / total},
                              {"target_forwards", tf / n},
                              {"draft_forwards", df / n},
                              {"recall", acc.recall(0)},
                              {"ndcg", acc.ndcg(0)}};
        if (spec.kind == "strict" || spec.kind == "relaxed") {
          row["rounds"] = rounds / n;
          row["accepted_levels_per_round"] = rounds > 0 ? accepted / rounds : 0.0;
        }
        if (spec.kind == "strict" && rows.count("target")) {
          row["identical_fraction"] = static_cast<double>(identical) / n;
          row["near_tie_flips"] = near_tie;
          row["near_tie_cascades"] = cascade;  // of near_tie_flips: rooted at an earlier level's K boundary
          row["mismatches"] = mismatch;
          if (mismatch > 0) spdlog::error("K={} {}: {} requests differ from target beam search beyond near-ties", k, spec.name, mismatch);
        }
        results.push_back(row);
      }
    }
  }
  bar.finish();
  out["results"] = results;

  // ---- Table.
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
  std::cout << "speedup: mean of per-request (baseline / method) latency ratios; (total): ratio of total times.\n"
               "Baselines: target beam search for target, naive, strict, adaptive; target beam sampling for sampling and relaxed.\n"
               "identical: share of requests equal to target beam search / near-tie flips (score gap < 1e-4 at the\n"
               "list or at an earlier level's K boundary, SPEC §9.2); mismatches are logged with the user.\n";

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

const RegisterCommand register_bench_decode([](CLI::App& app) {
  auto* bench = find_or_add_subcommand(app, "bench", "benchmarks: print a table and write JSON");
  auto o = std::make_shared<BenchDecodeOptions>();
  auto* cmd = bench->add_subcommand("decode", "latency, speedup and acceptance of the decoding methods on test users");
  cmd->add_option("--target", o->target, "target checkpoint (train-target)")->required();
  cmd->add_option("--draft", o->draft, "draft checkpoint (train-target model=draft_small, or train-draft)");
  cmd->add_option("--ks", o->ks, "beam widths K")->capture_default_str();
  cmd->add_option("--users", o->users, "test users, a seeded sample (0 = all)")->capture_default_str();
  cmd->add_option("--batch-sizes", o->batch_sizes, "requests decoded together")->capture_default_str();
  cmd->add_option("--methods", o->methods, "target sampling naive strict relaxed adaptive")->capture_default_str();
  cmd->add_option("--draft-widths", o->draft_widths, "N for strict (0 = N = K); default decode.draft_width");
  cmd->add_option("--calib-users", o->calib_users, "validation users for the adaptive choice")->capture_default_str();
  cmd->add_option("--naive-max-k", o->naive_max_k, "skip the (slow) naive baseline above this K")->capture_default_str();
  cmd->add_option("--json", o->json, "JSON output (default <run.out_dir>/bench_decode.json)");
  cmd->add_option("--plot", o->plot, "PNG output (default: beside the JSON; 'none' = no plot)");
  cmd->add_option("overrides", o->overrides,
                  "config overrides (data=games decode.gamma=3 run.threads=2 ...); list flags take every following "
                  "word, so put overrides before them or after --");
  cmd->callback([o]() { run_bench_decode(*o); });
});

}  // namespace
}  // namespace atspeed::launch
