// Draft-training objectives (train/objectives.h) on tiny hand-computed logits (SPEC §8 loss checks).
// Logits are log-probabilities, so the probabilities below are the ones written in the tests.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/errors.h"
#include "core/vocab/item_catalog.h"
#include "core/vocab/vocabulary.h"
#include "train/objectives.h"

namespace atspeed::train {
namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

// Log-probabilities of `probs` reshaped to `shape` (a zero probability gives -inf).
torch::Tensor log_probs(const std::vector<double>& probs, std::vector<int64_t> shape) {
  return torch::tensor(probs, kF64).log().reshape(shape);
}

double value(const torch::Tensor& t) { return t.item<double>(); }

AlignmentOptions opts_for(const std::string& objective) {
  AlignmentOptions o;
  o.objective = Objective::parse(objective, "train.objective");
  return o;
}

TEST(ObjectiveTest, IdenticalLogitsGiveZeroTvdAndKl) {
  torch::manual_seed(1);
  const auto gt = torch::randn({2, 5, 7}, kF64);
  EXPECT_NEAR(value(wordkd_loss(gt, gt)), 0.0, 1e-12);
  EXPECT_NEAR(value(tvdkd_loss(gt, gt)), 0.0, 1e-12);
  const auto beams = torch::randn({2, 3, 5, 7}, kF64);
  auto o = opts_for("atspeed_r");
  EXPECT_NEAR(value(atspeed_r_loss(beams, beams, {}, o)), 0.0, 1e-12);
  o.temperature = 0.01;  // saturated, still identical
  EXPECT_NEAR(value(atspeed_r_loss(beams, beams, {}, o)), 0.0, 1e-12);
}

TEST(ObjectiveTest, AtSpeedSIdenticalReducesToRegulariser) {
  // One row, two slots, V = 6. Slot 0: p = [.1 .2 .3 .4 0 0]; slot 1: p = [.4 .2 .1 .1 .1 .1].
  const auto logits = log_probs({.1, .2, .3, .4, 0, 0, .4, .2, .1, .1, .1, .1}, {1, 1, 2, 6});
  auto o = opts_for("atspeed_s");
  o.top_k_tokens = 2;
  // KL = 0; reg = -p(2nd top token) * sum_top2 p ln p, averaged over the 2 slots.
  const double reg0 = -0.3 * (0.4 * std::log(0.4) + 0.3 * std::log(0.3));  // 0.218312
  const double reg1 = -0.2 * (0.4 * std::log(0.4) + 0.2 * std::log(0.2));  // 0.137681
  EXPECT_NEAR(reg0, 0.2183124, 1e-6);
  EXPECT_NEAR(value(atspeed_s_loss(logits, logits, {}, o)), (reg0 + reg1) / 2, 1e-12);
}

TEST(ObjectiveTest, HandComputedTvdAndKl) {
  // q (student) = [.4 .2 .1 .1 .1 .1], p (teacher) = [.2 .4 .1 .1 .1 .1].
  const auto q = log_probs({.4, .2, .1, .1, .1, .1}, {1, 1, 6});
  const auto p = log_probs({.2, .4, .1, .1, .1, .1}, {1, 1, 6});
  EXPECT_NEAR(value(tvdkd_loss(q, p)), 0.2, 1e-12);                 // ½(.2 + .2)
  EXPECT_NEAR(value(wordkd_loss(q, p)), 0.2 * std::log(2.0), 1e-12);  // .2 ln(.2/.4) + .4 ln(.4/.2)
  EXPECT_NEAR(value(atspeed_r_loss(q.unsqueeze(1), p.unsqueeze(1), {}, opts_for("atspeed_r"))), 0.2, 1e-12);

  // AtSpeed-S, K = 2: the student's top-2 tokens are 0 (.4) and 1 (.2); a = ln[.4 .2], b = ln[.2 .4].
  auto o = opts_for("atspeed_s");
  o.top_k_tokens = 2;
  const double kl = 0.4 * std::log(0.4 / 0.2) + 0.2 * std::log(0.2 / 0.4);   // 0.2 ln 2
  const double reg = -0.4 * (0.4 * std::log(0.4) + 0.2 * std::log(0.2));    // teacher p(token 1) = .4
  EXPECT_NEAR(value(atspeed_s_loss(q.unsqueeze(1), p.unsqueeze(1), {}, o)), kl + reg, 1e-12);
  EXPECT_NEAR(kl + reg, 0.4139910, 1e-6);

  // constrained_softmax, T = 1: a = log_softmax([.4 .2]), b = log_softmax([.2 .4]).
  o.constrained_softmax = true;
  const double s = 1.0 / (1.0 + std::exp(-0.2));  // softmax([.4 .2])[0]
  const double kl_cs = (2 * s - 1) * 0.2;          // (s - (1-s)) * (ln s - ln(1-s)) with ln(s/(1-s)) = .2
  const double reg_cs = -s * (s * std::log(s) + (1 - s) * std::log(1 - s));
  EXPECT_NEAR(value(atspeed_s_loss(q.unsqueeze(1), p.unsqueeze(1), {}, o)), kl_cs + reg_cs, 1e-12);
}

TEST(ObjectiveTest, MaskedSlotContributesZeroButCounts) {
  // Two slots with the same distributions; slot 1's allowed set is empty.
  const auto q = log_probs({.4, .2, .1, .1, .1, .1, .4, .2, .1, .1, .1, .1}, {1, 1, 2, 6});
  const auto p = log_probs({.2, .4, .1, .1, .1, .1, .2, .4, .1, .1, .1, .1}, {1, 1, 2, 6});
  auto mask = torch::ones({2, 6}, torch::kBool);
  mask[1].fill_(false);

  auto r = opts_for("atspeed_r");
  EXPECT_NEAR(value(atspeed_r_loss(q, p, {}, r)), 0.2, 1e-12);
  r.constrained_loss = true;
  EXPECT_NEAR(value(atspeed_r_loss(q, p, mask, r)), 0.1, 1e-12);  // (0.2 + 0) / 2
  r.constrained_softmax = true;  // softmax of a fully -inf slot is NaN -> 0
  EXPECT_NEAR(value(atspeed_r_loss(q, p, mask, r)), 0.1, 1e-12);
  r.constrained_loss = false;
  EXPECT_NEAR(value(atspeed_r_loss(q, p, mask, r)), 0.1, 1e-12);

  auto s = opts_for("atspeed_s");
  s.top_k_tokens = 2;
  const double one_slot = 0.2 * std::log(2.0) - 0.4 * (0.4 * std::log(0.4) + 0.2 * std::log(0.2));
  EXPECT_NEAR(value(atspeed_s_loss(q, p, {}, s)), one_slot, 1e-12);
  s.constrained_loss = true;
  EXPECT_NEAR(value(atspeed_s_loss(q, p, mask, s)), one_slot / 2, 1e-12);

  // A partially masked slot (like our EOS slot: one allowed column) with constrained_loss: the
  // allowed token gets the whole mass for both, so R and S's KL are 0 there.
  auto eos_only = torch::zeros({2, 6}, torch::kBool);
  eos_only[0].fill_(true);
  eos_only[1][2] = true;
  r = opts_for("atspeed_r");
  r.constrained_softmax = true;
  EXPECT_NEAR(value(atspeed_r_loss(q, p, eos_only, r)), 0.1, 1e-12);
  s.top_k_tokens = 3;  // slot 1's top-3 holds 2 masked (-inf) tokens: they add 0, and b_3 = -inf
  const auto s_eos = value(atspeed_s_loss(q, p, eos_only, s));
  EXPECT_TRUE(std::isfinite(s_eos));
  s.constrained_loss = false;
  const double slot0_k3 = value(atspeed_s_loss(q.narrow(2, 0, 1), p.narrow(2, 0, 1), {}, s));
  EXPECT_NEAR(s_eos, slot0_k3 / 2, 1e-12);
}

TEST(ObjectiveTest, SeqKdEqualsCrossEntropyOnBeamRows) {
  torch::manual_seed(2);
  const auto logits = torch::randn({2, 3, 5, 7}, kF64);
  const auto labels = torch::randint(0, 7, {2, 3, 5}, torch::kLong);
  const auto manual = -torch::log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).mean();
  EXPECT_NEAR(value(seqkd_loss(logits, labels)), value(manual), 1e-12);
  // Slot 0 is labelled with the beam's own first code: changing a row's first token changes the loss.
  auto other = labels.clone();
  other.index_put_({0, 0, 0}, (labels.index({0, 0, 0}) + 1) % 7);
  EXPECT_GT(std::abs(value(seqkd_loss(logits, other)) - value(manual)), 1e-9);
}

