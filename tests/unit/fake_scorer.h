// A fake TreeScorer for search tests: the log-prob row after a slot is a function of the tokens on
// its path (root to slot), so any tree layout, batching or cache compaction gives bit-identical
// rows, and searches can be compared exactly.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <vector>

#include "core/decode/tree_scorer.h"

namespace atspeed::decode::test {

class FakeScorer final : public TreeScorer {
 public:
  using Table = std::function<std::vector<float>(const std::vector<int64_t>& path)>;
  // include_prompt: paths start with the prompt tokens (rows depend on the request); otherwise a
  // path holds only the tokens generated after the prompt.
  FakeScorer(int64_t vocab, Table table, bool include_prompt = false)
      : vocab_(vocab), table_(std::move(table)), include_prompt_(include_prompt) {}

  int64_t vocab_size() const override { return vocab_; }
  at::Tensor prefill(const std::vector<std::vector<int64_t>>& prompts) override {
    ++calls;
    paths_.assign(prompts.size(), {});
    prompt_lens_.clear();
    size_t width = 0;
    for (const auto& p : prompts) width = std::max(width, p.size());
    at::Tensor out = at::empty({static_cast<int64_t>(prompts.size()), vocab_}, at::kFloat);
    for (size_t r = 0; r < prompts.size(); ++r) {
      paths_[r].assign(width, {});
      if (include_prompt_) {
        for (size_t s = 0; s < prompts[r].size(); ++s) {
          paths_[r][s].assign(prompts[r].begin(), prompts[r].begin() + static_cast<std::ptrdiff_t>(s + 1));
        }
      }
      prompt_lens_.push_back(static_cast<int64_t>(prompts[r].size()));
      out[static_cast<int64_t>(r)].copy_(row(paths_[r][prompts[r].size() - 1]));
    }
    return out;
  }
  at::Tensor extend(const at::Tensor& tokens_in, const at::Tensor& parents_in) override {
    ++calls;
    const at::Tensor tokens = tokens_in.cpu().contiguous(), parents = parents_in.cpu().contiguous();
    const int64_t b = tokens.size(0), n = tokens.size(1);
    auto tok = tokens.accessor<int64_t, 2>();
    auto par = parents.accessor<int64_t, 2>();
    at::Tensor out = at::full({b, n, vocab_}, -1e9f, at::kFloat);
    for (int64_t r = 0; r < b; ++r) {
      auto& paths = paths_[static_cast<size_t>(r)];
      const size_t base = paths.size();
      for (int64_t i = 0; i < n; ++i) {
        const int64_t p = par[r][i];
        std::vector<int64_t> path;
        if (p >= 0) {
          EXPECT_LT(p, static_cast<int64_t>(base + static_cast<size_t>(i)));
          path = paths[static_cast<size_t>(p)];
          path.push_back(tok[r][i]);
          out[r][i].copy_(row(path));
          ++nodes;
        }
        paths.push_back(path);
      }
    }
    return out;
  }
  int64_t length() const override { return paths_.empty() ? 0 : static_cast<int64_t>(paths_[0].size()); }
  int64_t batch_size() const override { return static_cast<int64_t>(paths_.size()); }
  int64_t prompt_length(int64_t r) const override { return prompt_lens_[static_cast<size_t>(r)]; }
  void truncate(int64_t len) override {
    for (auto& p : paths_) p.resize(static_cast<size_t>(len));
  }
  void compact(const at::Tensor& keep_in) override {
    const at::Tensor keep = keep_in.cpu().contiguous();
    auto kp = keep.accessor<int64_t, 2>();
    for (size_t r = 0; r < paths_.size(); ++r) {
      std::vector<std::vector<int64_t>> kept;
      for (int64_t j = 0; j < keep.size(1); ++j) kept.push_back(paths_[r][static_cast<size_t>(kp[static_cast<int64_t>(r)][j])]);
      paths_[r] = kept;
    }
  }
  int calls = 0;       // prefill + extend calls
  int64_t nodes = 0;   // real (non-padding) nodes scored by extend

 private:
  at::Tensor row(const std::vector<int64_t>& path) const {
    std::vector<float> v = table_(path);
    EXPECT_EQ(static_cast<int64_t>(v.size()), vocab_);
    return torch::tensor(v, torch::kFloat);
  }
  int64_t vocab_;
  Table table_;
  bool include_prompt_;
  std::vector<std::vector<std::vector<int64_t>>> paths_;
  std::vector<int64_t> prompt_lens_;
};

}  // namespace atspeed::decode::test
