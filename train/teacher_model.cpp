#include "train/teacher_model.h"

#include <torch/torch.h>

#include <algorithm>
#include <limits>

#include "core/decode/beam_search.h"
#include "core/decode/tree_scorer.h"
#include "core/errors.h"
#include "core/vocab/vocabulary.h"

namespace atspeed::train {

at::Tensor row_slot_logits(model::LlamaModelImpl& model, const std::vector<std::vector<int64_t>>& prompts,
                           const at::Tensor& rows, const c10::Device& device) {
  ATSPEED_CHECK(rows.dim() == 3 && rows.size(0) == static_cast<int64_t>(prompts.size()), "row_slot_logits: rows ",
                rows.sizes(), " for ", prompts.size(), " prompts");
  const int64_t B = rows.size(0), R = rows.size(1), S = rows.size(2), W = S - 1;
  ATSPEED_CHECK(S >= 1, "row_slot_logits: empty rows");
  int64_t P = 0;
  for (const auto& p : prompts) {
    ATSPEED_CHECK(!p.empty(), "row_slot_logits: empty prompt");
    P = std::max<int64_t>(P, static_cast<int64_t>(p.size()));
  }
  const int64_t T = P + R * W;
  at::Tensor tokens = torch::zeros({B, T}, torch::kLong);
  at::Tensor positions = torch::zeros({B, T}, torch::kLong);
  at::Tensor plen = torch::empty({B}, torch::kLong);
  for (int64_t b = 0; b < B; ++b) {
    const auto& p = prompts[static_cast<size_t>(b)];
    const auto L = static_cast<int64_t>(p.size());
    tokens[b].narrow(0, 0, L).copy_(torch::tensor(p, torch::kLong));
    positions[b].narrow(0, 0, L).copy_(torch::arange(L, torch::kLong));
    plen[b] = L;
  }
  if (W > 0) {
    at::Tensor row_tokens = rows.to(torch::kCPU, torch::kLong).narrow(2, 0, W).reshape({B, R * W});
    tokens.narrow(1, P, R * W).copy_(row_tokens);
    at::Tensor within = torch::arange(W, torch::kLong).repeat({R});  // [R*W]
    positions.narrow(1, P, R * W).copy_(plen.view({B, 1}) + within.view({1, R * W}));
  }
  // The block mask, vectorised: index roles per column.
  const at::Tensor idx = torch::arange(T, torch::kLong);
  const at::Tensor is_row = idx >= P;
  const at::Tensor row_id = torch::where(is_row, (idx - P).div(std::max<int64_t>(W, 1), "floor"), torch::full_like(idx, -1));
  const at::Tensor within = torch::where(is_row, (idx - P).remainder(std::max<int64_t>(W, 1)), idx);
  const at::Tensor q = idx.view({1, T, 1}), k = idx.view({1, 1, T});
  const at::Tensor L = plen.view({B, 1, 1});
  // Prompt query q < len_b: keys k <= q. Padding query (len_b <= q < P): itself only (its output is never read).
  at::Tensor allowed = (q < P) & (((q < L) & (k <= q)) | (k == q));
  // Row query: the real prompt, and its own row's tokens up to itself.
  const at::Tensor qrow = is_row.view({1, T, 1});
  allowed = allowed | (qrow & (k < L));
  allowed = allowed | (qrow & is_row.view({1, 1, T}) & (row_id.view({1, T, 1}) == row_id.view({1, 1, T})) &
                       (within.view({1, 1, T}) <= within.view({1, T, 1})));
  const auto dtype = model.options().param_dtype;
  at::Tensor mask = torch::zeros({B, T, T}, torch::TensorOptions().dtype(dtype))
                        .masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
  at::Tensor hidden = model.hidden_states(tokens.to(device), positions.to(device), mask.to(device));
  // Gather the slot positions before the head: [B, R, S] indices into T.
  at::Tensor slot_idx = torch::empty({B, R, S}, torch::kLong);
  slot_idx.select(2, 0).copy_((plen - 1).view({B, 1}).expand({B, R}));
  if (W > 0) {
    at::Tensor base = P + torch::arange(R, torch::kLong).view({1, R, 1}) * W + torch::arange(W, torch::kLong).view({1, 1, W});
    slot_idx.narrow(2, 1, W).copy_(base.expand({B, R, W}));
  }
  const int64_t H = hidden.size(-1);
  at::Tensor gathered =
      hidden.gather(1, slot_idx.to(device).view({B, R * S, 1}).expand({B, R * S, H}));  // [B, R*S, H]
  return model.logits(gathered).to(torch::kFloat).view({B, R, S, -1});
}

TeacherComputer::TeacherComputer(model::LlamaModel model, std::shared_ptr<const ItemCatalog> catalog, int64_t beams,
                                 int64_t search_batch, c10::Device device)
    : model_(std::move(model)),
      catalog_(std::move(catalog)),
      constraint_(make_constraint("trie", *catalog_)),  // teacher beams always use the trie (SPEC §7.2)
      beams_(beams),
      search_batch_(std::max<int64_t>(1, search_batch)),
      device_(device) {
  model_->eval();
}
TeacherComputer::~TeacherComputer() = default;

TeacherChunk TeacherComputer::compute(const std::vector<const Sample*>& samples, const PromptFormat& format,
                                      bool on_device, bool logits) {
  const auto B = static_cast<int64_t>(samples.size());
  const int64_t S = format.response_length(), K = beams_;
  std::vector<std::vector<int64_t>> prompts;
  at::Tensor gt = torch::empty({B, S}, torch::kLong), user = torch::empty({B}, torch::kLong);
  for (int64_t b = 0; b < B; ++b) {
    const Sample& s = *samples[static_cast<size_t>(b)];
    prompts.push_back(format.prompt(s.history));
    gt[b].copy_(torch::tensor(format.response(s.targets.at(0)), torch::kLong));
    user[b] = s.user;
  }
  // Beam search over the L code levels exactly as inference does (SPEC §9.5), then rows get EOS.
  at::Tensor beams = torch::empty({B, K, S}, torch::kLong);
  at::Tensor num_beams = torch::zeros({B}, torch::kLong);
  at::Tensor scores = torch::full({B, K}, -std::numeric_limits<float>::infinity(), torch::kFloat);
  decode::LlamaTreeScorer scorer(model_);
  decode::SearchOptions so;
  so.beam_width = K;
  decode::TargetBeamSearch search(scorer, *constraint_, so);
  for (int64_t start = 0; start < B; start += search_batch_) {
    const int64_t end = std::min(B, start + search_batch_);
    std::vector<std::vector<int64_t>> part(prompts.begin() + start, prompts.begin() + end);
    const auto results = search.run(part);
    for (int64_t b = start; b < end; ++b) {
      const auto& found = results[static_cast<size_t>(b - start)].beams;
      ATSPEED_ENSURE(Data, !found.empty(), "teacher: the trie search found no beam for user ",
                     samples[static_cast<size_t>(b)]->user);
      num_beams[b] = static_cast<int64_t>(found.size());
      for (int64_t r = 0; r < K; ++r) {
        // Missing beams (fewer than K items under the prefixes) repeat beam 0: a valid row.
        const auto& beam = found[static_cast<size_t>(r < static_cast<int64_t>(found.size()) ? r : 0)];
        for (int64_t t = 0; t + 1 < S; ++t) beams[b][r][t] = beam.tokens.at(static_cast<size_t>(t));
        beams[b][r][S - 1] = Vocabulary::kEos;
        if (r < static_cast<int64_t>(found.size())) scores[b][r] = beam.score;
      }
    }
  }
  TeacherChunk c;
  c.user = user;
  c.gt_rows = gt;
  c.beams = beams;
  c.num_beams = num_beams;
  c.beam_scores = scores;
  if (!logits) return c;
  torch::NoGradGuard no_grad;  // not InferenceMode: the logits are later used next to autograd tensors
  at::Tensor all_rows = torch::cat({gt.view({B, 1, S}), beams}, 1);
  // The slot forward in slices of search_batch samples (21 rows each): bounded activation memory.
  std::vector<at::Tensor> slices;
  for (int64_t start = 0; start < B; start += search_batch_) {
    const int64_t end = std::min(B, start + search_batch_);
    std::vector<std::vector<int64_t>> part(prompts.begin() + start, prompts.begin() + end);
    at::Tensor l = row_slot_logits(*model_, part, all_rows.narrow(0, start, end - start), device_);
    slices.push_back(on_device ? l : l.cpu());
  }
  const at::Tensor slot_logits = torch::cat(slices, 0);
  c.gt_logits = slot_logits.select(1, 0).contiguous();
  c.beam_logits = slot_logits.narrow(1, 1, K).contiguous();
  return c;
}

}  // namespace atspeed::train
