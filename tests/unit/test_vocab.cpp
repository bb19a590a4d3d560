// Vocabulary, ItemCatalog, PrefixTrie and LevelMask.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/errors.h"
#include "core/vocab/constraint.h"
#include "core/vocab/item_catalog.h"
#include "core/vocab/vocabulary.h"

namespace atspeed {
namespace {

// 6 items, 4 levels, codebook 8: items 2 and 5 collide.
ItemCatalog small_catalog() {
  return ItemCatalog(Vocabulary(4, 8), {
                                           1, 2, 3, 4,  // item 0
                                           1, 2, 3, 5,  // item 1
                                           1, 6, 0, 0,  // item 2
                                           7, 0, 0, 1,  // item 3
                                           1, 2, 4, 4,  // item 4
                                           1, 6, 0, 0,  // item 5 (same as item 2)
                                       });
}

int64_t tok(const Vocabulary& v, int level, int code) { return v.code_token(level, code); }

TEST(VocabTest, DefaultLayout) {
  const Vocabulary v;
  EXPECT_EQ(v.size(), 1029);
  EXPECT_EQ(Vocabulary::kPad, 0);
  EXPECT_EQ(Vocabulary::kBos, 1);
  EXPECT_EQ(Vocabulary::kEos, 2);
  EXPECT_EQ(Vocabulary::kSep, 3);
  EXPECT_EQ(Vocabulary::kResp, 4);
  EXPECT_EQ(v.code_token(0, 0), 5);
  EXPECT_EQ(v.code_token(1, 12), 5 + 256 + 12);
  EXPECT_EQ(v.code_token(3, 255), 1028);
  EXPECT_EQ(v.level_of(5 + 256 + 12), 1);
  EXPECT_EQ(v.code_of(5 + 256 + 12), 12);
  EXPECT_EQ(v.level_of(Vocabulary::kEos), -1);
  EXPECT_EQ(v.level_of(1029), -1);
  EXPECT_EQ(v.token_string(5 + 256 + 12), "<b_12>");
  EXPECT_EQ(v.token_string(Vocabulary::kResp), "<RESP>");
  EXPECT_THROW(v.code_token(4, 0), Error);
  EXPECT_THROW(v.code_token(0, 256), Error);
  EXPECT_EQ(Vocabulary(3, 100).size(), 305);
  EXPECT_THROW(Vocabulary(0, 256), Error);
  EXPECT_THROW(Vocabulary(8, 1 << 20), Error);  // 160 bits do not pack into a key
}

TEST(CatalogTest, TuplesAndCollisions) {
  const auto c = small_catalog();
  EXPECT_EQ(c.num_items(), 6);
  EXPECT_EQ(c.num_tuples(), 5);
  EXPECT_EQ(c.surplus_items(), 1);
  const auto groups = c.collision_groups();
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0], (std::vector<int64_t>{2, 5}));
  // Tuples are numbered in ascending code order.
  EXPECT_EQ(c.tuple_of_item(0), 0);  // 1 2 3 4
  EXPECT_EQ(c.tuple_of_item(1), 1);  // 1 2 3 5
  EXPECT_EQ(c.tuple_of_item(4), 2);  // 1 2 4 4
  EXPECT_EQ(c.tuple_of_item(2), 3);  // 1 6 0 0
  EXPECT_EQ(c.tuple_of_item(3), 4);  // 7 0 0 1
  const auto& v = c.vocab();
  const std::vector<int64_t> t25 = {tok(v, 0, 1), tok(v, 1, 6), tok(v, 2, 0), tok(v, 3, 0)};
  EXPECT_EQ(c.items_for_tokens(t25), (std::vector<int64_t>{2, 5}));
  const std::vector<int64_t> none = {tok(v, 0, 1), tok(v, 1, 6), tok(v, 2, 0), tok(v, 3, 1)};
  EXPECT_TRUE(c.items_for_tokens(none).empty());
  const std::vector<int64_t> wrong_level = {tok(v, 1, 1), tok(v, 1, 6), tok(v, 2, 0), tok(v, 3, 0)};
  EXPECT_EQ(c.find_tuple_by_tokens(wrong_level), -1);
  EXPECT_EQ(c.item_tokens(3), (std::vector<int64_t>{tok(v, 0, 7), tok(v, 1, 0), tok(v, 2, 0), tok(v, 3, 1)}));
  EXPECT_EQ(c.codes_used_per_level(), (std::vector<int64_t>{2, 3, 3, 4}));
}

