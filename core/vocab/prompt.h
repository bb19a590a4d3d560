// The tokenizer-free prompt layout (SPEC §1.6) in one place, so training data (data/PromptFormat)
// and serving (serve/, which may use core only) build byte-identical prompts:
//   BOS, c1 c2 c3 c4 [SEP], ... (one group per history item, chronological), RESP
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/vocab/item_catalog.h"

namespace atspeed {

// Tokens of a prompt over `history_items` items: 2 + items * (levels + sep).
inline int64_t prompt_token_count(int levels, bool sep_token, int64_t history_items) {
  return 2 + history_items * (levels + (sep_token ? 1 : 0));
}

// Appends the prompt for `history` (0-based item ids, already cut to the history length) to `out`.
void append_prompt_tokens(const ItemCatalog& catalog, std::span<const int64_t> history, bool sep_token,
                          std::vector<int64_t>& out);

}  // namespace atspeed
