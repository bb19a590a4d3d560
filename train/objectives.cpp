#include "train/objectives.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <limits>

#include "core/errors.h"

namespace atspeed::train {
namespace {

constexpr std::array<const char*, 7> kObjectives = {"ce",    "atspeed_s", "atspeed_r",     "wordkd",
                                                    "tvdkd", "seqkd",     "atspeed_s_norm"};  // Objective::Value order
constexpr int64_t kIgnoreIndex = -100;

// float32 unless either side is double: fp16/bf16 logits (stored teacher data, autocast students)
// are too coarse for log-probabilities at T_s = 0.001.
c10::ScalarType compute_dtype(const at::Tensor& a, const at::Tensor& b) {
  return (a.scalar_type() == at::kDouble || (b.defined() && b.scalar_type() == at::kDouble)) ? at::kDouble : at::kFloat;
}

// A softmax over a fully -inf row is NaN; the reference replaces it by 0 so such a slot adds 0.
// masked_fill (unlike nan_to_num) keeps -inf log-probabilities, and its backward zeroes the NaN rows.
at::Tensor nan_to_zero(const at::Tensor& x) { return x.masked_fill(x.isnan(), 0); }

void check_logits(const at::Tensor& t, int64_t dims, const char* what) {
  ATSPEED_CHECK(t.defined(), what, " is undefined");
  ATSPEED_CHECK(t.dim() == dims, what, " must have ", dims, " dims, got ", t.sizes());
  ATSPEED_CHECK(at::isFloatingType(t.scalar_type()), what, " must be floating, got ", t.scalar_type());
}

void check_pair(const at::Tensor& student, const at::Tensor& teacher, int64_t dims) {
  check_logits(student, dims, "student logits");
  check_logits(teacher, dims, "teacher logits");
  ATSPEED_CHECK(student.sizes() == teacher.sizes(), "student ", student.sizes(), " vs teacher ", teacher.sizes());
  ATSPEED_CHECK(student.size(-1) > 0, "empty vocabulary");
}

// slot_mask [S, V] as bool on `like`'s device, broadcastable against [B, R, S, V].
at::Tensor allowed_mask(const at::Tensor& slot_mask, const at::Tensor& like) {
  ATSPEED_CHECK(slot_mask.defined(), "constrained_loss/constrained_softmax need a slot_mask");
  ATSPEED_CHECK(slot_mask.dim() == 2 && slot_mask.size(0) == like.size(-2) && slot_mask.size(1) == like.size(-1),
                "slot_mask must be [S, V] = [", like.size(-2), ", ", like.size(-1), "], got ", slot_mask.sizes());
  return slot_mask.to(like.device(), at::kBool);
}

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// The rows x slots mean of §9.6: every slot counts, masked ones included (they hold 0).
at::Tensor mean_over_slots(const at::Tensor& per_slot) { return per_slot.mean(); }

// Cross-entropy summed over labelled targets / their count (>= 1), so an all-ignored batch gives 0
// instead of NaN and nothing syncs with the host.
at::Tensor masked_ce(const at::Tensor& logits2d, const at::Tensor& targets1d) {
  const auto logits = logits2d.to(compute_dtype(logits2d, at::Tensor()));
  const auto sum = at::cross_entropy_loss(logits, targets1d, {}, at::Reduction::Sum, kIgnoreIndex);
  const auto count = targets1d.ne(kIgnoreIndex).sum().clamp_min(1).to(logits.scalar_type());
  return sum / count;
}

}  // namespace

const char* Objective::name() const { return kObjectives[static_cast<size_t>(value_)]; }

std::optional<Objective> Objective::from_name(const std::string& text) {
  for (size_t i = 0; i < kObjectives.size(); ++i) {
    if (text == kObjectives[i]) return Objective(static_cast<Value>(i));
  }
  return std::nullopt;
}

std::string Objective::names() {
  std::string out;
  for (const char* n : kObjectives) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

Objective Objective::parse(const std::string& text, const std::string& field) {
  const auto o = from_name(text);
  ATSPEED_ENSURE(Config, o.has_value(), field, ": unknown objective '", text, "' (", names(), ")");
  return *o;
}

void AlignmentOptions::validate() const {
  ATSPEED_ENSURE(Config, alpha >= 0.0 && alpha <= 1.0, "train.alpha must be in [0, 1], got ", alpha);
  ATSPEED_ENSURE(Config, temperature > 0.0, "train.temperature must be > 0, got ", temperature);
  ATSPEED_ENSURE(Config, top_k_tokens >= 1, "train.top_k_tokens must be >= 1, got ", top_k_tokens);
  // The reference's WordKD/TVDKD/SeqKD constructors reject allowed sets: they train on the full
  // vocabulary, and a silently ignored flag would mislead.
  ATSPEED_ENSURE(Config, !constrained_loss || objective.supports_constrained_loss(),
                 "train.constrained_loss is only supported by atspeed_s and atspeed_r, not '", objective.name(), "'");
}

at::Tensor slot_mask(const ItemCatalog& catalog) {
  const Vocabulary& vocab = catalog.vocab();
  const int levels = vocab.levels();
  auto mask = at::zeros({levels + 1, vocab.size()}, at::kBool);
  auto m = mask.accessor<bool, 2>();
  for (int64_t i = 0; i < catalog.num_items(); ++i) {
    const auto codes = catalog.codes(i);
    for (int l = 0; l < levels; ++l) m[l][vocab.code_token(l, codes[static_cast<size_t>(l)])] = true;
  }
  m[levels][Vocabulary::kEos] = true;
  return mask;
}

at::Tensor atspeed_r_loss(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& slot_mask,
                          const AlignmentOptions& opts) {
  check_pair(student, teacher, 4);
  const auto dt = compute_dtype(student, teacher);
  auto zq = student.to(dt);
  auto zp = teacher.detach().to(dt);
  at::Tensor allowed;
  if (opts.constrained_loss || opts.constrained_softmax) allowed = allowed_mask(slot_mask, student);
  if (opts.constrained_softmax) {
    zq = zq.masked_fill(allowed.logical_not(), kNegInf);
    zp = zp.masked_fill(allowed.logical_not(), kNegInf);
  }
  auto q = nan_to_zero(at::softmax(zq / opts.temperature, -1));
  auto p = nan_to_zero(at::softmax(zp / opts.temperature, -1));
  if (opts.constrained_loss) {
    // The reference zeroes disallowed mass without renormalising: mass the student puts outside
    // M_t is not penalised here (the CE term and constrained decoding take care of it).
    q = q.masked_fill(allowed.logical_not(), 0);
    p = p.masked_fill(allowed.logical_not(), 0);
  }
  return mean_over_slots(0.5 * (q - p).abs().sum(-1));
}

namespace {

// The student's top-K log-probs a and the teacher's b at the same tokens (S's inputs), after the
// masks and the optional constrained re-softmax.
std::pair<at::Tensor, at::Tensor> topk_log_probs(const at::Tensor& student, const at::Tensor& teacher,
                                                 const at::Tensor& slot_mask, const AlignmentOptions& opts) {
  check_pair(student, teacher, 4);
  const auto dt = compute_dtype(student, teacher);
  auto zq = student.to(dt);
  auto zp = teacher.detach().to(dt);
  if (opts.constrained_loss) {
    const auto blocked = allowed_mask(slot_mask, student).logical_not();
    zq = zq.masked_fill(blocked, kNegInf);
    zp = zp.masked_fill(blocked, kNegInf);
  }
  const auto lq = nan_to_zero(at::log_softmax(zq, -1));
  const auto lp = nan_to_zero(at::log_softmax(zp, -1));
  const int64_t k = std::min<int64_t>(opts.top_k_tokens, student.size(-1));
  // The draft's top-K tokens at each slot, descending: the candidates it would propose.
  const auto top = std::get<1>(lq.detach().topk(k, -1, /*largest=*/true, /*sorted=*/true));
  auto a = lq.gather(-1, top);
  auto b = lp.gather(-1, top);
  if (opts.constrained_softmax) {
    // As the reference: the top-K probabilities are used as logits at temperature T_s.
    a = at::log_softmax(a.exp() / opts.temperature, -1);
    b = at::log_softmax(b.exp() / opts.temperature, -1);
  }
  return {a, b};
}

// sum_j e^a_j (a_j - b_j) per slot. Masked tokens inside the top-K (a = -inf, probability 0)
// contribute 0; they are sanitised before the products so neither the forward (0 * -inf) nor the
// backward produces NaN.
at::Tensor topk_kl_terms(const at::Tensor& a, const at::Tensor& b) {
  const auto dead = a.isinf();
  const auto a0 = a.masked_fill(dead, 0);
  const auto b0 = b.masked_fill(dead, 0);
  const auto pa = a0.exp().masked_fill(dead, 0);
  return (pa * (a0 - b0)).sum(-1);
}

// Density regulariser: the teacher's probability at the draft's K-th token times the draft's
// (top-K) entropy.
at::Tensor density_terms(const at::Tensor& a, const at::Tensor& b) {
  const auto dead = a.isinf();
  const auto a0 = a.masked_fill(dead, 0);
  const auto pa = a0.exp().masked_fill(dead, 0);
  return -b.select(-1, b.size(-1) - 1).exp() * (pa * a0).sum(-1);
}

// log_softmax over J that keeps a fully masked J (all -inf) at -inf instead of NaN.
at::Tensor renormalise(const at::Tensor& x) {
  const auto all_dead = x.isinf().all(-1, /*keepdim=*/true);
  return at::log_softmax(x.masked_fill(all_dead, 0), -1).masked_fill(all_dead.expand_as(x), kNegInf);
}

}  // namespace

at::Tensor atspeed_s_loss(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& slot_mask,
                          const AlignmentOptions& opts) {
  const auto [a, b] = topk_log_probs(student, teacher, slot_mask, opts);
  return mean_over_slots(topk_kl_terms(a, b)) + mean_over_slots(density_terms(a, b));  // KL(q || p): student first
}

at::Tensor topk_renormalised_kl(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& slot_mask,
                                const AlignmentOptions& opts) {
  const auto [a, b] = topk_log_probs(student, teacher, slot_mask, opts);
  return mean_over_slots(topk_kl_terms(renormalise(a), renormalise(b)));
}

at::Tensor atspeed_s_norm_loss(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& slot_mask,
                               const AlignmentOptions& opts) {
  const auto [a, b] = topk_log_probs(student, teacher, slot_mask, opts);
  return mean_over_slots(topk_kl_terms(renormalise(a), renormalise(b))) + mean_over_slots(density_terms(a, b));
}

at::Tensor wordkd_loss(const at::Tensor& student_gt, const at::Tensor& teacher_gt) {
  check_pair(student_gt, teacher_gt, 3);
  const auto dt = compute_dtype(student_gt, teacher_gt);
  const auto lq = nan_to_zero(at::log_softmax(student_gt.to(dt), -1));
  const auto lp = nan_to_zero(at::log_softmax(teacher_gt.detach().to(dt), -1));
  const auto p = lp.exp();
  // 0 log 0 = 0: tokens the teacher gives no mass add nothing, even where the student has -inf.
  const auto dead = p.eq(0);
  const auto kl = (p * (lp.masked_fill(dead, 0) - lq.masked_fill(dead, 0))).sum(-1);
  return mean_over_slots(kl);
}

at::Tensor tvdkd_loss(const at::Tensor& student_gt, const at::Tensor& teacher_gt) {
  check_pair(student_gt, teacher_gt, 3);
  const auto dt = compute_dtype(student_gt, teacher_gt);
  const auto q = nan_to_zero(at::softmax(student_gt.to(dt), -1));
  const auto p = nan_to_zero(at::softmax(teacher_gt.detach().to(dt), -1));
  return mean_over_slots(0.5 * (q - p).abs().sum(-1));
}

at::Tensor seqkd_loss(const at::Tensor& student, const at::Tensor& beam_labels) {
  check_logits(student, 4, "student logits");
  ATSPEED_CHECK(beam_labels.defined() && beam_labels.scalar_type() == at::kLong, "beam_labels must be int64");
  ATSPEED_CHECK(beam_labels.sizes() == student.sizes().slice(0, 3), "beam_labels ", beam_labels.sizes(),
                " vs student ", student.sizes());
  const int64_t v = student.size(-1);
  return masked_ce(student.reshape({-1, v}), beam_labels.to(student.device()).reshape({-1}));
}

at::Tensor response_ce(const at::Tensor& logits, const at::Tensor& targets) {
  check_logits(logits, 3, "logits");
  ATSPEED_CHECK(targets.defined() && targets.scalar_type() == at::kLong, "targets must be int64");
  ATSPEED_CHECK(targets.sizes() == logits.sizes().slice(0, 2), "targets ", targets.sizes(), " vs logits ",
                logits.sizes());
  const int64_t v = logits.size(-1);
  return masked_ce(logits.reshape({-1, v}), targets.to(logits.device()).reshape({-1}));
}

at::Tensor mix(const at::Tensor& ce, const at::Tensor& align, double alpha) {
  ATSPEED_CHECK(ce.defined(), "mix needs the CE loss");
  if (!align.defined()) return ce;
  return (1.0 - alpha) * ce + alpha * align;
}

at::Tensor alignment_loss(Objective objective, const AlignmentInputs& in, const AlignmentOptions& opts) {
  switch (objective.value()) {
    case Objective::Ce: return {};
    case Objective::AtspeedS: return atspeed_s_loss(in.student_beams, in.teacher_beams, in.slot_mask, opts);
    case Objective::AtspeedR: return atspeed_r_loss(in.student_beams, in.teacher_beams, in.slot_mask, opts);
    case Objective::WordKd: return wordkd_loss(in.student_gt, in.teacher_gt);
    case Objective::TvdKd: return tvdkd_loss(in.student_gt, in.teacher_gt);
    case Objective::SeqKd: return seqkd_loss(in.student_beams, in.beam_labels);
    case Objective::AtspeedSNorm: return atspeed_s_norm_loss(in.student_beams, in.teacher_beams, in.slot_mask, opts);
  }
  ATSPEED_THROW(Internal, "alignment_loss: objective ", static_cast<int>(objective.value()));
}

at::Tensor alignment_loss(const AlignmentInputs& inputs, const AlignmentOptions& opts) {
  return alignment_loss(opts.objective, inputs, opts);
}

}  // namespace atspeed::train
