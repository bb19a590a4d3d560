#include "core/vocab/prompt.h"

#include "core/config.h"
#include "core/errors.h"

namespace atspeed {

PromptLayout PromptLayout::from_config(const std::string& prompt_format, bool sep_token) {
  PromptLayout l;
  l.sep_token = sep_token;
  if (prompt_format == "resp") {
    l.kind = Kind::Resp;
  } else if (prompt_format == "stream") {
    l.kind = Kind::Stream;
    config_ensure(sep_token, "data.sep_token",
                  "must be true with data.prompt_format=stream (every item there ends with EOS, which marks "
                  "the item boundaries)");
  } else {
    config_ensure(false, "data.prompt_format", "must be resp or stream (got '" + prompt_format + "')");
  }
  return l;
}

void append_prompt_tokens(const ItemCatalog& catalog, std::span<const int64_t> history, const PromptLayout& layout,
                          std::vector<int64_t>& out) {
  out.push_back(Vocabulary::kBos);
  for (int64_t item : history) {
    catalog.append_item_tokens(item, out);
    if (layout.is_stream()) {
      out.push_back(Vocabulary::kEos);
    } else if (layout.sep_token) {
      out.push_back(Vocabulary::kSep);
    }
  }
  if (!layout.is_stream()) out.push_back(Vocabulary::kResp);
}

}  // namespace atspeed
