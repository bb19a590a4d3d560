#include "data/stats.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <limits>
#include <unordered_set>

#include "core/vocab/constraint.h"

namespace atspeed {

DatasetStats compute_stats(const Dataset& ds, int history_len) {
  DatasetStats s;
  s.name = ds.name;
  s.users = ds.num_users();
  s.items = ds.num_items();
  s.history_len = history_len;
  const UserSequences* splits[3] = {&ds.train, &ds.valid, &ds.test};
  for (int k = 0; k < 3; ++k)
    for (const auto& seq : *splits[k]) {
      s.interactions[static_cast<size_t>(k)] += static_cast<int64_t>(seq.size());
      s.users_nonempty[static_cast<size_t>(k)] += seq.empty() ? 0 : 1;
    }
  s.total_interactions = s.interactions[0] + s.interactions[1] + s.interactions[2];
  for (size_t k = 0; k < 3; ++k)
    s.share[k] = s.total_interactions ? static_cast<double>(s.interactions[k]) / static_cast<double>(s.total_interactions) : 0;

  std::vector<char> in_train(static_cast<size_t>(s.items), 0);
  s.train_len_min = std::numeric_limits<int64_t>::max();
  std::vector<int64_t> mark(static_cast<size_t>(s.items), -1);
  for (size_t u = 0; u < ds.train.size(); ++u) {
    const auto& seq = ds.train[u];
    const auto n = static_cast<int64_t>(seq.size());
    s.train_len_min = std::min(s.train_len_min, n);
    s.train_len_max = std::max(s.train_len_max, n);
    s.train_len_one += n == 1;
    s.train_len_zero += n == 0;
    if (n > 1) {
      ++s.train_samples_last;
      s.train_samples_prefixes += n - 1;
    }
    for (int64_t item : seq) {
      in_train[static_cast<size_t>(item)] = 1;
      if (mark[static_cast<size_t>(item)] == static_cast<int64_t>(u)) ++s.repeated_in_train;
      mark[static_cast<size_t>(item)] = static_cast<int64_t>(u);
    }
  }
  s.train_len_mean = s.users ? static_cast<double>(s.interactions[0]) / static_cast<double>(s.users) : 0;
  for (int k = 1; k < 3; ++k) {
    std::unordered_set<int64_t> unseen;
    for (const auto& seq : *splits[k])
      for (int64_t item : seq)
        if (!in_train[static_cast<size_t>(item)]) {
          unseen.insert(item);
          ++s.unseen_interactions[static_cast<size_t>(k - 1)];
        }
    s.unseen_items[static_cast<size_t>(k - 1)] = static_cast<int64_t>(unseen.size());
  }
  int64_t hist_total = 0, capped = 0;
  for (size_t u = 0; u < ds.test.size(); ++u) {
    const auto n = static_cast<int64_t>(ds.test[u].size());
    if (n == 0) continue;
    s.test_users_by_count[static_cast<size_t>(std::min<int64_t>(n, 6) - 1)] += 1;
    const auto h = static_cast<int64_t>(ds.train[u].size() + ds.valid[u].size());
    hist_total += std::min<int64_t>(h, history_len);
    capped += h >= history_len;  // SPEC §1.5 counts histories that reach the cap
  }
  s.valid_samples = s.users_nonempty[1];
  s.test_samples = s.users_nonempty[2];
  s.test_history_mean = s.test_samples ? static_cast<double>(hist_total) / static_cast<double>(s.test_samples) : 0;
  s.test_history_capped = s.test_samples ? static_cast<double>(capped) / static_cast<double>(s.test_samples) : 0;

  const ItemCatalog& cat = *ds.catalog;
  s.distinct_tuples = cat.num_tuples();
  s.surplus_items = cat.surplus_items();
  for (const auto& g : cat.collision_groups()) {
    ++s.collision_groups;
    ++s.collision_group_sizes[static_cast<int64_t>(g.size())];
  }
  s.codes_used_per_level = cat.codes_used_per_level();
  for (int64_t c : s.codes_used_per_level) s.distinct_code_tokens += c;
  const PrefixTrie trie(cat);
  for (int l = 1; l < cat.levels(); ++l) {
    const auto f = trie.fanout(l);
    s.trie_fanout.push_back({l + 1, f.mean, f.max});
  }
  return s;
}

std::string format_stats(const DatasetStats& s) {
  std::string o;
  auto line = [&](const std::string& key, const std::string& value) { o += fmt::format("{:<47}{}\n", key + ":", value); };
  line("dataset", s.name);
  line("users", std::to_string(s.users));
  line("items (index entries)", std::to_string(s.items));
  line("interactions train / valid / test",
       fmt::format("{} / {} / {}", s.interactions[0], s.interactions[1], s.interactions[2]));
  line("interactions total", std::to_string(s.total_interactions));
  line("share train / valid / test",
       fmt::format("{:.1f} % / {:.1f} % / {:.1f} %", 100 * s.share[0], 100 * s.share[1], 100 * s.share[2]));
  line("users with non-empty valid / test", fmt::format("{} / {}", s.users_nonempty[1], s.users_nonempty[2]));
  line("train length min / mean / max", fmt::format("{} / {:.2f} / {}", s.train_len_min, s.train_len_mean, s.train_len_max));
  line("users with train length 1", std::to_string(s.train_len_one));
  if (s.train_len_zero) line("users with empty train", std::to_string(s.train_len_zero));
  line("valid / test items never seen in train", fmt::format("{} / {}", s.unseen_items[0], s.unseen_items[1]));
  line("valid / test interactions with such items", fmt::format("{} / {}", s.unseen_interactions[0], s.unseen_interactions[1]));
  line("repeated items within a user's train", std::to_string(s.repeated_in_train));
  const auto& t = s.test_users_by_count;
  line("test users by test items (1,2,3,4,5,>=6)", fmt::format("{}, {}, {}, {}, {}, {}", t[0], t[1], t[2], t[3], t[4], t[5]));
  line("train samples: last per user / all prefixes", fmt::format("{} / {}", s.train_samples_last, s.train_samples_prefixes));
  line("valid / test samples", fmt::format("{} / {}", s.valid_samples, s.test_samples));
  line(fmt::format("test history mean / share reaching {}", s.history_len),
       fmt::format("{:.1f} / {:.1f} %", s.test_history_mean, 100 * s.test_history_capped));
  line("distinct code tuples", std::to_string(s.distinct_tuples));
  std::string sizes;
  for (const auto& [size, count] : s.collision_group_sizes)
    sizes += fmt::format("{}{} of size {}", sizes.empty() ? "" : ", ", count, size);
  line("collision groups / surplus items",
       fmt::format("{} / {}{}", s.collision_groups, s.surplus_items, sizes.empty() ? "" : " (" + sizes + ")"));
  std::string used;
  for (size_t l = 0; l < s.codes_used_per_level.size(); ++l)
    used += fmt::format("{}{}", l ? " / " : "", s.codes_used_per_level[l]);
  line("codes used per level", used);
  line("distinct code tokens", std::to_string(s.distinct_code_tokens));
  std::string levels, means, maxes;
  for (size_t i = 0; i < s.trie_fanout.size(); ++i) {
    levels += fmt::format("{}{}", i ? "/" : "", s.trie_fanout[i].level);
    means += fmt::format("{}{:.2f}", i ? " / " : "", s.trie_fanout[i].mean);
    maxes += fmt::format("{}{}", i ? " / " : "", s.trie_fanout[i].max);
  }
  line("trie fan-out mean at levels " + levels, means);
  line("trie fan-out max at levels " + levels, maxes);
  return o;
}

std::string stats_to_json(const DatasetStats& s) {
  nlohmann::json j;
  j["dataset"] = s.name;
  j["users"] = s.users;
  j["items"] = s.items;
  j["interactions"] = {{"train", s.interactions[0]}, {"valid", s.interactions[1]}, {"test", s.interactions[2]},
                       {"total", s.total_interactions}};
  j["share"] = {{"train", s.share[0]}, {"valid", s.share[1]}, {"test", s.share[2]}};
  j["users_nonempty"] = {{"train", s.users_nonempty[0]}, {"valid", s.users_nonempty[1]}, {"test", s.users_nonempty[2]}};
  j["train_length"] = {{"min", s.train_len_min}, {"mean", s.train_len_mean}, {"max", s.train_len_max},
                       {"users_with_length_1", s.train_len_one}, {"users_with_length_0", s.train_len_zero}};
  j["unseen_in_train"] = {{"valid_items", s.unseen_items[0]}, {"test_items", s.unseen_items[1]},
                          {"valid_interactions", s.unseen_interactions[0]}, {"test_interactions", s.unseen_interactions[1]}};
  j["repeated_in_train"] = s.repeated_in_train;
  j["test_users_by_count"] = s.test_users_by_count;  // 1, 2, 3, 4, 5, >=6
  j["samples"] = {{"train_last", s.train_samples_last}, {"train_all_prefixes", s.train_samples_prefixes},
                  {"valid", s.valid_samples}, {"test", s.test_samples}};
  j["test_history"] = {{"history_len", s.history_len}, {"mean", s.test_history_mean}, {"capped_share", s.test_history_capped}};
  nlohmann::json sizes = nlohmann::json::object();
  for (const auto& [size, count] : s.collision_group_sizes) sizes[std::to_string(size)] = count;
  j["index"] = {{"distinct_tuples", s.distinct_tuples}, {"collision_groups", s.collision_groups},
                {"surplus_items", s.surplus_items}, {"collision_group_sizes", sizes},
                {"codes_used_per_level", s.codes_used_per_level}, {"distinct_code_tokens", s.distinct_code_tokens}};
  nlohmann::json fan = nlohmann::json::array();
  for (const auto& f : s.trie_fanout) fan.push_back({{"level", f.level}, {"mean", f.mean}, {"max", f.max}});
  j["index"]["trie_fanout"] = fan;
  return j.dump(2) + "\n";
}

}  // namespace atspeed
