#include "core/vocab/prompt.h"

namespace atspeed {

void append_prompt_tokens(const ItemCatalog& catalog, std::span<const int64_t> history, bool sep_token,
                          std::vector<int64_t>& out) {
  out.push_back(Vocabulary::kBos);
  for (int64_t item : history) {
    catalog.append_item_tokens(item, out);
    if (sep_token) out.push_back(Vocabulary::kSep);
  }
  out.push_back(Vocabulary::kResp);
}

}  // namespace atspeed
