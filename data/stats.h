// Dataset statistics of SPEC §1.2 (splits) and §1.3 (semantic-ID index), for `atspeed data stats`.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace atspeed {

struct DatasetStats {
  std::string name;
  // §1.2
  int64_t users = 0;
  int64_t items = 0;
  std::array<int64_t, 3> interactions{};       // train, valid, test
  int64_t total_interactions = 0;
  std::array<double, 3> share{};               // fraction of the total
  std::array<int64_t, 3> users_nonempty{};     // users with a non-empty list per split
  int64_t train_len_min = 0;
  int64_t train_len_max = 0;
  double train_len_mean = 0;
  int64_t train_len_one = 0;                   // users whose training sequence has length 1
  int64_t train_len_zero = 0;                  // users with an empty training sequence
  std::array<int64_t, 2> unseen_items{};       // distinct valid / test items never seen in train
  std::array<int64_t, 2> unseen_interactions{};// valid / test interactions with such items
  int64_t repeated_in_train = 0;               // repeated items within one user's training sequence
  std::array<int64_t, 6> test_users_by_count{};// users with 1, 2, 3, 4, 5, >=6 test items
  // §1.5 sample counts
  int64_t train_samples_last = 0;              // one per user with training length > 1
  int64_t train_samples_prefixes = 0;          // every prefix (i >= 1)
  int64_t valid_samples = 0;
  int64_t test_samples = 0;
  int history_len = 20;
  double test_history_mean = 0;                // train + valid, cut to history_len
  double test_history_capped = 0;              // fraction of test histories with >= history_len items
  // §1.3
  int64_t distinct_tuples = 0;
  int64_t collision_groups = 0;
  int64_t surplus_items = 0;
  std::map<int64_t, int64_t> collision_group_sizes;  // group size -> number of groups
  std::vector<int64_t> codes_used_per_level;
  int64_t distinct_code_tokens = 0;
  struct Fanout {
    int level = 0;  // 1-based level of the children
    double mean = 0;
    int64_t max = 0;
  };
  std::vector<Fanout> trie_fanout;             // levels 2..L
};

DatasetStats compute_stats(const Dataset& dataset, int history_len = 20);
// Human-readable report, one "key: value" line per count.
std::string format_stats(const DatasetStats& stats);
// The same as a JSON document (pretty-printed).
std::string stats_to_json(const DatasetStats& stats);

}  // namespace atspeed
