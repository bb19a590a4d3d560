#include "core/decode/cost_model.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/decode/tree_scorer.h"
#include "core/errors.h"
#include "core/metrics/metrics.h"  // quantile

namespace atspeed::decode {
namespace {

// Least squares t = a + b n through the points' medians.
void fit_line(CostCurve& c) {
  double sn = 0, st = 0, snn = 0, snt = 0;
  const double m = static_cast<double>(c.points.size());
  for (const auto& p : c.points) {
    const double n = static_cast<double>(p.n);
    sn += n;
    st += p.median_s;
    snn += n * n;
    snt += n * p.median_s;
  }
  c.b_s = m > 1 ? (m * snt - sn * st) / std::max(1e-12, m * snn - sn * sn) : 0.0;
  c.a_s = (st - c.b_s * sn) / std::max(1.0, m);
}

}  // namespace

double CostCurve::extend_s(int64_t tokens) const { return std::max(0.0, a_s + b_s * static_cast<double>(tokens)); }

double CostCurve::prefill_tokens_s(int64_t tokens) const {
  return std::max(0.0, prefill_s + b_s * static_cast<double>(tokens - prompt_tokens));
}

double CostCurve::at(int64_t n) const {
  for (const auto& p : points) {
    if (p.n == n) return p.median_s;
  }
  return extend_s(n);
}

CostCurve CostCurve::linear(double prefill_s, double a_s, double b_s, int64_t prompt_tokens) {
  CostCurve c;
  c.prefill_s = prefill_s;
  c.prompt_tokens = prompt_tokens;
  c.a_s = a_s;
  c.b_s = b_s;
  for (int64_t n : {1, 10, 100}) {
    const double t = a_s + b_s * static_cast<double>(n);
    c.points.push_back({n, t, t, t});
  }
  return c;
}

CostCurve measure_cost(TreeScorer& scorer, const std::vector<int64_t>& prompt, const CostOptions& options) {
  ATSPEED_CHECK(!prompt.empty() && !options.ns.empty() && options.reps >= 1, "measure_cost: empty prompt or grid");
  // The scorer's own forward time (TreeScorer::counters: wall clock on the CPU, CUDA events on a GPU),
  // the same quantity decode stats call forward time, so model time + host time adds up.
  const at::Device device = scorer.device();
  auto timed = [&](auto&& fn) {
    const double before = scorer.counters().forward_seconds;
    fn();
    if (!device.is_cpu()) {  // wait for the device so that the forward's events can be read
      c10::Event done(device.type());
      done.record(c10::impl::VirtualGuardImpl(device.type()).getStream(device));
      done.synchronize();
    }
    return scorer.counters().forward_seconds - before;
  };
  CostCurve c;
  c.prompt_tokens = static_cast<int64_t>(prompt.size());
  std::vector<double> prefill;
  scorer.prefill({prompt});  // warm-up
  for (int r = 0; r < options.reps; ++r) prefill.push_back(timed([&] { scorer.prefill({prompt}); }));
  c.prefill_s = metrics::quantile(prefill, 0.5);
  const int64_t base = scorer.length();
  const int64_t root = static_cast<int64_t>(prompt.size()) - 1;
  std::vector<at::Tensor> tokens, parents;
  for (int64_t n : options.ns) {
    ATSPEED_CHECK(n >= 1, "measure_cost: n must be >= 1");
    tokens.push_back(at::full({1, n}, prompt.back(), at::kLong));
    parents.push_back(at::full({1, n}, root, at::kLong));
  }
  auto extend_once = [&](size_t i) {
    const double t = timed([&] { scorer.extend(tokens[i], parents[i]); });
    scorer.truncate(base);
    return t;
  };
  for (size_t i = 0; i < options.ns.size(); ++i) extend_once(i);  // warm-up of every shape
  std::vector<std::vector<double>> samples(options.ns.size());
  for (int r = 0; r < options.reps; ++r) {
    for (size_t i = 0; i < options.ns.size(); ++i) samples[i].push_back(extend_once(i));
  }
  for (size_t i = 0; i < options.ns.size(); ++i) {
    c.points.push_back({options.ns[i], metrics::quantile(samples[i], 0.5), metrics::quantile(samples[i], 0.25), metrics::quantile(samples[i], 0.75)});
  }
  fit_line(c);
  return c;
}

nlohmann::json to_json(const CostCurve& c) {
  nlohmann::json points = nlohmann::json::array();
  for (const auto& p : c.points) points.push_back({{"n", p.n}, {"median_s", p.median_s}, {"q1_s", p.q1_s}, {"q3_s", p.q3_s}});
  return {{"prefill_s", c.prefill_s}, {"prompt_tokens", c.prompt_tokens}, {"a_s", c.a_s}, {"b_s", c.b_s}, {"points", points}};
}

CostCurve cost_curve_from_json(const nlohmann::json& j) {
  CostCurve c;
  c.prefill_s = j.at("prefill_s").get<double>();
  c.prompt_tokens = j.at("prompt_tokens").get<int64_t>();
  c.a_s = j.at("a_s").get<double>();
  c.b_s = j.at("b_s").get<double>();
  for (const auto& p : j.at("points")) {
    c.points.push_back({p.at("n").get<int64_t>(), p.at("median_s").get<double>(), p.at("q1_s").get<double>(),
                        p.at("q3_s").get<double>()});
  }
  return c;
}

}  // namespace atspeed::decode
