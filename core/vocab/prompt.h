// The tokenizer-free prompt layouts (SPEC §1.6, §9.7) in one place, so training data
// (data/PromptFormat) and serving (serve/, which may use core only) build byte-identical prompts.
//
// data.prompt_format, recorded in every checkpoint's config and every teacher file:
//   resp    BOS, c1..cL [SEP], ... (one group per history item, chronological), RESP
//           response c1..cL EOS. SEP is data.sep_token. The layout of every checkpoint written
//           before the key existed.
//   stream  BOS, c1..cL EOS, ... (every history item ends with EOS; no RESP)
//           response c1..cL EOS.
//   lcrec   the LC-Rec text prompt of SPEC §1.6 (an Alpaca wrapper around "The user has interacted
//           with items {H} in chronological order. ...### Response:", {H} the item strings
//           "<a_47><b_103><c_234><d_99>" joined with ", "), tokenized by the vocabulary's
//           TextTokenizer with BOS; response c1..cL EOS right after "Response:". Needs a text
//           vocabulary (data.tokenizer).
// In `stream` a prompt followed by its response is the prompt of the next prefix, so one causal
// pass over a user's whole sequence scores every prefix at once (data.train_samples = one_pass);
// in `resp` and `lcrec` each prefix needs its own row, because text sits between the history and
// the response.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/vocab/item_catalog.h"

namespace atspeed {

struct PromptLayout {
  enum class Kind { Resp, Stream, Text };
  Kind kind = Kind::Resp;
  bool sep_token = true;  // resp: SEP after every history item; stream requires true (its items end with EOS)

  // From data.prompt_format ("resp", "stream" or "lcrec") and data.sep_token; Error(Config) naming the key.
  static PromptLayout from_config(const std::string& prompt_format, bool sep_token);
  std::string format_name() const { return kind == Kind::Stream ? "stream" : kind == Kind::Text ? "lcrec" : "resp"; }
  bool is_stream() const { return kind == Kind::Stream; }
  bool is_text() const { return kind == Kind::Text; }
  // Tokens each history item takes: levels, plus its SEP (resp with sep_token) or EOS (stream).
  int64_t item_width(int levels) const { return levels + ((is_stream() || sep_token) ? 1 : 0); }
  // Tokens of a tokenizer-free prompt over `history_items` items: BOS [+ RESP] + items * item_width.
  // A text prompt's length depends on the items; see prompt_length() in data/samples.h.
  int64_t prompt_token_count(int levels, int64_t history_items) const {
    return (is_stream() ? 1 : 2) + history_items * item_width(levels);
  }
  bool operator==(const PromptLayout&) const = default;
};

// The LC-Rec prompt template (SPEC §1.6); "{H}" stands for the joined item strings.
extern const char* const kLcrecPromptTemplate;
// The prompt text for `history` (lcrec): the template with {H} = item strings joined by ", ".
std::string lcrec_prompt_text(const ItemCatalog& catalog, std::span<const int64_t> history);

// Appends the prompt for `history` (0-based item ids, already cut to the history length) to `out`.
// lcrec needs catalog.vocab() to be a text vocabulary (Error(Config) otherwise).
void append_prompt_tokens(const ItemCatalog& catalog, std::span<const int64_t> history, const PromptLayout& layout,
                          std::vector<int64_t>& out);

}  // namespace atspeed
