// The synthetic dataset generator and semantic-ID generation.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/errors.h"
#include "core/vocab/constraint.h"
#include "data/dataset.h"
#include "data/lcrec.h"
#include "data/semantic_ids.h"
#include "data/stats.h"
#include "data/synth.h"
#include "tests/test_util.h"

namespace atspeed {
namespace {

SynthOptions small() {
  SynthOptions o;
  o.users = 400;
  o.items = 300;
  o.seed = 11;
  return o;
}

TEST(SynthTest, DeterministicAndLoadable) {
  test::TempDir a, b;
  generate_synthetic_dataset(a.str("d"), small());
  generate_synthetic_dataset(b.str("d"), small());
  for (const char* f : {"sequential_train.txt", "sequential_valid.txt", "sequential_test.txt", "synthetic.LCRec-1e-3lr.json"})
    EXPECT_EQ(read_text_file(a.str("d/") + f), read_text_file(b.str("d/") + f)) << f;
  const auto ds = load_dataset(a.str("d"));
  const auto s = compute_stats(ds);
  EXPECT_GT(s.users, 300);
  EXPECT_LE(s.items, 300);
  EXPECT_EQ(s.train_len_min, 2);        // users with < 2 training items are dropped
  EXPECT_EQ(s.repeated_in_train, 0);
  EXPECT_GT(s.share[0], 0.75);          // global-time split: most interactions train
  EXPECT_GT(s.users_nonempty[1], 0);
  EXPECT_GT(s.users_nonempty[2], 0);
  EXPECT_EQ(s.codes_used_per_level[0], 16);  // one first-level code per cluster
  // A different seed gives other data.
  SynthOptions o = small();
  o.seed = 12;
  generate_synthetic_dataset(b.str("e"), o);
  EXPECT_NE(read_text_file(a.str("d/sequential_train.txt")), read_text_file(b.str("e/sequential_train.txt")));
}

TEST(SynthTest, NextItemIsPredictableFromLeadingCodes) {
  test::TempDir dir;
  generate_synthetic_dataset(dir.str("d"), small());
  const auto ds = load_dataset(dir.str("d"));
  int64_t same = 0, pairs = 0;
  for (const auto& seq : ds.train)
    for (size_t i = 1; i < seq.size(); ++i) {
      same += ds.catalog->codes(seq[i])[0] == ds.catalog->codes(seq[i - 1])[0];
      ++pairs;
    }
  // 16 clusters: chance is ~1/16; the walk stays with probability 0.8.
  EXPECT_GT(static_cast<double>(same) / static_cast<double>(pairs), 0.6);
}

TEST(SynthTest, EnsureRegeneratesOnlyWhenParametersChange) {
  test::TempDir dir;
  ensure_synthetic_dataset(dir.str("d"), small());
  const std::string before = read_text_file(dir.str("d/sequential_train.txt"));
  const auto t0 = std::filesystem::last_write_time(dir.str("d/sequential_train.txt"));
  ensure_synthetic_dataset(dir.str("d"), small());
  EXPECT_EQ(std::filesystem::last_write_time(dir.str("d/sequential_train.txt")), t0);
  SynthOptions o = small();
  o.users = 500;
  ensure_synthetic_dataset(dir.str("d"), o);
  EXPECT_NE(read_text_file(dir.str("d/sequential_train.txt")), before);
  EXPECT_NE(read_text_file(dir.str("d/synth.json")).find("\"users\": 500"), std::string::npos);
}

TEST(SynthTest, NeverOverwritesADatasetItDidNotGenerate) {
  // A real dataset (no synth.json marker) in the target directory is left untouched.
  test::TempDir dir;
  std::filesystem::create_directories(dir.str("real"));
  { std::ofstream(dir.str("real/sequential_train.txt")) << "1 2 3\n"; }
  try {
    ensure_synthetic_dataset(dir.str("real"), small());
    FAIL() << "overwrote a foreign dataset";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_NE(e.message().find("sequential_train.txt"), std::string::npos) << e.message();
  }
  EXPECT_EQ(read_text_file(dir.str("real/sequential_train.txt")), "1 2 3\n");
  EXPECT_FALSE(std::filesystem::exists(dir.str("real/synth.json")));
}

TEST(SynthTest, ResidualKmeansGivesUniqueTuples) {
  // 600 random points in 8-d with a tiny codebook (4 x 3 levels = 64 tuples < 600 items): the
  // disambiguation cannot fix everything and reports it; with codebook 16 it can.
  at::manual_seed(0);
  const auto x = at::randn({600, 8}, at::TensorOptions().dtype(at::kFloat)).mul(3);
  SemanticIdOptions o;
  o.kmeans_iters = 5;
  SemanticIdReport rep;
  const Vocabulary big(3, 16);
  const auto codes = residual_kmeans_codes(x, big, o, &rep);
  const ItemCatalog cat(big, codes);
  EXPECT_EQ(cat.surplus_items(), rep.collisions_after);
  EXPECT_EQ(rep.collisions_after, 0);
  const Vocabulary tiny(3, 4);
  const ItemCatalog t(tiny, residual_kmeans_codes(x, tiny, o, &rep));
  EXPECT_EQ(t.surplus_items(), rep.collisions_after);
  EXPECT_GE(rep.collisions_after, 600 - 64);
  // Deterministic for a seed.
  EXPECT_EQ(residual_kmeans_codes(x, big, o), codes);
}

TEST(SynthTest, InteractionVectorsSeparateClusters) {
  // Two groups of users who never share items: items of different groups get distant vectors.
  UserSequences train;
  for (int u = 0; u < 40; ++u) train.push_back(u % 2 ? std::vector<int64_t>{0, 1, 2} : std::vector<int64_t>{3, 4, 5});
  SemanticIdOptions o;
  o.svd_dim = 4;
  const auto v = interaction_item_vectors(train, 6, o);
  ASSERT_EQ(v.sizes(), (std::vector<int64_t>{6, 4}));
  const auto d_in = (v[0] - v[1]).norm().item<float>();
  const auto d_out = (v[0] - v[3]).norm().item<float>();
  EXPECT_LT(d_in * 10, d_out);
}

}  // namespace
}  // namespace atspeed
