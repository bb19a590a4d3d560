// Draft-training objectives (SPEC §4.3, §4.4, §9.5-9.7): pure tensor functions, no model and no
// data loading, so the trainer (and tests) can call them on any logits.
//
// Layout (SPEC §9.5). A teacher beam row is [c1 c2 c3 c4 EOS]; "slot" t of a row is the position
// that predicts row token t, i.e. slot t < levels predicts the code of level t+1 (1-based) and the
// last slot predicts EOS. With 4 levels there are S = 5 slots. Logits cover the whole vocabulary
// (V = 1029 with the default vocabulary; nothing here assumes that: any V and any S work).
//
// Normalisation (SPEC §9.6). Every alignment loss is a mean over rows x slots; a slot whose
// allowed set is empty contributes 0 and still counts in the denominator. AtSpeed-S's KL uses the
// same mean: the reference's batchmean divides its sum by the rows, and its per-row sum is already
// a mean over the S slots' values, so the two are the same number.
//
// Numerics. Inputs of any floating dtype are promoted to at least float32 (double stays double),
// so fp16 teacher logits can be fed directly. NaN after a softmax (a fully masked row) is replaced
// by 0, as the reference does; tokens with probability 0 contribute 0 (0 log 0 = 0). Gradients flow
// into the student logits only: teacher tensors are detached.
//
// Differences from the reference (SPEC §4.4, §7):
//  * rows are [c1..c4 EOS] (§7.3 fixed), so slot t's mask is level t+1 and the last slot's is {EOS};
//  * softmaxes run over our whole vocabulary (specials + codes), not the reference's V_new code
//    columns; EOS is a column, so under constrained_loss the EOS slot is not fully masked: it keeps
//    EOS. S's term there is still exactly 0 (K > 1: one live token, b_K = -inf); R's is
//    ½|q(EOS) - p(EOS)| with constrained_loss alone and 0 with constrained_softmax, where the
//    reference's fully masked slot 4 always gave 0 (§4.3);
//  * AtSpeed-S's KL is written as a mean over rows x slots (§9.6), the same value as the
//    reference's batchmean;
//  * SeqKD's slot-0 label is the beam's own first code, not the ground truth (§7.4);
//  * the CE term is over response tokens only (§9.7), see response_ce.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>

#include "core/vocab/item_catalog.h"

namespace atspeed::train {

// The draft-training objective, parsed once where the config is read (align.objective).
class Objective {
 public:
  enum Value : uint8_t { Ce, AtspeedS, AtspeedR, WordKd, TvdKd, SeqKd, AtspeedSNorm };
  constexpr Objective(Value v = Ce) : value_(v) {}  // NOLINT: implicit on purpose
  constexpr Value value() const { return value_; }
  constexpr bool operator==(const Objective&) const = default;
  const char* name() const;  // ce, atspeed_s, atspeed_r, wordkd, tvdkd, seqkd, atspeed_s_norm
  // Everything but ce aligns to a teacher.
  constexpr bool needs_teacher() const { return value_ != Ce; }
  // The objectives that read the teacher's logits (seqkd learns from its beam rows alone).
  constexpr bool needs_teacher_logits() const { return needs_teacher() && value_ != SeqKd; }
  // The objectives fed the teacher's K beam rows as well as the ground truth.
  constexpr bool needs_beams() const {
    return value_ == AtspeedS || value_ == AtspeedR || value_ == SeqKd || value_ == AtspeedSNorm;
  }
  // The objectives with per-slot allowed sets (the reference's others reject them).
  constexpr bool supports_constrained_loss() const {
    return value_ == Ce || value_ == AtspeedS || value_ == AtspeedR || value_ == AtspeedSNorm;
  }
  static std::optional<Objective> from_name(const std::string& text);
  // Every name, comma-separated in enum order (for error and help messages).
  static std::string names();
  // Error(Config) naming `field` and the known names for an unknown one.
  static Objective parse(const std::string& text, const std::string& field);

 private:
  Value value_;
};

struct AlignmentOptions {
  Objective objective = Objective::Ce;
  // loss = (1 - alpha) * CE + alpha * L_align. SPEC §4.3: 0.7 in the reference's train.sh.
  double alpha = 0.7;
  // Use the per-slot allowed sets (slot_mask). atspeed_s: mask logits to -inf outside the set before
  // the log-softmax. atspeed_r: zero q and p outside the set after the softmax (no renormalisation).
  bool constrained_loss = false;
  // atspeed_r: mask logits before the softmax (renormalise over the allowed set; needs slot_mask).
  // atspeed_s: re-softmax the top-K probabilities at `temperature` (probabilities used as logits).
  bool constrained_softmax = false;
  // T_s, the divisor inside those softmaxes (R: divides logits; S: divides probabilities). The
  // reference's train.sh uses 0.001, which saturates both losses (SPEC §7.16): a tunable.
  double temperature = 1.0;
  // K_tok: AtSpeed-S compares the student's top-K tokens per slot (clamped to V).
  int64_t top_k_tokens = 20;

