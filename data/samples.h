// Samples (SPEC §1.5, §9.7) and the tokenizer-free prompt (SPEC §1.6).
//
//   prompt   = BOS, c1 c2 c3 c4 [SEP], ... (history, chronological, last history_len items), RESP
//   response = c1 c2 c3 c4 EOS
// SEP (when on) follows every history item, the last one included, so each item takes
// levels + 1 tokens and the prompt length is 2 + history * (levels + sep).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "data/dataset.h"

namespace atspeed {

struct Sample {
  int64_t user = 0;
  std::vector<int64_t> history;  // chronological, already cut to history_len
  std::vector<int64_t> targets;  // one item for train/valid; all test items for test
};

enum class TrainSamples {
  AllPrefixes,  // target = items[i], history = items[:i] for i >= 1 (the target's training, §9.7)
  Last,         // one per user with >= 2 training items: the last one (teacher data, draft; §1.5)
};
// "all_prefixes" or "last"; Error(Config) otherwise.
TrainSamples parse_train_samples(const std::string& text);

// Users in order; within a user, prefixes in order.
std::vector<Sample> make_train_samples(const Dataset& ds, TrainSamples mode, int history_len);
// Users with a non-empty valid list: target = the first valid item, history = train.
std::vector<Sample> make_valid_samples(const Dataset& ds, int history_len);
// Users with a non-empty test list: targets = all test items, history = train + valid.
std::vector<Sample> make_test_samples(const Dataset& ds, int history_len);

class PromptFormat {
 public:
  PromptFormat(std::shared_ptr<const ItemCatalog> catalog, bool sep_token = true);

  std::vector<int64_t> prompt(std::span<const int64_t> history) const;
  void append_prompt(std::span<const int64_t> history, std::vector<int64_t>& out) const;
  // c1..cL EOS
  std::vector<int64_t> response(int64_t item) const;
  int64_t prompt_length(int64_t history_items) const { return 2 + history_items * item_width(); }
  int64_t response_length() const { return catalog_->levels() + 1; }
  int64_t item_width() const { return catalog_->levels() + (sep_ ? 1 : 0); }
  bool sep_token() const { return sep_; }
  const ItemCatalog& catalog() const { return *catalog_; }

 private:
  std::shared_ptr<const ItemCatalog> catalog_;
  bool sep_;
};

}  // namespace atspeed
