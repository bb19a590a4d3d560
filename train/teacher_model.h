// Computing teacher data with a target model (SPEC §4.2, §9.5), shared by `atspeed teacher` (written
// to files, data/teacher.h) and train-draft's online mode (recomputed inside the training loop), and
// the slot forward that gives the student its logits on the same rows.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "core/model/llama.h"
#include "core/vocab/constraint.h"
#include "data/samples.h"
#include "data/teacher.h"

namespace atspeed::train {

// Logits of `model` at the S slots of R continuation rows of each prompt, in one forward without a
// KV cache (so autograd flows through the shared prompt, as in the reference's KV-repeat trick):
//   tokens = [prompt_b, right-padded to P | row 0 tokens 0..S-2 | row 1 ... | row R-1 ...]
// Row token j of row r has position len_b + j and attends to the prompt and to row r's tokens 0..j
// only (a block mask); prompt tokens attend causally. A row's last token (EOS) predicts nothing and
// is not fed. Slot 0 of every row is the prediction after the prompt's last token (shared), slot t
// the prediction after row token t - 1; so slot t scores row token t.
// prompts: B token lists; rows: int64 [B, R, S]. Returns float32 [B, R, S, V] on `device` (with
// gradient when grad mode is on). The prompt costs one pass for all R rows.
at::Tensor row_slot_logits(model::LlamaModelImpl& model, const std::vector<std::vector<int64_t>>& prompts,
                           const at::Tensor& rows, const c10::Device& device);

// Runs the target's trie-constrained top-K beam search (TargetBeamSearch over LlamaTreeScorer) on
// the samples' prompts and its row_slot_logits on the ground truth and the beams (no gradient).
class TeacherComputer {
 public:
  // `model` in eval mode on `device`; beams = K; search_batch = prompts per beam-search forward.
  TeacherComputer(model::LlamaModel model, std::shared_ptr<const ItemCatalog> catalog, int64_t beams,
                  int64_t search_batch, c10::Device device);
  ~TeacherComputer();

  // A chunk for `samples` (their first target is the ground truth). sample_index is left undefined
  // (the caller knows it); logits float32 on the CPU, or on the device when `on_device`. Without
  // `logits` (seqkd) the target's slot forward is skipped and gt_logits/beam_logits stay undefined.
  TeacherChunk compute(const std::vector<const Sample*>& samples, const PromptFormat& format,
                       bool on_device = false, bool logits = true);
  model::LlamaModelImpl& model() { return *model_; }

 private:
  model::LlamaModel model_;
  std::shared_ptr<const ItemCatalog> catalog_;
  std::unique_ptr<Constraint> constraint_;
  int64_t beams_, search_batch_;
  c10::Device device_;
};

}  // namespace atspeed::train
