// Recall@K / NDCG@K (SPEC §5.1) and the most-popular baseline, on hand-computed values.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/errors.h"
#include "core/metrics/metrics.h"

namespace atspeed::metrics {
namespace {

using V = std::vector<int64_t>;

TEST(MetricsTest, RecallAndNdcgByHand) {
  const V ranking = {3, 7, 1, 9};
  const V truth = {7, 9, 9};  // |G| = 3: a colliding pair counts twice
  const double l3 = 1.0 / std::log2(3.0), l5 = 1.0 / std::log2(5.0);
  EXPECT_DOUBLE_EQ(recall_at(ranking, truth, 1), 0.0);
  EXPECT_DOUBLE_EQ(ndcg_at(ranking, truth, 1), 0.0);
  EXPECT_DOUBLE_EQ(recall_at(ranking, truth, 2), 1.0 / 3.0);
  EXPECT_NEAR(ndcg_at(ranking, truth, 2), l3 / (1.0 + l3), 1e-12);  // 0.386853
  EXPECT_NEAR(ndcg_at(ranking, truth, 2), 0.3868528, 1e-6);
  EXPECT_DOUBLE_EQ(recall_at(ranking, truth, 4), 2.0 / 3.0);
  // DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3) + 1/log2(4).
  EXPECT_NEAR(ndcg_at(ranking, truth, 4), (l3 + l5) / (1.0 + l3 + 0.5), 1e-12);
  EXPECT_NEAR(ndcg_at(ranking, truth, 4), 0.4981898, 1e-6);
  // A short ranking: missing entries are misses; IDCG over min(n, |G|).
  EXPECT_DOUBLE_EQ(recall_at(V{5}, V{5}, 3), 1.0);
  EXPECT_DOUBLE_EQ(ndcg_at(V{5}, V{5}, 3), 1.0);
  // -1 (not an item) never hits.
  EXPECT_DOUBLE_EQ(recall_at(V{-1, 5}, V{5}, 2), 1.0);
  EXPECT_NEAR(ndcg_at(V{-1, 5}, V{5}, 2), l3, 1e-12);
  EXPECT_THROW(recall_at(ranking, truth, 0), Error);
}

TEST(MetricsTest, AccumulatorAveragesOverUsers) {
  TopKAccumulator acc({1, 4});
  acc.add(V{3, 7, 1, 9}, V{7, 9, 9});
  acc.add(V{2}, V{2});
  acc.add(V{2}, V{});  // no ground truth: skipped
  EXPECT_EQ(acc.users(0), 2);
  EXPECT_DOUBLE_EQ(acc.recall(0), 0.5);
  EXPECT_DOUBLE_EQ(acc.ndcg(0), 0.5);
  EXPECT_NEAR(acc.recall(1), (2.0 / 3.0 + 1.0) / 2.0, 1e-12);
  EXPECT_NEAR(acc.ndcg(1), (0.4981898 + 1.0) / 2.0, 1e-6);
  // Per-cutoff rankings (eval decodes with beam width K for cutoff K).
  TopKAccumulator per({1, 2});
  per.add_at(0, V{4}, V{4, 5});
  per.add_at(1, V{5, 4}, V{4, 5});
  EXPECT_DOUBLE_EQ(per.recall(0), 0.5);
  EXPECT_DOUBLE_EQ(per.ndcg(0), 1.0);
  EXPECT_DOUBLE_EQ(per.recall(1), 1.0);
  EXPECT_DOUBLE_EQ(per.ndcg(1), 1.0);
}

TEST(MetricsTest, MostPopularCountsTuplesAndBreaksTiesByTuple) {
  // Items: 0 (0,0), 1 (0,1), 2 (0,0) collides with 0, 3 (1,2), 4 (2,3); tuples 0..3 in code order.
  const ItemCatalog catalog(Vocabulary(2, 4), {0, 0, 0, 1, 0, 0, 1, 2, 2, 3});
  ASSERT_EQ(catalog.num_tuples(), 4);
  const std::vector<std::vector<int64_t>> train = {{0, 1}, {3, 4}, {2}};
  const std::vector<std::vector<int64_t>> valid = {{4}, {4}, {}};
  // Train only: tuple 0 twice (items 0 and 2), the others once (ties by tuple).
  EXPECT_EQ(most_popular_tuples(catalog, {&train}), (V{0, 1, 2, 3}));
  // Train + valid: tuple 3 three times.
  EXPECT_EQ(most_popular_tuples(catalog, {&train, &valid}), (V{3, 0, 1, 2}));
  EXPECT_EQ(most_popular_tuples(catalog, {&train, &valid}, 2), (V{3, 0}));
}

TEST(MetricsTest, TransitionsCountNextTuplesAcrossSplitsThenFillWithPopularity) {
  // Items as above: 0 and 2 share tuple 0; 1 is tuple 1, 3 tuple 2, 4 tuple 3.
  const ItemCatalog catalog(Vocabulary(2, 4), {0, 0, 0, 1, 0, 0, 1, 2, 2, 3});
  const std::vector<std::vector<int64_t>> train = {{0, 1, 0, 3}, {2, 3}, {4}};
  const std::vector<std::vector<int64_t>> valid = {{1}, {4}, {0}};
  const TransitionModel t(catalog, {&train, &valid});
  // After tuple 0: tuple 2 twice (0->3, 2->3), tuple 1 once (0->1); popularity fills without repeats.
  EXPECT_EQ(t.rank(0, V{3, 0, 1, 2}, 4), (V{2, 1, 3, 0}));
  EXPECT_EQ(t.rank(2, V{3, 0, 1, 2}, 1), (V{2}));          // item 2 is tuple 0 too
  // After tuple 2 (item 3): the valid lists continue the train lists: 3->1 (user 0), 3->4 (user 1).
  EXPECT_EQ(t.rank(3, V{3, 0}, 3), (V{1, 3, 0}));
  // After tuple 3 (item 4): user 2's 4 -> 0 across the split boundary.
  EXPECT_EQ(t.rank(4, V{3}, 2), (V{0, 3}));
  EXPECT_EQ(t.rank(-1, V{3, 0}, 2), (V{3, 0}));            // no history: popularity alone
}

}  // namespace
}  // namespace atspeed::metrics