TEST(ObjectiveTest, ResponseCeIgnoresMaskedTargets) {
  torch::manual_seed(3);
  const auto logits = torch::randn({2, 4, 6}, kF64);
  const auto targets = torch::tensor({-100, -100, 3, 2, -100, 1, 5, -100}, torch::kLong).reshape({2, 4});
  const auto lp = torch::log_softmax(logits, -1);
  const double manual = -(value(lp[0][2][3]) + value(lp[0][3][2]) + value(lp[1][1][1]) + value(lp[1][2][5])) / 4;
  EXPECT_NEAR(value(response_ce(logits, targets)), manual, 1e-12);
  EXPECT_EQ(value(response_ce(logits, torch::full({2, 4}, -100, torch::kLong))), 0.0);  // not NaN
}

TEST(ObjectiveTest, GradientsReachTheStudentOnly) {
  torch::manual_seed(4);
  auto mask = torch::ones({5, 8}, torch::kBool);
  mask[4].fill_(false);
  mask[4][2] = true;                   // EOS-like slot
  mask[3].narrow(0, 0, 4).fill_(false);  // a partially masked level
  const std::vector<std::pair<std::string, bool>> cases = {
      {"atspeed_s", false}, {"atspeed_s", true}, {"atspeed_r", false}, {"atspeed_r", true},
      {"wordkd", false},    {"tvdkd", false},    {"seqkd", false}};
  for (const auto& [objective, constrained] : cases) {
    SCOPED_TRACE(objective + (constrained ? " constrained" : ""));
    AlignmentOptions o = opts_for(objective);
    o.constrained_loss = constrained;
    o.constrained_softmax = constrained;
    o.top_k_tokens = 3;
    o.validate();
    AlignmentInputs in;
    const bool beams = objective == "atspeed_s" || objective == "atspeed_r" || objective == "seqkd";
    auto student = beams ? torch::randn({2, 3, 5, 8}) : torch::randn({2, 5, 8});
    auto teacher = torch::randn(student.sizes()).to(torch::kHalf);  // stored teacher logits may be fp16
    student.requires_grad_(true);
    teacher.requires_grad_(true);
    if (beams) {
      in.student_beams = student;
      in.teacher_beams = teacher;
      in.beam_labels = torch::randint(0, 8, {2, 3, 5}, torch::kLong);
    } else {
      in.student_gt = student;
      in.teacher_gt = teacher;
    }
    if (constrained) in.slot_mask = mask;
    const auto loss = alignment_loss(in, o);
    ASSERT_TRUE(loss.defined());
    EXPECT_EQ(loss.dim(), 0);
    EXPECT_TRUE(std::isfinite(value(loss)));
    loss.backward();
    ASSERT_TRUE(student.grad().defined());
    EXPECT_TRUE(student.grad().isfinite().all().item<bool>());
    EXPECT_GT(student.grad().abs().sum().item<double>(), 0.0);
    EXPECT_FALSE(teacher.grad().defined());
  }
}

