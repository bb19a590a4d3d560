// The `teacher:` (atspeed teacher) and `align:` (atspeed train-draft) config sections; defaults in
// configs/config.yaml. SPEC §4.2-4.5, §9.5-9.8.
#pragma once

#include <cstdint>
#include <string>

#include "core/config.h"
#include "train/objectives.h"

namespace atspeed {

struct TeacherConfig {
  std::string target;            // target checkpoint (required)
  std::string out;               // teacher directory; "" = <run.out_dir>/teacher
  int64_t beams = 20;            // K of the trie-constrained top-K search (SPEC §4.2)
  int64_t max_valid = 2000;      // first N valid samples (SPEC §4.2; 0 = all)
  std::string dtype = "float32"; // logits storage: float32 | float16
  // Logits kept per slot: > 0 the top-k (values + indices); 0 = auto: all V up to V = 2,048 and
  // the top 512 above (a LLaMA vocabulary of 33k would take ~14 MB per sample at K = 20); -1 = all V always.
  int64_t top_k = 0;
  int64_t chunk_size = 256;      // samples per part file (the resume granularity)
  int64_t deflate = 4;           // 0-9
  int64_t batch_size = 16;       // prompts per beam-search / slot forward
  std::string device = "cpu";    // cpu | cuda | auto
  int64_t max_parts = 0;         // > 0: stop after writing this many new parts (tests, time slicing)
  bool repack = false;           // rewrite the existing parts of `out` in the current layout, then exit

  void read(ConfigSection& s);
  void validate() const;
  // The top-k the files store for vocabulary size V (0 = full logits), resolving auto.
  int64_t stored_top_k(int64_t vocab_size) const;
};

struct AlignConfig {
  train::AlignmentOptions options;  // objective, alpha, constrained_loss, constrained_softmax, temperature, top_k_tokens
  // Teacher directory written by `atspeed teacher`; "" = online: the target runs inside the training
  // loop (align.target required).
  std::string teacher;
  std::string target;            // target checkpoint: the online teacher; offline: checked against the files' fingerprint
  int64_t beams = 20;            // online teacher's K (offline: the files' K)
  int64_t teacher_batch = 16;    // online: prompts per beam-search forward
  double teacher_floor_margin = 20.0;  // top-k files: fill = row's smallest kept logit - margin
  std::string init;              // "" = random init; else a checkpoint whose weights start the draft

  void read(ConfigSection& s);
  void validate() const;
  bool needs_teacher() const { return options.objective.needs_teacher(); }
};

}  // namespace atspeed
