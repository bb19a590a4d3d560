#include "train/draft_config.h"

namespace atspeed {

void TeacherConfig::read(ConfigSection& s) {
  s.get("target", target)
      .get("out", out)
      .get("beams", beams)
      .get("max_valid", max_valid)
      .get("dtype", dtype)
      .get("top_k", top_k)
      .get("chunk_size", chunk_size)
      .get("deflate", deflate)
      .get("batch_size", batch_size)
      .get("device", device)
      .get("max_parts", max_parts)
      .get("repack", repack);
}

int64_t TeacherConfig::stored_top_k(int64_t vocab_size) const {
  if (top_k < 0) return 0;
  if (top_k > 0) return top_k;
  return vocab_size > 2048 ? 512 : 0;
}

void TeacherConfig::validate() const {
  config_ensure(!target.empty() || repack, "teacher.target", "the target checkpoint is required (teacher.target=path/best.h5)");
  config_ensure(beams >= 1, "teacher.beams", "must be >= 1");
  config_ensure(max_valid >= 0, "teacher.max_valid", "must be >= 0");
  config_ensure(dtype == "float32" || dtype == "float16", "teacher.dtype", "must be float32 or float16");
  config_ensure(top_k >= -1, "teacher.top_k", "must be > 0 (top-k logits), 0 (auto) or -1 (full logits)");
  config_ensure(chunk_size >= 1, "teacher.chunk_size", "must be >= 1");
  config_ensure(deflate >= 0 && deflate <= 9, "teacher.deflate", "must be in 0..9");
  config_ensure(batch_size >= 1, "teacher.batch_size", "must be >= 1");
  config_ensure(max_parts >= 0, "teacher.max_parts", "must be >= 0");
}

void AlignConfig::read(ConfigSection& s) {
  std::string objective = options.objective.name();
  s.get("objective", objective);
  const auto parsed = train::Objective::from_name(objective);
  if (!parsed) s.fail("objective", "unknown objective '" + objective + "' (" + train::Objective::names() + ")");
  options.objective = *parsed;
  s.get("alpha", options.alpha)
      .get("constrained_loss", options.constrained_loss)
      .get("constrained_softmax", options.constrained_softmax)
      .get("temperature", options.temperature)
      .get("top_k_tokens", options.top_k_tokens)
      .get("teacher", teacher)
      .get("target", target)
      .get("beams", beams)
      .get("teacher_batch", teacher_batch)
      .get("teacher_floor_margin", teacher_floor_margin)
      .get("init", init);
}

void AlignConfig::validate() const {
  try {
    options.validate();
  } catch (const Error& e) {
    // AlignmentOptions names its fields as train.<key>; here they live in the align section.
    std::string m = e.message();
    if (m.rfind("train.", 0) == 0) m.replace(0, 6, "align.");
    throw Error(e.kind(), m, __FILE__, __LINE__);
  }
  config_ensure(!needs_teacher() || !teacher.empty() || !target.empty(), "align.target",
                std::string("objective '") + options.objective.name() +
                    "' needs a teacher: set align.teacher=<dir from atspeed teacher> or align.target=<checkpoint> "
                    "(online teacher)");
  config_ensure(beams >= 1, "align.beams", "must be >= 1");
  config_ensure(teacher_batch >= 1, "align.teacher_batch", "must be >= 1");
  config_ensure(teacher_floor_margin > 0, "align.teacher_floor_margin", "must be > 0");
}

}  // namespace atspeed
