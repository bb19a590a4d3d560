// Top-K accuracy (SPEC §5.1, utils.computeTopNAccuracy) and the most-popular baseline.
//
// Items are compared by code tuple (colliding items are one prediction), written here as catalogue
// tuple ids (ItemCatalog::tuple_of_item / find_tuple_by_tokens; -1 = not an item, never a hit).
// For one user with ground truth G (a list; |G| counts entries, so two colliding test items count
// twice) and ranking P (best first), at cutoff n:
//   hits   = #{ j < n : P[j] in G }                 Recall = hits / |G|
//   DCG    = sum_{j < n, P[j] in G} 1 / log2(j + 2)  IDCG = sum_{j < min(n, |G|)} 1 / log2(j + 2)
//   NDCG   = DCG / IDCG
// A ranking shorter than n (a beam search that found fewer than n items) counts the missing
// entries as misses. Users with an empty G are skipped (the samples never have one).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/vocab/item_catalog.h"

namespace atspeed::metrics {

double recall_at(std::span<const int64_t> ranking, std::span<const int64_t> truth, int64_t n);
double ndcg_at(std::span<const int64_t> ranking, std::span<const int64_t> truth, int64_t n);

// Sums per-user values for a set of cutoffs and averages over users.
// The q-quantile (0 <= q <= 1) of v with linear interpolation between order statistics; 0 for an
// empty v. (Latency medians and percentiles of the benchmarks and the cost model.)
double quantile(std::vector<double> v, double q);

class TopKAccumulator {
 public:
  explicit TopKAccumulator(std::vector<int64_t> ks);
  // Adds one user (skipped when truth is empty). `ranking_for_k(i)` may differ per cutoff (eval
  // decodes with beam width K for cutoff K); this overload uses one ranking for all cutoffs.
  void add(std::span<const int64_t> ranking, std::span<const int64_t> truth);
  // The ranking for cutoff ks()[i] only.
  void add_at(size_t i, std::span<const int64_t> ranking, std::span<const int64_t> truth);

  const std::vector<int64_t>& ks() const { return ks_; }
  int64_t users(size_t i) const { return users_[i]; }
  double recall(size_t i) const;  // mean over added users; 0 when none
  double ndcg(size_t i) const;

 private:
  std::vector<int64_t> ks_;
  std::vector<int64_t> users_;
  std::vector<double> recall_sum_, ndcg_sum_;
};

// Catalogue tuple ids ranked by interaction count in `sequences` (item ids; every list of every user
// counts, repeats included), descending, ties by tuple ascending (= tuple id ascending, since the
// catalogue numbers tuples in code order). Tuples without interactions follow, in tuple order.
// Returns the first `n` (all when n <= 0).
std::vector<int64_t> most_popular_tuples(const ItemCatalog& catalog,
                                         const std::vector<const std::vector<std::vector<int64_t>>*>& sequences,
                                         int64_t n = 0);

// Item-to-item transitions, the baseline a recommender engineer tries first: the tuples that followed
// each tuple in the users' sequences (consecutive items of one user; a user's lists of the given
// splits are concatenated in the order given, e.g. train then valid), counted, best first.
class TransitionModel {
 public:
  // sequences: splits of per-user item lists, all with the same users in the same order.
  TransitionModel(const ItemCatalog& catalog, const std::vector<const std::vector<std::vector<int64_t>>*>& sequences);
  // The first `n` tuples for a history ending in `last_item`: the tuples seen after its tuple, by
  // count descending (ties by tuple id), then `fill` (most-popular) without repeats.
  std::vector<int64_t> rank(int64_t last_item, const std::vector<int64_t>& fill, int64_t n) const;

 private:
  const ItemCatalog& catalog_;
  std::vector<std::vector<std::pair<int64_t, int64_t>>> next_;  // per tuple: (count, next tuple), best first
};

}  // namespace atspeed::metrics