TEST(ObjectiveTest, FiniteDifferenceGradients) {
  torch::manual_seed(5);
  const auto teacher = torch::randn({1, 2, 3, 6}, kF64);
  const auto base = torch::randn({1, 2, 3, 6}, kF64);
  const std::vector<std::pair<std::string, std::function<torch::Tensor(const torch::Tensor&)>>> losses = {
      {"atspeed_s", [&](const torch::Tensor& s) {
         AlignmentOptions o = opts_for("atspeed_s");
         o.top_k_tokens = 3;
         return atspeed_s_loss(s, teacher, {}, o);
       }},
      {"atspeed_r", [&](const torch::Tensor& s) {
         AlignmentOptions o = opts_for("atspeed_r");
         o.temperature = 0.7;
         return atspeed_r_loss(s, teacher, {}, o);
       }},
      {"wordkd", [&](const torch::Tensor& s) { return wordkd_loss(s.flatten(0, 1), teacher.flatten(0, 1)); }},
      {"atspeed_s_norm", [&](const torch::Tensor& s) {
         AlignmentOptions o = opts_for("atspeed_s_norm");
         o.top_k_tokens = 3;
         return atspeed_s_norm_loss(s, teacher, {}, o);
       }},
  };
  for (const auto& [name, f] : losses) {
    SCOPED_TRACE(name);
    auto student = base.clone().requires_grad_(true);
    f(student).backward();
    const auto grad = student.grad().flatten();
    const double h = 1e-6;
    for (int64_t i = 0; i < base.numel(); ++i) {
      auto plus = base.clone();
      auto minus = base.clone();
      plus.view(-1)[i] += h;
      minus.view(-1)[i] -= h;
      const double fd = (value(f(plus)) - value(f(minus))) / (2 * h);
      EXPECT_NEAR(grad[i].item<double>(), fd, 1e-7) << "entry " << i;
    }
  }
}

