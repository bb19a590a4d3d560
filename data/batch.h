// Collation of samples into tensors.
//
// Training rows are prompt + response(s): [BOS, history codes.., RESP, c1 .. cL, EOS] (resp layout)
// or [BOS, history codes.. EOS, c1 .. cL EOS, c1 .. cL EOS, ..] (stream; a one-pass row carries
// several targets), right-padded with PAD. `targets` is already shifted: targets[b, t] is the token
// that the logits at position t must predict, i.e. tokens[b, t + 1] when that token belongs to a
// response (c1..cL, EOS), else -100. So the CE over the responses only (SPEC §9.7) is
//   cross_entropy(logits.view({-1, V}), targets.view(-1), ignore_index = -100)
// and the predicting positions of row b are prompt_lengths[b] - 1 .. lengths[b] - 2
// (the prompt's last token predicts c1; cL predicts EOS).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <span>
#include <vector>

#include "data/samples.h"

namespace atspeed {

inline constexpr int64_t kIgnoreIndex = -100;

struct Batch {
  at::Tensor tokens;          // int64 [B, T]
  at::Tensor positions;       // int64 [B, T]: 0..len-1, 0 on padding
  at::Tensor attention_mask;  // bool [B, T]: true on real tokens
  at::Tensor targets;         // int64 [B, T]: shifted response targets, -100 elsewhere (training only)
  at::Tensor prompt_lengths;  // int64 [B]
  at::Tensor lengths;         // int64 [B]: real tokens per row
  std::vector<int64_t> users; // the samples' users
};

// Prompt + the responses of each sample's targets (train / valid rows; several only in stream).
Batch collate_train(std::span<const Sample* const> samples, const PromptFormat& format);
Batch collate_train(std::span<const Sample> samples, const PromptFormat& format);
// Prompts only (generation, teacher data, evaluation): targets is undefined.
Batch collate_prompts(std::span<const Sample* const> samples, const PromptFormat& format);
Batch collate_prompts(std::span<const Sample> samples, const PromptFormat& format);

// Packed (varlen) form of a training batch: all rows concatenated without padding.
struct PackedBatch {
  at::Tensor tokens;          // int64 [N]
  at::Tensor positions;       // int64 [N], restarting at 0 for each row
  at::Tensor targets;         // int64 [N], as in Batch, -100 at each row's last token
  at::Tensor cu_seqlens;      // int64 [B + 1]: row b is [cu_seqlens[b], cu_seqlens[b+1])
  at::Tensor prompt_lengths;  // int64 [B]
  std::vector<int64_t> users;
};
PackedBatch collate_train_packed(std::span<const Sample* const> samples, const PromptFormat& format);

}  // namespace atspeed
