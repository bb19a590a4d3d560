// Samples (SPEC §1.5, §9.7) and the tokenizer-free prompt (SPEC §1.6; the layouts are in
// core/vocab/prompt.h: `resp` = BOS, items [SEP], RESP; `stream` = BOS, items each ending in EOS).
// The response is c1..cL EOS in both.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/vocab/prompt.h"
#include "data/dataset.h"

namespace atspeed {

struct Sample {
  int64_t user = 0;
  std::vector<int64_t> history;  // chronological, already cut to history_len
  // train/valid: the items a training row predicts, in order (one, except one_pass rows, whose
  // targets follow each other: target j's history is history + targets[:j]); test: all test items.
  std::vector<int64_t> targets;
};

enum class TrainSamples {
  AllPrefixes,  // target = items[i], history = items[:i] for i >= 1 (the target's training, §9.7)
  Last,         // one per user with >= 2 training items: the last one (teacher data, draft; §1.5)
  OnePass,      // every prefix, scored in one causal pass over windows of a user's sequence (stream layout):
                // a window is history_len + 1 consecutive items, the first is history, the others targets,
                // consecutive windows overlap by one item; so every items[i], i >= 1, is a target exactly once,
                // with at most history_len items of history (exactly AllPrefixes for users within history_len)
};
// "all_prefixes", "last" or "one_pass"; Error(Config) otherwise.
TrainSamples parse_train_samples(const std::string& text);

// Users in order; within a user, prefixes in order.
std::vector<Sample> make_train_samples(const Dataset& ds, TrainSamples mode, int history_len);
// Users with a non-empty valid list: target = the first valid item, history = train.
std::vector<Sample> make_valid_samples(const Dataset& ds, int history_len);
// Users with a non-empty test list: targets = all test items, history = train + valid.
std::vector<Sample> make_test_samples(const Dataset& ds, int history_len);

class PromptFormat {
 public:
  // Error(Config) when the layout and the vocabulary disagree (lcrec needs a text vocabulary, the
  // others a tokenizer-free one).
  PromptFormat(std::shared_ptr<const ItemCatalog> catalog, PromptLayout layout = {});

  std::vector<int64_t> prompt(std::span<const int64_t> history) const;
  void append_prompt(std::span<const int64_t> history, std::vector<int64_t>& out) const;
  // c1..cL EOS
  std::vector<int64_t> response(int64_t item) const;
  // Tokens of the prompt for this history (a text prompt is tokenized to count).
  int64_t prompt_length(std::span<const int64_t> history) const;
  // Tokenizer-free layouts only (their length depends on the item count alone).
  int64_t prompt_length(int64_t history_items) const;
  int64_t response_length() const { return catalog_->levels() + 1; }
  // Tokens of a training row: the prompt plus every target's response.
  int64_t row_length(const Sample& s) const {
    return prompt_length(s.history) + static_cast<int64_t>(s.targets.size()) * response_length();
  }
  const PromptLayout& layout() const { return layout_; }
  const ItemCatalog& catalog() const { return *catalog_; }

 private:
  std::shared_ptr<const ItemCatalog> catalog_;
  PromptLayout layout_;
};

}  // namespace atspeed
