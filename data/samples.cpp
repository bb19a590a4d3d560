#include "data/samples.h"

#include <algorithm>

#include "core/errors.h"
#include "core/vocab/prompt.h"

namespace atspeed {

TrainSamples parse_train_samples(const std::string& text) {
  if (text == "all_prefixes") return TrainSamples::AllPrefixes;
  if (text == "last") return TrainSamples::Last;
  if (text == "one_pass") return TrainSamples::OnePass;
  ATSPEED_THROW(Config, "unknown sample mode '", text, "' (all_prefixes, last or one_pass)");
}

namespace {
std::vector<int64_t> last_n(const std::vector<int64_t>& seq, size_t end, int history_len) {
  const size_t begin = end > static_cast<size_t>(history_len) ? end - static_cast<size_t>(history_len) : 0;
  return {seq.begin() + static_cast<std::ptrdiff_t>(begin), seq.begin() + static_cast<std::ptrdiff_t>(end)};
}
}  // namespace

std::vector<Sample> make_train_samples(const Dataset& ds, TrainSamples mode, int history_len) {
  ATSPEED_CHECK(history_len >= 1, "history_len ", history_len);
  std::vector<Sample> out;
  for (int64_t u = 0; u < ds.num_users(); ++u) {
    const auto& seq = ds.train[static_cast<size_t>(u)];
    if (seq.size() < 2) continue;
    if (mode == TrainSamples::OnePass) {
      const auto stride = static_cast<size_t>(history_len);
      for (size_t begin = 0; begin + 1 < seq.size(); begin += stride) {
        const size_t end = std::min(seq.size(), begin + stride + 1);
        out.push_back({u, {seq[begin]}, {seq.begin() + static_cast<std::ptrdiff_t>(begin + 1),
                                         seq.begin() + static_cast<std::ptrdiff_t>(end)}});
      }
      continue;
    }
    const size_t first = mode == TrainSamples::AllPrefixes ? 1 : seq.size() - 1;
    for (size_t i = first; i < seq.size(); ++i) out.push_back({u, last_n(seq, i, history_len), {seq[i]}});
  }
  return out;
}

std::vector<Sample> make_valid_samples(const Dataset& ds, int history_len) {
  std::vector<Sample> out;
  for (int64_t u = 0; u < ds.num_users(); ++u) {
    const auto& v = ds.valid[static_cast<size_t>(u)];
    if (v.empty()) continue;
    const auto& t = ds.train[static_cast<size_t>(u)];
    out.push_back({u, last_n(t, t.size(), history_len), {v.front()}});
  }
  return out;
}

std::vector<Sample> make_test_samples(const Dataset& ds, int history_len) {
  std::vector<Sample> out;
  for (int64_t u = 0; u < ds.num_users(); ++u) {
    const auto& te = ds.test[static_cast<size_t>(u)];
    if (te.empty()) continue;
    std::vector<int64_t> h = ds.train[static_cast<size_t>(u)];
    const auto& v = ds.valid[static_cast<size_t>(u)];
    h.insert(h.end(), v.begin(), v.end());
    out.push_back({u, last_n(h, h.size(), history_len), te});
  }
  return out;
}

PromptFormat::PromptFormat(std::shared_ptr<const ItemCatalog> catalog, PromptLayout layout)
    : catalog_(std::move(catalog)), layout_(layout) {
  ATSPEED_CHECK(catalog_ != nullptr, "null catalogue");
  ATSPEED_ENSURE(Config, layout_.is_text() == catalog_->vocab().is_text(), "data.prompt_format: ",
                 layout_.format_name(), " needs ", layout_.is_text() ? "a tokenizer (data.tokenizer)" : "no tokenizer",
                 ", but the vocabulary is ", catalog_->vocab().describe());
}

int64_t PromptFormat::prompt_length(std::span<const int64_t> history) const {
  if (!layout_.is_text()) return prompt_length(static_cast<int64_t>(history.size()));
  std::vector<int64_t> ids;
  append_prompt(history, ids);
  return static_cast<int64_t>(ids.size());
}

int64_t PromptFormat::prompt_length(int64_t history_items) const {
  ATSPEED_CHECK(!layout_.is_text(), "a text prompt's length depends on its items");
  return layout_.prompt_token_count(catalog_->levels(), history_items);
}

void PromptFormat::append_prompt(std::span<const int64_t> history, std::vector<int64_t>& out) const {
  append_prompt_tokens(*catalog_, history, layout_, out);  // the layout lives in core, shared with serve/
}

std::vector<int64_t> PromptFormat::prompt(std::span<const int64_t> history) const {
  std::vector<int64_t> out;
  if (!layout_.is_text()) out.reserve(static_cast<size_t>(prompt_length(static_cast<int64_t>(history.size()))));
  append_prompt(history, out);
  return out;
}

std::vector<int64_t> PromptFormat::response(int64_t item) const {
  auto out = catalog_->item_tokens(item);
  out.push_back(Vocabulary::kEos);
  return out;
}

}  // namespace atspeed