  // Error(Config) on alpha outside [0, 1], temperature <= 0, top_k_tokens < 1, and constrained_loss
  // with wordkd/tvdkd/seqkd (the reference's constructors reject it too).
  void validate() const;
};

// The tensors the objectives need; leave the ones an objective does not use undefined.
struct AlignmentInputs {
  // float [B, R, S, V]: student logits at the S slots of R teacher beam rows (atspeed_s/r, seqkd).
  at::Tensor student_beams;
  // float [B, R, S, V]: teacher logits at the same slots (atspeed_s/r). Constant.
  at::Tensor teacher_beams;
  // int64 [B, R, S]: the teacher beam rows themselves, [c1 c2 c3 c4 EOS] (seqkd).
  at::Tensor beam_labels;
  // float [B, S, V]: student logits at the S ground-truth response slots (wordkd, tvdkd).
  at::Tensor student_gt;
  // float [B, S, V]: teacher logits at those slots (wordkd, tvdkd). Constant.
  at::Tensor teacher_gt;
  // bool [S, V], true = allowed: the per-slot allowed sets M_t (see slot_mask()). Needed by
  // atspeed_s/r when constrained_loss, and by atspeed_r when constrained_softmax.
  at::Tensor slot_mask;
};

// The per-slot allowed sets M_t as bool [levels + 1, V] on the CPU: row t < levels holds the codes
// of level t (0-based) that some catalogue item uses (the reference's allowed_tokens_dict, the same
// sets as LevelMask), row `levels` holds EOS only. Unlike the reference, EOS is a real vocabulary
// column here, so the EOS slot keeps one allowed token instead of being fully masked.
at::Tensor slot_mask(const ItemCatalog& catalog);

// AtSpeed-R (TVD over teacher beams). student, teacher: float [B, R, S, V]; slot_mask: bool [S, V]
// or undefined (required when opts.constrained_loss or opts.constrained_softmax). Scalar.
at::Tensor atspeed_r_loss(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& slot_mask,
                          const AlignmentOptions& opts);

// AtSpeed-S (reverse KL on the student's top-K tokens + density regulariser, SPEC §4.4):
//   a = lq[J], b = lp[J], J = the top_k_tokens largest student log-probs (descending)
//   L = mean(sum_j e^a_j (a_j - b_j)) + mean(-e^b_K * sum_j e^a_j a_j)
// Same arguments as atspeed_r_loss (slot_mask required when opts.constrained_loss). Scalar.
//
// As published this is a partial KL of unnormalised distributions: on J, sum_j q_j log(q_j / p_j) is
// smallest at q_j = p_j / e, not at q = p, so without the reference's saturating settings it moves
// draft mass out of its own top-K (what lowered strict acceptance in the README's study).
at::Tensor atspeed_s_loss(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& slot_mask,
                          const AlignmentOptions& opts);

// atspeed_s_norm: AtSpeed-S with both distributions renormalised over the student's top-K set J,
//   â = log_softmax(a), b̂ = log_softmax(b)        (a, b as in atspeed_s_loss)
//   L = mean(sum_j e^â_j (â_j - b̂_j)) + the same density term as atspeed_s_loss
// The divergence is a proper KL on J: >= 0, and 0 with a zero gradient at q = p.
at::Tensor atspeed_s_norm_loss(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& slot_mask,
                               const AlignmentOptions& opts);
// Its divergence term alone (tests: q = p is a stationary point).
at::Tensor topk_renormalised_kl(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& slot_mask,
                                const AlignmentOptions& opts);

// WordKD: forward KL(p_teacher || q_student) over the full vocabulary, mean over B*S.
// student_gt, teacher_gt: float [B, S, V]. Scalar.
at::Tensor wordkd_loss(const at::Tensor& student_gt, const at::Tensor& teacher_gt);

// TVD-KD: mean over B*S of 1/2 sum |q - p| over the full vocabulary. Same arguments as wordkd_loss.
at::Tensor tvdkd_loss(const at::Tensor& student_gt, const at::Tensor& teacher_gt);

// SeqKD: cross-entropy of the student slots on the teacher beam rows, mean over the labelled slots
// (B*R*S; a label of -100 is ignored, teacher rows never hold one). student: float [B, R, S, V];
// beam_labels: int64 [B, R, S]. Since rows are [c1..c4 EOS] (§9.5), slot t's label is simply the
// row's token t, so slot 0 learns the beam's own first code (the reference used the ground truth
// there, SPEC §7.4). Scalar.
at::Tensor seqkd_loss(const at::Tensor& student, const at::Tensor& beam_labels);

// Response cross-entropy (SPEC §9.7). logits: float [B, T, V], where logits[b, t] predicts
// targets[b, t] (the caller shifts); targets: int64 [B, T], -100 = ignored (prompt, padding).
// Mean over non-ignored targets; 0 (not NaN) when every target is ignored.
at::Tensor response_ce(const at::Tensor& logits, const at::Tensor& targets);

// (1 - alpha) * ce + alpha * align; `ce` alone when `align` is undefined (objective "ce").
at::Tensor mix(const at::Tensor& ce, const at::Tensor& align, double alpha);

// The alignment loss of `objective` (one of AlignmentOptions' names) from the inputs it needs;
// undefined for "ce". Throws Error(Internal) when a needed input is missing or misshaped.
at::Tensor alignment_loss(Objective objective, const AlignmentInputs& inputs, const AlignmentOptions& opts);
// The same with opts.objective.
at::Tensor alignment_loss(const AlignmentInputs& inputs, const AlignmentOptions& opts);

}  // namespace atspeed::train