TEST(CatalogTest, RejectsBadCodes) {
  EXPECT_THROW(ItemCatalog(Vocabulary(4, 8), {1, 2, 3, 8}), Error);
  EXPECT_THROW(ItemCatalog(Vocabulary(4, 8), {1, 2, 3}), Error);
  EXPECT_THROW(ItemCatalog(Vocabulary(4, 8), {}), Error);
}

TEST(CatalogTest, FingerprintIsStableAndSensitive) {
  const auto a = small_catalog();
  EXPECT_EQ(a.fingerprint(), small_catalog().fingerprint());
  EXPECT_EQ(a.fingerprint().rfind("fnv1a64:", 0), 0u);
  EXPECT_NE(a.fingerprint().find(":items=6:levels=4:codebook=8"), std::string::npos);
  auto codes = a.all_codes();
  codes[23] = 1;  // one code of the last item
  EXPECT_NE(ItemCatalog(Vocabulary(4, 8), codes).fingerprint(), a.fingerprint());
  // Same codes, other codebook size: another index.
  EXPECT_NE(ItemCatalog(Vocabulary(4, 16), a.all_codes()).fingerprint(), a.fingerprint());
  // Pinned value: a change here breaks every checkpoint's index check.
  EXPECT_EQ(ItemCatalog(Vocabulary(1, 2), {0}).fingerprint(), "fnv1a64:7ab5b814b7dbaf37:items=1:levels=1:codebook=2");
}

TEST(TrieTest, AllowedTokensFollowRealItems) {
  const auto c = small_catalog();
  const auto& v = c.vocab();
  const PrefixTrie trie(c);
  auto allowed = [&](std::vector<int64_t> p) {
    const auto s = trie.allowed(p);
    return std::vector<int64_t>(s.begin(), s.end());
  };
  EXPECT_EQ(allowed({}), (std::vector<int64_t>{tok(v, 0, 1), tok(v, 0, 7)}));
  EXPECT_EQ(allowed({tok(v, 0, 1)}), (std::vector<int64_t>{tok(v, 1, 2), tok(v, 1, 6)}));
  EXPECT_EQ(allowed({tok(v, 0, 1), tok(v, 1, 2)}), (std::vector<int64_t>{tok(v, 2, 3), tok(v, 2, 4)}));
  EXPECT_EQ(allowed({tok(v, 0, 1), tok(v, 1, 2), tok(v, 2, 3)}), (std::vector<int64_t>{tok(v, 3, 4), tok(v, 3, 5)}));
  EXPECT_EQ(allowed({tok(v, 0, 1), tok(v, 1, 2), tok(v, 2, 3), tok(v, 3, 5)}), (std::vector<int64_t>{Vocabulary::kEos}));
  // Dead prefixes: a path no item takes, a code of the wrong level, a special token.
  EXPECT_TRUE(allowed({tok(v, 0, 2)}).empty());
  EXPECT_TRUE(allowed({tok(v, 0, 1), tok(v, 1, 3)}).empty());
  EXPECT_TRUE(allowed({tok(v, 1, 1)}).empty());
  EXPECT_TRUE(allowed({Vocabulary::kEos}).empty());
  EXPECT_TRUE(allowed({tok(v, 0, 1), tok(v, 1, 2), tok(v, 2, 3), tok(v, 3, 6)}).empty());
  // Leaves know their tuple; the collision tuple is one leaf with two items.
  const int32_t leaf = trie.node_for(std::vector<int64_t>{tok(v, 0, 1), tok(v, 1, 6), tok(v, 2, 0), tok(v, 3, 0)});
  ASSERT_NE(leaf, PrefixTrie::kNoNode);
  EXPECT_EQ(c.tuple_items(trie.tuple_at(leaf)), (std::vector<int64_t>{2, 5}));
  EXPECT_EQ(trie.depth(leaf), 4);
  // Incremental walk equals node_for.
  int32_t n = trie.root();
  for (int64_t t : {tok(v, 0, 7), tok(v, 1, 0), tok(v, 2, 0)}) n = trie.child(n, t);
  EXPECT_EQ(n, trie.node_for(std::vector<int64_t>{tok(v, 0, 7), tok(v, 1, 0), tok(v, 2, 0)}));
  EXPECT_EQ(trie.child(n, tok(v, 3, 0)), PrefixTrie::kNoNode);
  // Fan-out: level 2 children under a_1 (2) and a_7 (1).
  const auto f = trie.fanout(1);
  EXPECT_EQ(f.nodes, 2);
  EXPECT_DOUBLE_EQ(f.mean, 1.5);
  EXPECT_EQ(f.max, 2);
}