// atspeed_s_norm by hand: V = 3, K = 2. Student probs (0.5, 0.3, 0.2), teacher (0.2, 0.6, 0.2): J =
// tokens {0, 1}; renormalised q̂ = (0.625, 0.375), p̂ = (0.25, 0.75); KL(q̂ || p̂) = 0.625 ln 2.5 +
// 0.375 ln 0.5; density term = -p_1 * (0.5 ln 0.5 + 0.3 ln 0.3) with p_1 = 0.6, the teacher's
// probability at the draft's 2nd token.
TEST(ObjectiveTest, AtSpeedSNormHandComputed) {
  const auto s = log_probs({0.5, 0.3, 0.2}, {1, 1, 1, 3});
  const auto t = log_probs({0.2, 0.6, 0.2}, {1, 1, 1, 3});
  AlignmentOptions o = opts_for("atspeed_s_norm");
  o.top_k_tokens = 2;
  const double kl = 0.625 * std::log(2.5) + 0.375 * std::log(0.5);
  const double density = -0.6 * (0.5 * std::log(0.5) + 0.3 * std::log(0.3));
  EXPECT_NEAR(value(topk_renormalised_kl(s, t, {}, o)), kl, 1e-12);
  EXPECT_NEAR(value(atspeed_s_norm_loss(s, t, {}, o)), kl + density, 1e-12);
  AlignmentInputs in;
  in.student_beams = s;
  in.teacher_beams = t;
  EXPECT_EQ(value(alignment_loss(Objective::AtspeedSNorm, in, o)), value(atspeed_s_norm_loss(s, t, {}, o)));
}

