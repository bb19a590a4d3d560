// train-draft's loss (SPEC §4.3-4.4, §9.5-9.7) as a Trainer objective: per micro-batch, the student
// runs once on [prompt | ground-truth row | K teacher beam rows] (row_slot_logits: one forward, the
// prompt shared by all rows, gradients through all of it) and the loss of sample i is
//   (1 - alpha) * CE_i + alpha * L_align,i
// with CE_i the mean response CE over its S ground-truth slots and L_align,i its alignment loss (a
// mean over its rows x slots, train/objectives). The hook returns the sum over the micro-batch's
// samples and the sample count, so a step's loss is the mean over the global batch's samples.
//
// Teacher: offline from a teacher directory (data/teacher.h; the split's sample lists must be the
// trainer's, checked by count and by user id per sample) or online (TeacherComputer: the target's
// beam search and slot logits recomputed for every micro-batch). Objective "ce" needs no teacher and
// feeds only the ground-truth row.
#pragma once

#include <memory>
#include <optional>

#include "core/vocab/item_catalog.h"
#include "data/samples.h"
#include "data/teacher.h"
#include "train/draft_config.h"
#include "train/teacher_model.h"
#include "train/trainer.h"

namespace atspeed::train {

class DraftObjective {
 public:
  // `online` is used when align.teacher is empty and the objective needs a teacher. The trainer's
  // split sizes are read here to check the teacher files against them (Error(Data) when they do not
  // fit the trainer's samples or the dataset); no reference to the trainer is kept: each micro-batch
  // brings its samples and device (MicroBatch).
  DraftObjective(const AlignConfig& align, std::shared_ptr<const ItemCatalog> catalog, const PromptLayout& layout,
                 const Trainer& trainer, std::unique_ptr<TeacherComputer> online,
                 const std::string& target_fingerprint = "");
  ~DraftObjective();

  // The hook for Trainer::set_objective; `this` must outlive the trainer's run().
  TrainObjective objective();
  // The teacher files' meta (train split); nullptr for the online teacher or objective ce.
  const TeacherMeta* teacher_meta() const { return train_reader_ ? &train_reader_->meta() : nullptr; }
  // The micro-batch loss (sum over samples, count): exposed for tests.
  std::pair<at::Tensor, int64_t> loss(model::LlamaModelImpl& model, const MicroBatch& batch);

 private:
  TeacherChunk teacher(const std::string& split, const std::vector<int64_t>& indices,
                       const std::vector<const Sample*>& samples);

  AlignConfig align_;
  std::shared_ptr<const ItemCatalog> catalog_;
  PromptFormat format_;
  std::unique_ptr<TeacherComputer> online_;
  std::optional<TeacherReader> train_reader_, valid_reader_;
  at::Tensor slot_mask_;
};

}  // namespace atspeed::train