TEST(TrieTest, BatchedMasksReportDeadRows) {
  const auto c = small_catalog();
  const auto& v = c.vocab();
  const PrefixTrie trie(c);
  const auto prefixes = at::tensor(std::vector<int64_t>{tok(v, 0, 1), tok(v, 1, 2),   // alive
                                                        tok(v, 0, 7), tok(v, 1, 0),   // alive
                                                        tok(v, 0, 7), tok(v, 1, 5),   // dead
                                                        tok(v, 0, 1), Vocabulary::kPad},  // dead
                                   at::kLong)
                            .view({4, 2});
  at::Tensor alive;
  const auto mask = trie.allowed_mask(prefixes, &alive);
  ASSERT_EQ(mask.sizes(), (std::vector<int64_t>{4, v.size()}));
  EXPECT_EQ(mask.scalar_type(), at::kBool);
  EXPECT_TRUE(at::equal(alive, at::tensor(std::vector<uint8_t>{1, 1, 0, 0}).to(at::kBool)));
  EXPECT_EQ(mask[0].sum().item<int64_t>(), 2);
  EXPECT_TRUE(mask[0][tok(v, 2, 3)].item<bool>());
  EXPECT_TRUE(mask[0][tok(v, 2, 4)].item<bool>());
  EXPECT_EQ(mask[1].sum().item<int64_t>(), 1);
  EXPECT_EQ(mask[2].sum().item<int64_t>(), 0);
  EXPECT_EQ(mask[3].sum().item<int64_t>(), 0);
  const auto add = trie.additive_mask(prefixes);
  EXPECT_EQ(add.scalar_type(), at::kFloat);
  EXPECT_EQ(add[0][tok(v, 2, 3)].item<float>(), 0.0f);
  EXPECT_TRUE(std::isinf(add[0][tok(v, 2, 5)].item<float>()));
  EXPECT_TRUE(at::all(at::isinf(add[2])).item<bool>());
  // Depth 0 (shape [n, 0]) and depth == levels.
  const auto m0 = trie.allowed_mask(at::empty({3, 0}, at::kLong));
  EXPECT_EQ(m0.sum().item<int64_t>(), 6);
  const auto full = at::tensor(std::vector<int64_t>{tok(v, 0, 7), tok(v, 1, 0), tok(v, 2, 0), tok(v, 3, 1)}, at::kLong).view({1, 4});
  const auto m4 = trie.allowed_mask(full);
  EXPECT_TRUE(m4[0][Vocabulary::kEos].item<bool>());
  EXPECT_EQ(m4.sum().item<int64_t>(), 1);
  // Mixed depths.
  const auto mixed = at::tensor(std::vector<int64_t>{tok(v, 0, 1), tok(v, 1, 6), 0, 0, 0, 0}, at::kLong).view({2, 3});
  const auto md = trie.allowed_mask(mixed, at::tensor(std::vector<int64_t>{2, 0}, at::kLong), &alive);
  EXPECT_EQ(md[0].sum().item<int64_t>(), 1);
  EXPECT_TRUE(md[0][tok(v, 2, 0)].item<bool>());
  EXPECT_EQ(md[1].sum().item<int64_t>(), 2);
  EXPECT_TRUE(alive.all().item<bool>());
}

TEST(TrieTest, LevelMaskAllowsAnyUsedCode) {
  const auto c = small_catalog();
  const auto& v = c.vocab();
  const LevelMask lm(c);
  // a_1 b_2 is followed by every level-3 code in use (0, 3, 4), not only the trie's (3, 4).
  const auto s = lm.allowed(std::vector<int64_t>{tok(v, 0, 1), tok(v, 1, 2)});
  EXPECT_EQ(std::vector<int64_t>(s.begin(), s.end()), (std::vector<int64_t>{tok(v, 2, 0), tok(v, 2, 3), tok(v, 2, 4)}));
  // a_7 b_2 is no item but is allowed per level.
  EXPECT_FALSE(lm.allowed(std::vector<int64_t>{tok(v, 0, 7), tok(v, 1, 2)}).empty());
  // An unused code is dead.
  EXPECT_TRUE(lm.allowed(std::vector<int64_t>{tok(v, 0, 3)}).empty());
  const auto four = lm.allowed(std::vector<int64_t>{tok(v, 0, 7), tok(v, 1, 2), tok(v, 2, 4), tok(v, 3, 0)});
  EXPECT_EQ(std::vector<int64_t>(four.begin(), four.end()), (std::vector<int64_t>{Vocabulary::kEos}));
}

TEST(TrieTest, Factory) {
  const auto c = small_catalog();
  EXPECT_EQ(make_constraint("trie", c)->name(), "trie");
  EXPECT_EQ(make_constraint("level", c)->name(), "level");
  try {
    make_constraint("greedy", c);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config);
  }
}

}  // namespace
}  // namespace atspeed