// q = p: the renormalised divergence is 0 with a zero gradient (a stationary point, as a divergence
// must be); the published AtSpeed-S divergence is 0 there too but its gradient is not, because on
// the top-K set it is smallest at q_j = p_j / e: it pushes draft mass out of its own top-K.
TEST(ObjectiveTest, AtSpeedSNormIsStationaryAtQEqualsP) {
  torch::manual_seed(9);
  const auto t = torch::randn({2, 3, 4, 8}, kF64);
  AlignmentOptions o = opts_for("atspeed_s_norm");
  o.top_k_tokens = 3;
  auto s = t.clone().requires_grad_(true);
  const auto norm = topk_renormalised_kl(s, t, {}, o);
  norm.backward();
  EXPECT_NEAR(value(norm), 0.0, 1e-12);
  EXPECT_LT(s.grad().abs().max().item<double>(), 1e-12);
  // The published one: its KL part alone (the density term is 0 only where the teacher's K-th
  // probability is; take it out by subtracting it at the same point).
  auto s2 = t.clone().requires_grad_(true);
  AlignmentOptions so = opts_for("atspeed_s");
  so.top_k_tokens = 3;
  const auto published_kl = atspeed_s_loss(s2, t, {}, so) - (atspeed_s_norm_loss(s2, t, {}, o) - topk_renormalised_kl(s2, t, {}, o));
  published_kl.backward();
  EXPECT_NEAR(value(published_kl), 0.0, 1e-12);
  EXPECT_GT(s2.grad().abs().max().item<double>(), 1e-3);
  // And the renormalised divergence is never negative.
  for (int trial = 0; trial < 5; ++trial) {
    EXPECT_GE(value(topk_renormalised_kl(torch::randn({2, 3, 4, 8}, kF64), t, {}, o)), -1e-12);
  }
}

TEST(ObjectiveTest, AlphaMixing) {
  const auto ce = torch::tensor(2.0, kF64);
  const auto align = torch::tensor(4.0, kF64);
  EXPECT_DOUBLE_EQ(value(mix(ce, align, 0.25)), 0.75 * 2 + 0.25 * 4);
  EXPECT_DOUBLE_EQ(value(mix(ce, align, 0.0)), 2.0);
  EXPECT_DOUBLE_EQ(value(mix(ce, align, 1.0)), 4.0);
  EXPECT_DOUBLE_EQ(value(mix(ce, torch::Tensor(), 0.7)), 2.0);  // objective "ce"
  EXPECT_FALSE(alignment_loss(AlignmentInputs{}, opts_for("ce")).defined());
}

TEST(ObjectiveTest, DispatcherMatchesDirectCalls) {
  torch::manual_seed(6);
  AlignmentInputs in;
  in.student_beams = torch::randn({1, 2, 5, 7}, kF64);
  in.teacher_beams = torch::randn({1, 2, 5, 7}, kF64);
  in.beam_labels = torch::randint(0, 7, {1, 2, 5}, torch::kLong);
  in.student_gt = torch::randn({2, 5, 7}, kF64);
  in.teacher_gt = torch::randn({2, 5, 7}, kF64);
  const AlignmentOptions o;
  EXPECT_EQ(value(alignment_loss(Objective::AtspeedS, in, o)), value(atspeed_s_loss(in.student_beams, in.teacher_beams, {}, o)));
  EXPECT_EQ(value(alignment_loss(Objective::AtspeedR, in, o)), value(atspeed_r_loss(in.student_beams, in.teacher_beams, {}, o)));
  EXPECT_EQ(value(alignment_loss(Objective::WordKd, in, o)), value(wordkd_loss(in.student_gt, in.teacher_gt)));
  EXPECT_EQ(value(alignment_loss(Objective::TvdKd, in, o)), value(tvdkd_loss(in.student_gt, in.teacher_gt)));
  EXPECT_EQ(value(alignment_loss(Objective::SeqKd, in, o)), value(seqkd_loss(in.student_beams, in.beam_labels)));
  // A missing input or mask is a trainer bug.
  AlignmentInputs missing;
  missing.student_gt = in.student_gt;
  try {
    alignment_loss(Objective::WordKd, missing, o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Internal);
  }
  AlignmentOptions c;
  c.constrained_loss = true;
  EXPECT_THROW(alignment_loss(Objective::AtspeedR, in, c), Error);
}

