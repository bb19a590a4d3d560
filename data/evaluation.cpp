#include "data/evaluation.h"

#include <algorithm>
#include <random>

#include "core/errors.h"
#include "data/sampler.h"

namespace atspeed {

EvalUsers make_eval_users(const Dataset& ds, const PromptFormat& format, const std::string& split, int history_len,
                          int64_t max_users, std::optional<uint64_t> sample_seed, int64_t decode_seed) {
  ATSPEED_CHECK(split == "test" || split == "valid", "make_eval_users: split ", split);
  EvalUsers u;
  u.samples = split == "test" ? make_test_samples(ds, history_len) : make_valid_samples(ds, history_len);
  if (max_users > 0 && static_cast<int64_t>(u.samples.size()) > max_users) {
    if (sample_seed) {
      std::mt19937_64 rng(*sample_seed);
      seeded_shuffle(u.samples, rng);
      u.samples.resize(static_cast<size_t>(max_users));
      std::sort(u.samples.begin(), u.samples.end(), [](const Sample& a, const Sample& b) { return a.user < b.user; });
    } else {
      u.samples.resize(static_cast<size_t>(max_users));
    }
  }
  ATSPEED_ENSURE(Data, !u.samples.empty(), "no ", split, " users in ", ds.dir);
  for (const auto& s : u.samples) {
    u.prompts.push_back(format.prompt(s.history));
    std::vector<int64_t> t;
    for (int64_t item : s.targets) t.push_back(ds.catalog->tuple_of_item(item));
    u.truth.push_back(std::move(t));
    u.seeds.push_back(static_cast<uint64_t>(decode_seed + s.user));
  }
  return u;
}

std::vector<int64_t> ranking_of(const ItemCatalog& catalog, const std::vector<decode::Beam>& beams, int64_t* non_items) {
  std::vector<int64_t> ranking;
  ranking.reserve(beams.size());
  for (const auto& b : beams) {
    const int64_t tuple = catalog.find_tuple_by_tokens(b.tokens);
    if (tuple < 0 && non_items != nullptr) ++*non_items;
    ranking.push_back(tuple);
  }
  return ranking;
}

}  // namespace atspeed
