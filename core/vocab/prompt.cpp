#include "core/vocab/prompt.h"

#include "core/config.h"
#include "core/errors.h"
#include "core/vocab/tokenizer.h"

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
  } else if (prompt_format == "lcrec") {
    l.kind = Kind::Text;
  } else {
    config_ensure(false, "data.prompt_format", "must be resp, stream or lcrec (got '" + prompt_format + "')");
  }
  return l;
}

const char* const kLcrecPromptTemplate =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\nThe user has interacted with items {H} in chronological order. Can you predict the "
    "next possible item that the user may expect?\n\n### Response:";

std::string lcrec_prompt_text(const ItemCatalog& catalog, std::span<const int64_t> history) {
  std::string items;
  for (size_t i = 0; i < history.size(); ++i) {
    if (i > 0) items += ", ";
    const auto codes = catalog.codes(history[i]);
    for (int l = 0; l < catalog.levels(); ++l) items += Vocabulary::code_string(l, codes[static_cast<size_t>(l)]);
  }
  std::string text = kLcrecPromptTemplate;
  const size_t at = text.find("{H}");
  text.replace(at, 3, items);
  return text;
}

void append_prompt_tokens(const ItemCatalog& catalog, std::span<const int64_t> history, const PromptLayout& layout,
                          std::vector<int64_t>& out) {
  if (layout.is_text()) {
    const TextTokenizer* tok = catalog.vocab().tokenizer();
    ATSPEED_ENSURE(Config, tok != nullptr, "data.prompt_format",
                   ": lcrec is a text prompt and needs a tokenizer (data.tokenizer), but the vocabulary is tokenizer-free");
    tok->append_encoded(lcrec_prompt_text(catalog, history), /*add_bos=*/true, out);
    return;
  }
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