// needs_teacher_logits() decides whether the teacher files' logits are read (TeacherReadOptions::logits):
// every objective that claims not to need them computes its loss without them, every other one refuses.
TEST(ObjectiveTest, NeedsTeacherLogitsMatchesWhatEachLossReads) {
  torch::manual_seed(7);
  AlignmentInputs in;
  in.student_beams = torch::randn({1, 2, 5, 7}, kF64);
  in.beam_labels = torch::randint(0, 7, {1, 2, 5}, torch::kLong);
  in.student_gt = torch::randn({2, 5, 7}, kF64);  // teacher_gt, teacher_beams: undefined, as when not read
  const AlignmentOptions o;
  for (const Objective obj : {Objective::AtspeedS, Objective::AtspeedR, Objective::WordKd, Objective::TvdKd,
                              Objective::SeqKd, Objective::AtspeedSNorm}) {
    if (obj.needs_teacher_logits()) {
      EXPECT_THROW(alignment_loss(obj, in, o), Error) << obj.name();
    } else {
      EXPECT_TRUE(torch::isfinite(alignment_loss(obj, in, o)).item<bool>()) << obj.name();
    }
  }
  // names() lists every objective once, each one parseable (the error and help messages use it).
  std::stringstream listed(Objective::names());
  std::string name;
  int count = 0;
  while (std::getline(listed >> std::ws, name, ',')) {
    ASSERT_TRUE(Objective::from_name(name).has_value()) << "'" << name << "'";
    EXPECT_EQ(Objective::from_name(name)->name(), name);
    ++count;
  }
  EXPECT_EQ(count, 7);
  EXPECT_FALSE(Objective(Objective::Ce).needs_teacher_logits());
  EXPECT_FALSE(Objective(Objective::SeqKd).needs_teacher_logits());
}

TEST(ObjectiveTest, ValidateRejectsBadOptions) {
  const auto expect_config_error = [](const AlignmentOptions& o, const std::string& key) {
    try {
      o.validate();
      ADD_FAILURE() << "expected an error about " << key;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Config);
      EXPECT_NE(e.message().find(key), std::string::npos) << e.message();
    }
  };
  for (const char* name : {"ce", "atspeed_s", "atspeed_r", "wordkd", "tvdkd", "seqkd", "atspeed_s_norm"}) {
    EXPECT_NO_THROW(opts_for(name).validate());
  }
  try {  // an unknown name never becomes an Objective: the error names the field
    opts_for("atspeed");
    ADD_FAILURE() << "atspeed was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config);
    EXPECT_NE(e.message().find("train.objective"), std::string::npos) << e.message();
  }
  auto o = opts_for("atspeed_r");
  o.alpha = 1.5;
  expect_config_error(o, "train.alpha");
  o.alpha = -0.1;
  expect_config_error(o, "train.alpha");
  o.alpha = 0.5;
  o.temperature = 0;
  expect_config_error(o, "train.temperature");
  o.temperature = 1;
  o.top_k_tokens = 0;
  expect_config_error(o, "train.top_k_tokens");
  o.top_k_tokens = 20;
  o.constrained_loss = true;
  EXPECT_NO_THROW(o.validate());
  for (const char* name : {"wordkd", "tvdkd", "seqkd"}) {
    auto bad = opts_for(name);
    bad.constrained_loss = true;
    expect_config_error(bad, "train.constrained_loss");
  }
}

TEST(ObjectiveTest, SlotMaskFromCatalog) {
  const ItemCatalog catalog(Vocabulary(4, 8), {1, 2, 3, 4, 1, 6, 0, 0, 7, 0, 0, 1});
  const auto mask = slot_mask(catalog);
  ASSERT_EQ(mask.sizes(), (std::vector<int64_t>{5, 37}));
  const Vocabulary& v = catalog.vocab();
  const std::vector<std::vector<int>> used = {{1, 7}, {0, 2, 6}, {0, 3}, {0, 1, 4}};
  for (int l = 0; l < 4; ++l) {
    EXPECT_EQ(mask[l].sum().item<int64_t>(), static_cast<int64_t>(used[static_cast<size_t>(l)].size())) << l;
    for (int c : used[static_cast<size_t>(l)]) EXPECT_TRUE(mask[l][v.code_token(l, c)].item<bool>());
  }
  EXPECT_EQ(mask[4].sum().item<int64_t>(), 1);
  EXPECT_TRUE(mask[4][Vocabulary::kEos].item<bool>());
}

}  // namespace
}  // namespace atspeed::train
