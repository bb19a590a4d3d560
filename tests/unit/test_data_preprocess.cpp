// Raw Amazon reviews -> splits (SPEC §1.4), on a small file whose split was computed by hand.
#include <gtest/gtest.h>
#include <zlib.h>

#include <fstream>
#include <map>

#include "core/errors.h"
#include "data/preprocess.h"
#include "data/sampler.h"
#include "tests/test_util.h"

namespace atspeed {
namespace {

// 24 lines. After the rating filter and deduplication: n = 20 interactions, k = floor(0.1 n) = 2,
// sorted times T: 100 x3, 200 x2, 300 x3, 400 x2, 500, 600, 700, 800, 900 x3, 1000 x3, so
// t1 = T[18] = 1000 and t2 = T[16] = 900. Times equal to 900 go to valid although two of them sit
// before index 16 (ties go to the later split); times of 1000 go to test.
const char* kReviews[] = {
    R"({"reviewerID": "A", "asin": "i1", "overall": 5.0, "unixReviewTime": 100})",
    R"({"reviewerID": "A", "asin": "i2", "overall": 5.0, "unixReviewTime": 200})",
    R"({"reviewerID": "B", "asin": "i1", "overall": 4.0, "unixReviewTime": 200})",
    R"({"reviewerID": "A", "asin": "i3", "overall": 5.0, "unixReviewTime": 300})",
    R"({"reviewerID": "C", "asin": "i3", "overall": 5.0, "unixReviewTime": 100})",
    R"({"reviewerID": "B", "asin": "i2", "overall": 5.0, "unixReviewTime": 300})",
    R"({"reviewerID": "A", "asin": "i2", "overall": 4.0, "unixReviewTime": 500})",  // repeat: keeps time 500, first position
    R"({"reviewerID": "E", "asin": "i9", "overall": 3.0, "unixReviewTime": 100})",  // rating < 4
    R"({"reviewerID": "C", "asin": "i4", "overall": 5, "unixReviewTime": 400})",
    R"({"reviewerID": "D", "asin": "i5", "overall": 5.0, "unixReviewTime": 900})",  // D: no training item -> dropped
    R"({"reviewerID": "B", "asin": "i5", "overall": 5.0, "unixReviewTime": 800})",
    R"({"reviewerID": "A", "asin": "i4", "overall": 5.0, "unixReviewTime": 900})",
    R"({"reviewerID": "B", "asin": "i6", "overall": 5.0, "unixReviewTime": 1000})",
    R"({"reviewerID": "C", "asin": "i2", "overall": 5.0, "unixReviewTime": 900})",
    R"({"reviewerID": "F", "asin": "i1", "overall": 5.0, "unixReviewTime": 100})",
    R"({"reviewerID": "F", "asin": "i6", "overall": 5.0, "unixReviewTime": 200})",
    R"({"reviewerID": "F", "asin": "i3", "overall": 5.0, "unixReviewTime": 300})",
    R"({"reviewerID": "F", "asin": "i4", "overall": 5.0, "unixReviewTime": 400})",
    R"({"reviewerID": "G", "asin": "i7", "overall": 5.0, "unixReviewTime": 500})",
    R"({"reviewerID": "G", "asin": "i8", "overall": 5.0, "unixReviewTime": 600})",
    R"({"reviewerID": "G", "asin": "i5", "overall": 5.0, "unixReviewTime": 700})",
    R"({"reviewerID": "G", "asin": "i7", "overall": 5.0, "unixReviewTime": 1000})",  // repeat: moves i7 to 1000
    R"({"reviewerID": "H", "asin": "i9", "overall": 3.9, "unixReviewTime": 100})",  // int(3.9) = 3 < 4
    // The 2018 format: extra fields, float rating.
    R"({"overall": 4.0, "verified": true, "vote": "2", "reviewTime": "01 1, 1970", "reviewerID": "B", "asin": "i9", "style": {"Size:": " Small"}, "unixReviewTime": 1000})",
};

std::string write_reviews(const test::TempDir& dir, bool gz) {
  std::string text;
  for (const char* line : kReviews) text += std::string(line) + "\n";
  if (!gz) {
    std::ofstream(dir.str("reviews.json")) << text;
    return dir.str("reviews.json");
  }
  const std::string p = dir.str("reviews.json.gz");
  gzFile f = gzopen(p.c_str(), "wb");
  gzwrite(f, text.data(), static_cast<unsigned>(text.size()));
  gzclose(f);
  return p;
}

// A split in raw ids: user -> sequence of asins.
using RawSplit = std::map<std::string, std::vector<std::string>>;
RawSplit raw(const SplitResult& r, const UserSequences& s) {
  RawSplit out;
  for (size_t u = 0; u < s.size(); ++u)
    for (int64_t i : s[u]) out[r.users[u]].push_back(r.items[static_cast<size_t>(i)]);
  return out;
}

TEST(PreprocessTest, HandComputedSplit) {
  test::TempDir dir;
  for (bool gz : {false, true}) {
    ReadReport rep;
    const auto reviews = read_amazon_reviews(write_reviews(dir, gz), 4, &rep);
    EXPECT_EQ(rep.lines, 24);
    EXPECT_EQ(rep.low_rating, 2);
    EXPECT_EQ(reviews.size(), 22u);
    const auto r = split_interactions(reviews, PreprocessOptions{});
    EXPECT_EQ(r.interactions, 20);
    EXPECT_EQ(r.t1, 1000);
    EXPECT_EQ(r.t2, 900);
    EXPECT_EQ(r.users_before_drop, 6);
    EXPECT_EQ(r.dropped_users, 1);
    EXPECT_EQ(r.users, (std::vector<std::string>{"A", "B", "C", "F", "G"}));
    EXPECT_EQ(raw(r, r.train), (RawSplit{{"A", {"i1", "i3", "i2"}},
                                         {"B", {"i1", "i2", "i5"}},
                                         {"C", {"i3", "i4"}},
                                         {"F", {"i1", "i6", "i3", "i4"}},
                                         {"G", {"i8", "i5"}}}));
    EXPECT_EQ(raw(r, r.valid), (RawSplit{{"A", {"i4"}}, {"C", {"i2"}}}));
    EXPECT_EQ(raw(r, r.test), (RawSplit{{"B", {"i6", "i9"}}, {"G", {"i7"}}}));
    EXPECT_TRUE(r.valid[1].empty() && r.test[0].empty());  // every user has a line in every split
    // Item ids: the sorted asins shuffled by the seeded Fisher-Yates.
    std::vector<std::string> expect = {"i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "i9"};
    std::mt19937_64 rng(2023);
    seeded_shuffle(expect, rng);
    EXPECT_EQ(r.items, expect);
  }
}

TEST(PreprocessTest, OptionsChangeTheSplit) {
  test::TempDir dir;
  const auto reviews = read_amazon_reviews(write_reviews(dir, false), 4);
  PreprocessOptions keep_all;
  keep_all.min_train = 0;
  const auto r = split_interactions(reviews, keep_all);
  EXPECT_EQ(r.users.size(), 6u);  // D stays, with an empty training list
  EXPECT_EQ(r.users[3], "D");
  EXPECT_TRUE(r.train[3].empty());
  PreprocessOptions other_seed;
  other_seed.item_seed = 7;
  EXPECT_NE(split_interactions(reviews, other_seed).items, split_interactions(reviews, PreprocessOptions{}).items);
  const auto all5 = read_amazon_reviews(dir.str("reviews.json"), 5);
  EXPECT_EQ(all5.size(), 19u);
}

TEST(PreprocessTest, ErrorsNameFileAndLine) {
  test::TempDir dir;
  auto expect_error = [&](const std::string& text, const std::string& needle) {
    std::ofstream(dir.str("bad.json")) << text;
    try {
      read_amazon_reviews(dir.str("bad.json"), 4);
      FAIL() << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Data);
      EXPECT_NE(e.message().find(needle), std::string::npos) << e.message();
    }
  };
  const std::string ok = std::string(kReviews[0]) + "\n";
  expect_error(ok + "{not json\n", "bad.json:2: not a JSON object");
  expect_error(ok + "\n" + R"({"reviewerID": "A", "overall": 5, "unixReviewTime": 1})" + "\n", "bad.json:3: missing field \"asin\"");
  expect_error(R"({"reviewerID": "A", "asin": "x", "overall": "5", "unixReviewTime": 1})", "\"overall\" must be a number");
  expect_error(R"({"reviewerID": "A", "asin": "x", "overall": 5, "unixReviewTime": "1"})", "\"unixReviewTime\" must be an integer");
  // Too few interactions for the 10 % split.
  std::vector<RawInteraction> few = {{"a", "x", 1}, {"a", "y", 2}};
  EXPECT_THROW(split_interactions(few, PreprocessOptions{}), Error);
}

}  // namespace
}  // namespace atspeed
