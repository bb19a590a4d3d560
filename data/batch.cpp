#include "data/batch.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "core/errors.h"

namespace atspeed {

namespace {

struct Rows {
  std::vector<std::vector<int64_t>> tokens;
  std::vector<int64_t> prompt_len;
  std::vector<int64_t> users;
};

Rows build_rows(std::span<const Sample* const> samples, const PromptFormat& format, bool with_response) {
  Rows r;
  for (const Sample* s : samples) {
    std::vector<int64_t> row;
    format.append_prompt(s->history, row);
    r.prompt_len.push_back(static_cast<int64_t>(row.size()));
    if (with_response) {
      ATSPEED_CHECK(!s->targets.empty(), "sample of user ", s->user, " has no target");
      // Several targets in one row only make sense where a response is also the next prompt's tail.
      ATSPEED_ENSURE(Config, s->targets.size() == 1 || format.layout().is_stream(), "a training row of user ", s->user,
                     " has ", s->targets.size(), " targets: one-pass rows need data.prompt_format=stream");
      for (int64_t item : s->targets) {
        const auto resp = format.response(item);
        row.insert(row.end(), resp.begin(), resp.end());
      }
    }
    r.tokens.push_back(std::move(row));
    r.users.push_back(s->user);
  }
  return r;
}

Batch pad(Rows rows, bool with_targets) {
  const auto B = static_cast<int64_t>(rows.tokens.size());
  int64_t T = 0;
  for (const auto& row : rows.tokens) T = std::max<int64_t>(T, static_cast<int64_t>(row.size()));
  Batch b;
  b.tokens = at::full({B, T}, Vocabulary::kPad, at::kLong);
  b.positions = at::zeros({B, T}, at::kLong);
  b.attention_mask = at::zeros({B, T}, at::kBool);
  if (with_targets) b.targets = at::full({B, T}, kIgnoreIndex, at::kLong);
  b.prompt_lengths = at::empty({B}, at::kLong);
  b.lengths = at::empty({B}, at::kLong);
  auto* tok = b.tokens.data_ptr<int64_t>();
  auto* pos = b.positions.data_ptr<int64_t>();
  auto* mask = b.attention_mask.data_ptr<bool>();
  auto* tgt = with_targets ? b.targets.data_ptr<int64_t>() : nullptr;
  for (int64_t i = 0; i < B; ++i) {
    const auto& row = rows.tokens[static_cast<size_t>(i)];
    const auto n = static_cast<int64_t>(row.size());
    const int64_t p = rows.prompt_len[static_cast<size_t>(i)];
    for (int64_t t = 0; t < n; ++t) {
      tok[i * T + t] = row[static_cast<size_t>(t)];
      pos[i * T + t] = t;
      mask[i * T + t] = true;
      if (tgt && t + 1 < n && t + 1 >= p) tgt[i * T + t] = row[static_cast<size_t>(t + 1)];
    }
    b.prompt_lengths.data_ptr<int64_t>()[i] = p;
    b.lengths.data_ptr<int64_t>()[i] = n;
  }
  b.users = std::move(rows.users);
  return b;
}

std::vector<const Sample*> pointers(std::span<const Sample> samples) {
  std::vector<const Sample*> out;
  out.reserve(samples.size());
  for (const auto& s : samples) out.push_back(&s);
  return out;
}

}  // namespace

Batch collate_train(std::span<const Sample* const> samples, const PromptFormat& format) {
  return pad(build_rows(samples, format, true), true);
}
Batch collate_train(std::span<const Sample> samples, const PromptFormat& format) {
  const auto p = pointers(samples);
  return collate_train(std::span<const Sample* const>(p), format);
}
Batch collate_prompts(std::span<const Sample* const> samples, const PromptFormat& format) {
  return pad(build_rows(samples, format, false), false);
}
Batch collate_prompts(std::span<const Sample> samples, const PromptFormat& format) {
  const auto p = pointers(samples);
  return collate_prompts(std::span<const Sample* const>(p), format);
}

PackedBatch collate_train_packed(std::span<const Sample* const> samples, const PromptFormat& format) {
  Rows rows = build_rows(samples, format, true);
  const auto B = static_cast<int64_t>(rows.tokens.size());
  int64_t N = 0;
  for (const auto& row : rows.tokens) N += static_cast<int64_t>(row.size());
  PackedBatch b;
  b.tokens = at::empty({N}, at::kLong);
  b.positions = at::empty({N}, at::kLong);
  b.targets = at::full({N}, kIgnoreIndex, at::kLong);
  b.cu_seqlens = at::empty({B + 1}, at::kLong);
  b.prompt_lengths = at::empty({B}, at::kLong);
  auto* tok = b.tokens.data_ptr<int64_t>();
  auto* pos = b.positions.data_ptr<int64_t>();
  auto* tgt = b.targets.data_ptr<int64_t>();
  auto* cu = b.cu_seqlens.data_ptr<int64_t>();
  int64_t off = 0;
  for (int64_t i = 0; i < B; ++i) {
    const auto& row = rows.tokens[static_cast<size_t>(i)];
    const auto n = static_cast<int64_t>(row.size());
    const int64_t p = rows.prompt_len[static_cast<size_t>(i)];
    cu[i] = off;
    for (int64_t t = 0; t < n; ++t) {
      tok[off + t] = row[static_cast<size_t>(t)];
      pos[off + t] = t;
      if (t + 1 < n && t + 1 >= p) tgt[off + t] = row[static_cast<size_t>(t + 1)];
    }
    b.prompt_lengths.data_ptr<int64_t>()[i] = p;
    off += n;
  }
  cu[B] = off;
  b.users = std::move(rows.users);
  return b;
}

}  // namespace atspeed
