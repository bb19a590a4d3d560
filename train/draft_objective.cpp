#include "train/draft_objective.h"

#include <torch/torch.h>

#include "core/errors.h"
#include "data/batch.h"
#include "train/objectives.h"

namespace atspeed::train {

DraftObjective::DraftObjective(const AlignConfig& align, std::shared_ptr<const ItemCatalog> catalog, const PromptLayout& layout,
                               const Trainer& trainer, std::unique_ptr<TeacherComputer> online,
                               const std::string& target_fingerprint)
    : align_(align),
      catalog_(catalog),
      format_(catalog, layout),
      online_(std::move(online)) {
  slot_mask_ = slot_mask(*catalog_);
  if (!align_.needs_teacher() || align_.teacher.empty()) {
    ATSPEED_CHECK(!align_.needs_teacher() || online_, "DraftObjective: objective ", align_.options.objective.name(),
                  " without teacher files needs the online teacher");
    return;
  }
  TeacherReadOptions ro;
  ro.floor_margin = static_cast<float>(align_.teacher_floor_margin);
  ro.logits = align_.options.objective.needs_teacher_logits();
  for (const std::string split : {"train", "valid"}) {
    auto& reader = split == "train" ? train_reader_ : valid_reader_;
    reader.emplace(align_.teacher, split, ro);
    reader->check_fingerprints(catalog_->fingerprint(), target_fingerprint);
    const auto& m = reader->meta();
    const auto need = static_cast<int64_t>(trainer.samples(split).size());
    // Train: the same list (one per user by default); valid: the trainer's first max_valid_samples
    // must be among the teacher's first max_valid.
    ATSPEED_ENSURE(Data, split == "train" ? m.split_samples == need : m.split_samples >= need, "teacher data ",
                   align_.teacher, "/", split, " has ", m.split_samples, " samples, training needs ",
                   split == "train" ? "" : "at least ", need,
                   split == "train" ? " (data.draft_samples or data.history_len differ from the teacher run?)"
                                    : " (lower train.max_valid_samples or regenerate with a larger teacher.max_valid)");
    ATSPEED_ENSURE(Data, m.slots == format_.response_length(), "teacher data ", align_.teacher, ": ", m.slots,
                   " slots, the vocabulary has ", format_.response_length());
  }
}
DraftObjective::~DraftObjective() = default;

TrainObjective DraftObjective::objective() {
  TrainObjective o;
  o.name = align_.options.objective.name();
  o.loss = [this](model::LlamaModelImpl& m, const MicroBatch& b) { return loss(m, b); };
  o.units = [](const MicroBatch& b) { return static_cast<int64_t>(b.samples.size()); };
  return o;
}

TeacherChunk DraftObjective::teacher(const std::string& split, const std::vector<int64_t>& indices,
                                     const std::vector<const Sample*>& samples) {
  if (online_) return online_->compute(samples, format_, true, align_.options.objective.needs_teacher_logits());
  const auto& reader = split == "train" ? train_reader_ : valid_reader_;
  TeacherChunk c = reader->get(indices);
  for (size_t i = 0; i < samples.size(); ++i)
    ATSPEED_ENSURE(Data, c.user[static_cast<int64_t>(i)].item<int64_t>() == samples[i]->user, "teacher data ",
                   align_.teacher, "/", split, ": sample ", indices[i], " belongs to user ",
                   c.user[static_cast<int64_t>(i)].item<int64_t>(), ", the dataset's is user ", samples[i]->user);
  return c;
}

std::pair<at::Tensor, int64_t> DraftObjective::loss(model::LlamaModelImpl& model, const MicroBatch& batch) {
  const std::string& split = batch.split;
  const std::vector<int64_t>& indices = batch.indices;
  const std::vector<const Sample*>& samples = batch.samples;
  const c10::Device device = batch.device;
  std::vector<std::vector<int64_t>> prompts;
  for (const Sample* s : samples) prompts.push_back(format_.prompt(s->history));
  const auto B = static_cast<int64_t>(samples.size());
  const int64_t S = format_.response_length();
  at::Tensor gt = torch::empty({B, S}, torch::kLong);
  for (int64_t b = 0; b < B; ++b)
    gt[b].copy_(torch::tensor(format_.response(samples[static_cast<size_t>(b)]->targets.at(0)), torch::kLong));

  TeacherChunk t;
  if (align_.needs_teacher()) {
    torch::NoGradGuard no_grad;
    t = teacher(split, indices, samples);
  }
  const bool beams = align_.options.objective.needs_beams();
  at::Tensor rows = beams ? torch::cat({gt.view({B, 1, S}), t.beams.cpu()}, 1) : gt.view({B, 1, S});
  const at::Tensor student = row_slot_logits(model, prompts, rows, device);  // [B, R, S, V]
  const int64_t V = student.size(-1);
  at::Tensor gt_dev = gt.to(device);
  // Sum over samples of each sample's mean CE over its S response slots.
  at::Tensor ce = torch::nn::functional::cross_entropy(
                      student.select(1, 0).reshape({-1, V}), gt_dev.reshape({-1}),
                      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum)) /
                  static_cast<double>(S);
  at::Tensor align;
  if (align_.needs_teacher()) {
    AlignmentInputs in;
    in.student_gt = student.select(1, 0);
    if (t.gt_logits.defined()) in.teacher_gt = t.gt_logits.to(device);  // undefined: not read (seqkd)
    if (beams) {
      in.student_beams = student.narrow(1, 1, student.size(1) - 1);
      if (t.beam_logits.defined()) in.teacher_beams = t.beam_logits.to(device);
      in.beam_labels = t.beams.to(device);
    }
    in.slot_mask = slot_mask_.to(device);
    align = alignment_loss(in, align_.options) * static_cast<double>(B);  // mean -> sum over samples
  }
  return {mix(ce, align, align_.options.alpha), B};
}

}  // namespace atspeed::train
