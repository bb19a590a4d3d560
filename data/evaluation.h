// What eval and bench decode share: the users a run decodes (prompts, ground truth, seeds) and how a
// decoded list becomes a ranking of catalogue tuples for Recall@K / NDCG@K (SPEC §5.1).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/decode/beam_search.h"
#include "data/dataset.h"
#include "data/samples.h"

namespace atspeed {

struct EvalUsers {
  std::vector<Sample> samples;                // in decode order
  std::vector<std::vector<int64_t>> prompts;  // token ids (SPEC §1.6), one per sample
  std::vector<std::vector<int64_t>> truth;    // catalogue tuples of the sample's targets
  std::vector<uint64_t> seeds;                // decode_seed + user id (sampling, relaxed)
  size_t size() const { return samples.size(); }
};

// The users of `split` ("test": history = train + valid; "valid": history = train). max_users 0 =
// all; else the first max_users, or with `sample_seed` a seeded sample of them (in user order).
// Error(Data) when the split has no users.
EvalUsers make_eval_users(const Dataset& ds, const PromptFormat& format, const std::string& split, int history_len,
                          int64_t max_users, std::optional<uint64_t> sample_seed, int64_t decode_seed);

// The catalogue tuples of decoded beams, best first; -1 for a code tuple that names no item (only
// the level constraint produces them), counted in *non_items when given.
std::vector<int64_t> ranking_of(const ItemCatalog& catalog, const std::vector<decode::Beam>& beams,
                                int64_t* non_items = nullptr);

}  // namespace atspeed
