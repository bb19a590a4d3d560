#include "core/metrics/metrics.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "core/errors.h"

namespace atspeed::metrics {

namespace {
bool contains(std::span<const int64_t> truth, int64_t tuple) {
  return tuple >= 0 && std::find(truth.begin(), truth.end(), tuple) != truth.end();
}
}  // namespace

double recall_at(std::span<const int64_t> ranking, std::span<const int64_t> truth, int64_t n) {
  ATSPEED_CHECK(n >= 1, "recall_at: cutoff ", n, " < 1");
  if (truth.empty()) return 0;
  const int64_t m = std::min<int64_t>(n, static_cast<int64_t>(ranking.size()));
  int64_t hits = 0;
  for (int64_t j = 0; j < m; ++j) hits += contains(truth, ranking[static_cast<size_t>(j)]) ? 1 : 0;
  return static_cast<double>(hits) / static_cast<double>(truth.size());
}

double ndcg_at(std::span<const int64_t> ranking, std::span<const int64_t> truth, int64_t n) {
  ATSPEED_CHECK(n >= 1, "ndcg_at: cutoff ", n, " < 1");
  if (truth.empty()) return 0;
  const int64_t m = std::min<int64_t>(n, static_cast<int64_t>(ranking.size()));
  double dcg = 0, idcg = 0;
  for (int64_t j = 0; j < m; ++j) {
    if (contains(truth, ranking[static_cast<size_t>(j)])) dcg += 1.0 / std::log2(static_cast<double>(j) + 2.0);
  }
  const int64_t ideal = std::min<int64_t>(n, static_cast<int64_t>(truth.size()));
  for (int64_t j = 0; j < ideal; ++j) idcg += 1.0 / std::log2(static_cast<double>(j) + 2.0);
  return dcg / idcg;
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos)), hi = static_cast<size_t>(std::ceil(pos));
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

TopKAccumulator::TopKAccumulator(std::vector<int64_t> ks)
    : ks_(std::move(ks)), users_(ks_.size(), 0), recall_sum_(ks_.size(), 0), ndcg_sum_(ks_.size(), 0) {
  for (int64_t k : ks_) ATSPEED_CHECK(k >= 1, "TopKAccumulator: cutoff ", k, " < 1");
}

void TopKAccumulator::add(std::span<const int64_t> ranking, std::span<const int64_t> truth) {
  for (size_t i = 0; i < ks_.size(); ++i) add_at(i, ranking, truth);
}

void TopKAccumulator::add_at(size_t i, std::span<const int64_t> ranking, std::span<const int64_t> truth) {
  ATSPEED_CHECK(i < ks_.size(), "TopKAccumulator: cutoff index ", i, " outside [0, ", ks_.size(), ")");
  if (truth.empty()) return;
  users_[i] += 1;
  recall_sum_[i] += recall_at(ranking, truth, ks_[i]);
  ndcg_sum_[i] += ndcg_at(ranking, truth, ks_[i]);
}

double TopKAccumulator::recall(size_t i) const {
  return users_[i] ? recall_sum_[i] / static_cast<double>(users_[i]) : 0.0;
}
double TopKAccumulator::ndcg(size_t i) const { return users_[i] ? ndcg_sum_[i] / static_cast<double>(users_[i]) : 0.0; }

std::vector<int64_t> most_popular_tuples(const ItemCatalog& catalog,
                                         const std::vector<const std::vector<std::vector<int64_t>>*>& sequences,
                                         int64_t n) {
  std::vector<int64_t> count(static_cast<size_t>(catalog.num_tuples()), 0);
  for (const auto* split : sequences) {
    for (const auto& user : *split) {
      for (int64_t item : user) {
        ATSPEED_CHECK(catalog.has_item(item), "most_popular_tuples: unknown item ", item);
        ++count[static_cast<size_t>(catalog.tuple_of_item(item))];
      }
    }
  }
  std::vector<int64_t> order(count.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return count[static_cast<size_t>(a)] > count[static_cast<size_t>(b)]; });
  if (n > 0 && n < static_cast<int64_t>(order.size())) order.resize(static_cast<size_t>(n));
  return order;
}

TransitionModel::TransitionModel(const ItemCatalog& catalog,
                                 const std::vector<const std::vector<std::vector<int64_t>>*>& sequences)
    : catalog_(catalog), next_(static_cast<size_t>(catalog.num_tuples())) {
  ATSPEED_CHECK(!sequences.empty(), "TransitionModel: no sequences");
  const size_t users = sequences.front()->size();
  std::vector<std::map<int64_t, int64_t>> counts(next_.size());
  for (size_t u = 0; u < users; ++u) {
    int64_t prev = -1;
    for (const auto* split : sequences) {
      ATSPEED_CHECK(split->size() == users, "TransitionModel: splits with different user counts");
      for (int64_t item : (*split)[u]) {
        ATSPEED_CHECK(catalog.has_item(item), "TransitionModel: unknown item ", item);
        const int64_t t = catalog.tuple_of_item(item);
        if (prev >= 0) ++counts[static_cast<size_t>(prev)][t];
        prev = t;
      }
    }
  }
  for (size_t t = 0; t < counts.size(); ++t) {
    for (const auto& [next, c] : counts[t]) next_[t].emplace_back(c, next);
    std::stable_sort(next_[t].begin(), next_[t].end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  }
}

std::vector<int64_t> TransitionModel::rank(int64_t last_item, const std::vector<int64_t>& fill, int64_t n) const {
  std::vector<int64_t> out;
  std::vector<char> used(next_.size(), 0);
  if (catalog_.has_item(last_item)) {
    for (const auto& [count, t] : next_[static_cast<size_t>(catalog_.tuple_of_item(last_item))]) {
      if (static_cast<int64_t>(out.size()) >= n) break;
      out.push_back(t);
      used[static_cast<size_t>(t)] = 1;
    }
  }
  for (int64_t t : fill) {
    if (static_cast<int64_t>(out.size()) >= n) break;
    if (!used[static_cast<size_t>(t)]) out.push_back(t);
  }
  return out;
}

}  // namespace atspeed::metrics
