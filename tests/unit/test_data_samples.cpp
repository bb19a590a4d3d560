// Samples, prompt format, collation and seeded sharding.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <set>

#include "core/errors.h"
#include "data/batch.h"
#include "data/sampler.h"
#include "data/samples.h"

namespace atspeed {
namespace {

// 3 users, 6 items, 4 levels, codebook 8. Item i has codes (i, i, i, i) except item 5 = (1,1,1,2).
Dataset toy_dataset() {
  Dataset ds;
  std::vector<int32_t> codes;
  for (int i = 0; i < 6; ++i)
    for (int l = 0; l < 4; ++l) codes.push_back(i == 5 ? (l == 3 ? 2 : 1) : i);
  ds.catalog = std::make_shared<const ItemCatalog>(Vocabulary(4, 8), codes);
  ds.train = {{0, 1, 2, 3}, {4}, {5, 0}};
  ds.valid = {{4, 5}, {}, {1}};
  ds.test = {{}, {2, 3}, {3}};
  return ds;
}

TEST(DataSamplesTest, TrainValidTest) {
  const auto ds = toy_dataset();
  const auto all = make_train_samples(ds, TrainSamples::AllPrefixes, 20);
  ASSERT_EQ(all.size(), 4u);  // user 0: 3 prefixes, user 1: none, user 2: 1
  EXPECT_EQ(all[0].history, (std::vector<int64_t>{0}));
  EXPECT_EQ(all[0].targets, (std::vector<int64_t>{1}));
  EXPECT_EQ(all[2].history, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(all[2].targets, (std::vector<int64_t>{3}));
  EXPECT_EQ(all[3].user, 2);
  const auto last = make_train_samples(ds, TrainSamples::Last, 2);
  ASSERT_EQ(last.size(), 2u);
  EXPECT_EQ(last[0].history, (std::vector<int64_t>{1, 2}));  // cut to the last 2
  EXPECT_EQ(last[0].targets, (std::vector<int64_t>{3}));
  const auto valid = make_valid_samples(ds, 20);
  ASSERT_EQ(valid.size(), 2u);
  EXPECT_EQ(valid[0].targets, (std::vector<int64_t>{4}));  // the first valid item only
  EXPECT_EQ(valid[0].history, (std::vector<int64_t>{0, 1, 2, 3}));
  const auto test = make_test_samples(ds, 3);
  ASSERT_EQ(test.size(), 2u);
  EXPECT_EQ(test[0].user, 1);
  EXPECT_EQ(test[0].targets, (std::vector<int64_t>{2, 3}));  // all test items
  EXPECT_EQ(test[0].history, (std::vector<int64_t>{4}));
  EXPECT_EQ(test[1].history, (std::vector<int64_t>{5, 0, 1}));  // train + valid
  EXPECT_EQ(parse_train_samples("last"), TrainSamples::Last);
  EXPECT_THROW(parse_train_samples("every"), Error);
}

TEST(DataSamplesTest, OnePassWindowsCoverEveryTargetOnce) {
  const auto ds = toy_dataset();
  // history_len 2: user 0 (0 1 2 3) gives windows [0 | 1 2] and [2 | 3]; user 2 (5 0) gives [5 | 0].
  const auto w = make_train_samples(ds, TrainSamples::OnePass, 2);
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0].history, (std::vector<int64_t>{0}));
  EXPECT_EQ(w[0].targets, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(w[1].history, (std::vector<int64_t>{2}));
  EXPECT_EQ(w[1].targets, (std::vector<int64_t>{3}));
  EXPECT_EQ(w[2].user, 2);
  EXPECT_EQ(w[2].targets, (std::vector<int64_t>{0}));
  // Within history_len one window per user, predicting the same items as all_prefixes.
  const auto one = make_train_samples(ds, TrainSamples::OnePass, 20);
  ASSERT_EQ(one.size(), 2u);
  EXPECT_EQ(one[0].targets, (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(parse_train_samples("one_pass"), TrainSamples::OnePass);
}

TEST(DataSamplesTest, StreamRowsArePrefixesOfTheOnePassRow) {
  const auto ds = toy_dataset();
  const auto& v = ds.catalog->vocab();
  const PromptFormat fmt(ds.catalog, PromptLayout::from_config("stream", true));
  const std::vector<int64_t> two = {2};
  EXPECT_EQ(fmt.prompt(two), (std::vector<int64_t>{Vocabulary::kBos, v.code_token(0, 2), v.code_token(1, 2),
                                                   v.code_token(2, 2), v.code_token(3, 2), Vocabulary::kEos}));
  EXPECT_EQ(fmt.prompt_length(3), 1 + 3 * 5);
  const auto prefixes = make_train_samples(ds, TrainSamples::AllPrefixes, 20);
  const auto pass = make_train_samples(ds, TrainSamples::OnePass, 20);
  const auto whole = collate_train(std::span<const Sample>(pass.data(), 1), fmt);  // user 0: 0 | 1 2 3
  ASSERT_EQ(whole.lengths[0].item<int64_t>(), 1 + 4 * 5);
  EXPECT_EQ((whole.targets != kIgnoreIndex).sum().item<int64_t>(), 3 * 5);
  for (size_t i = 0; i < 3; ++i) {  // user 0's three prefixes
    const auto row = collate_train(std::span<const Sample>(&prefixes[i], 1), fmt);
    const int64_t n = row.lengths[0].item<int64_t>();
    EXPECT_TRUE(at::equal(row.tokens[0], whole.tokens[0].slice(0, 0, n))) << i;
    // Its targets are the one-pass row's over its own response.
    const int64_t p = row.prompt_lengths[0].item<int64_t>();
    EXPECT_TRUE(at::equal(row.targets[0].slice(0, p - 1, n - 1), whole.targets[0].slice(0, p - 1, n - 1))) << i;
  }
  EXPECT_THROW(PromptLayout::from_config("stream", false), Error);
  EXPECT_THROW(PromptLayout::from_config("text", true), Error);
}

TEST(DataSamplesTest, PromptTokens) {
  const auto ds = toy_dataset();
  const auto& v = ds.catalog->vocab();
  const PromptFormat with_sep(ds.catalog, PromptLayout{}), no_sep(ds.catalog, PromptLayout{PromptLayout::Kind::Resp, false});
  const std::vector<int64_t> h = {2, 5};
  const std::vector<int64_t> expect = {Vocabulary::kBos,
                                       v.code_token(0, 2), v.code_token(1, 2), v.code_token(2, 2), v.code_token(3, 2), Vocabulary::kSep,
                                       v.code_token(0, 1), v.code_token(1, 1), v.code_token(2, 1), v.code_token(3, 2), Vocabulary::kSep,
                                       Vocabulary::kResp};
  EXPECT_EQ(with_sep.prompt(h), expect);
  EXPECT_EQ(with_sep.prompt_length(2), 12);
  EXPECT_EQ(no_sep.prompt(h).size(), 10u);
  EXPECT_EQ(no_sep.prompt_length(2), 10);
  EXPECT_EQ(with_sep.response(3), (std::vector<int64_t>{v.code_token(0, 3), v.code_token(1, 3), v.code_token(2, 3),
                                                        v.code_token(3, 3), Vocabulary::kEos}));
}

TEST(DataSamplesTest, CollateTrainPadsAndShiftsTargets) {
  const auto ds = toy_dataset();
  const PromptFormat fmt(ds.catalog, PromptLayout{});
  std::vector<Sample> s = {{0, {0}, {1}}, {2, {5, 0, 1}, {3}}};
  const auto b = collate_train(std::span<const Sample>(s), fmt);
  // Row 0: prompt 7 + response 5 = 12; row 1: 17 + 5 = 22.
  ASSERT_EQ(b.tokens.sizes(), (std::vector<int64_t>{2, 22}));
  EXPECT_EQ(b.prompt_lengths[0].item<int64_t>(), 7);
  EXPECT_EQ(b.lengths[0].item<int64_t>(), 12);
  EXPECT_EQ(b.lengths[1].item<int64_t>(), 22);
  EXPECT_EQ(b.tokens[0][12].item<int64_t>(), Vocabulary::kPad);
  EXPECT_FALSE(b.attention_mask[0][12].item<bool>());
  EXPECT_TRUE(b.attention_mask[0][11].item<bool>());
  EXPECT_EQ(b.positions[0][11].item<int64_t>(), 11);
  EXPECT_EQ(b.positions[0][15].item<int64_t>(), 0);
  // Targets: positions 6..10 predict c1..c4, EOS; everything else -100.
  const auto t = b.targets[0];
  for (int64_t i = 0; i < 22; ++i) {
    if (i >= 6 && i <= 10)
      EXPECT_EQ(t[i].item<int64_t>(), b.tokens[0][i + 1].item<int64_t>()) << i;
    else
      EXPECT_EQ(t[i].item<int64_t>(), kIgnoreIndex) << i;
  }
  EXPECT_EQ(t[6].item<int64_t>(), ds.catalog->vocab().code_token(0, 1));
  EXPECT_EQ(t[10].item<int64_t>(), Vocabulary::kEos);
  EXPECT_EQ((b.targets != kIgnoreIndex).sum().item<int64_t>(), 10);
  EXPECT_EQ(b.users, (std::vector<int64_t>{0, 2}));
  const auto p = collate_prompts(std::span<const Sample>(s), fmt);
  EXPECT_EQ(p.tokens.size(1), 17);
  EXPECT_FALSE(p.targets.defined());
  EXPECT_EQ(p.tokens[0][6].item<int64_t>(), Vocabulary::kResp);
}

TEST(DataSamplesTest, PackedMatchesPadded) {
  const auto ds = toy_dataset();
  const PromptFormat fmt(ds.catalog, PromptLayout{PromptLayout::Kind::Resp, false});
  std::vector<Sample> s = {{0, {0}, {1}}, {2, {5, 0, 1}, {3}}, {1, {}, {4}}};
  std::vector<const Sample*> ptr = {&s[0], &s[1], &s[2]};
  const auto padded = collate_train(std::span<const Sample* const>(ptr), fmt);
  const auto packed = collate_train_packed(std::span<const Sample* const>(ptr), fmt);
  EXPECT_TRUE(at::equal(packed.cu_seqlens, at::cumsum(at::cat({at::zeros({1}, at::kLong), padded.lengths}), 0)));
  for (int64_t b = 0; b < 3; ++b) {
    const int64_t off = packed.cu_seqlens[b].item<int64_t>();
    const int64_t n = padded.lengths[b].item<int64_t>();
    EXPECT_TRUE(at::equal(packed.tokens.slice(0, off, off + n), padded.tokens[b].slice(0, 0, n)));
    EXPECT_TRUE(at::equal(packed.targets.slice(0, off, off + n), padded.targets[b].slice(0, 0, n)));
    EXPECT_TRUE(at::equal(packed.positions.slice(0, off, off + n), padded.positions[b].slice(0, 0, n)));
  }
}

TEST(DataSamplesTest, SeededShuffleIsPinned) {
  std::vector<int> v = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  std::mt19937_64 rng(2023);
  seeded_shuffle(v, rng);
  std::vector<int> again = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  std::mt19937_64 rng2(2023);
  seeded_shuffle(again, rng2);
  EXPECT_EQ(v, again);
  EXPECT_NE(v, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  std::set<int> seen(v.begin(), v.end());
  EXPECT_EQ(seen.size(), 10u);
  // mt19937_64's sequence is fixed by the standard; the first draw is pinned here.
  std::mt19937_64 r(5489u);
  EXPECT_EQ(r(), 14514284786278117030ULL);
}

TEST(DataSamplesTest, ShardsPartitionTheEpoch) {
  const int64_t n = 103;
  for (auto tail : {ShardTail::Drop, ShardTail::Pad, ShardTail::Uneven}) {
    std::vector<int64_t> all;
    std::set<size_t> sizes;
    for (int r = 0; r < 4; ++r) {
      const auto s = shard_indices(n, 7, 3, true, r, 4, tail);
      EXPECT_EQ(s, shard_indices(n, 7, 3, true, r, 4, tail));  // deterministic
      sizes.insert(s.size());
      all.insert(all.end(), s.begin(), s.end());
    }
    std::set<int64_t> distinct(all.begin(), all.end());
    if (tail == ShardTail::Drop) {
      EXPECT_EQ(sizes, (std::set<size_t>{25}));
      EXPECT_EQ(distinct.size(), 100u);
    } else if (tail == ShardTail::Pad) {
      EXPECT_EQ(sizes, (std::set<size_t>{26}));
      EXPECT_EQ(distinct.size(), 103u);
    } else {
      EXPECT_EQ(all.size(), 103u);
      EXPECT_EQ(distinct.size(), 103u);
    }
  }
  // Epochs differ; no shuffle keeps the order.
  EXPECT_NE(shard_indices(n, 7, 0, true, 0, 1), shard_indices(n, 7, 1, true, 0, 1));
  EXPECT_EQ(shard_indices(10, 7, 0, false, 1, 3, ShardTail::Uneven), (std::vector<int64_t>{1, 4, 7}));
}

}  // namespace
}  // namespace atspeed
