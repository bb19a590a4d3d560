// Raw Amazon reviews -> the LC-Rec split layout, following SPEC §1.4 (data_process.ipynb):
//   1. JSON lines (.json or .json.gz; the 2014 5-core format and the 2018 format, which has extra
//      fields and a float "overall"), fields reviewerID, asin, overall, unixReviewTime;
//   2. keep int(overall) >= min_rating;
//   3. user -> {item -> time}: a repeated (user, item) keeps the last time but its first position;
//   4. stable sort of each user's items by time;
//   6. global time split: T = all times sorted, n = |T|, k = floor(test_fraction * n),
//      t1 = T[n - k], t2 = T[n - 2k]; train if time < t2, valid if t2 <= time < t1, test if
//      time >= t1 (ties at a threshold go to the later split);
//   7. drop users with fewer than min_train training interactions (all their splits);
//   8. items: the sorted unique raw ids of the remaining users, shuffled with a seeded
//      std::mt19937_64 Fisher–Yates (seeded_shuffle; Python's random.shuffle cannot be
//      reproduced bit for bit), numbered 0..n-1; users: remaining users in order of first
//      appearance among the kept reviews.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/lcrec.h"

namespace atspeed {

struct RawInteraction {
  std::string user;
  std::string item;
  int64_t time = 0;
};

struct PreprocessOptions {
  int min_rating = 4;
  double test_fraction = 0.1;  // the test share k/n; valid gets as many interactions (before step 7)
  int64_t min_train = 2;       // step 7; 0 keeps every user
  uint64_t item_seed = 2023;
};

struct ReadReport {
  int64_t lines = 0;
  int64_t kept = 0;          // rating >= min_rating
  int64_t low_rating = 0;
};

// Reads JSON-lines reviews (gzip detected from the content, not the name), keeping those with
// int(overall) >= min_rating, in file order. A malformed line or a missing/mistyped field is
// Error(Data) naming the file and line.
std::vector<RawInteraction> read_amazon_reviews(const std::string& path, int min_rating, ReadReport* report = nullptr);

struct SplitResult {
  std::vector<std::string> users;  // new user id -> raw user id
  std::vector<std::string> items;  // new item id -> raw item id
  UserSequences train, valid, test;
  int64_t interactions = 0;        // after step 3 (deduplicated)
  int64_t users_before_drop = 0;
  int64_t dropped_users = 0;
  int64_t t1 = 0, t2 = 0;          // the thresholds of step 6
};

// Steps 3-8 on interactions in file order (already rating-filtered).
SplitResult split_interactions(const std::vector<RawInteraction>& interactions, const PreprocessOptions& options);

// Writes sequential_{train,valid,test}.txt plus users.txt and items.txt (line k: the raw id of
// user/item k, 0-based) into dir.
void write_split_result(const std::string& dir, const SplitResult& result);

}  // namespace atspeed
