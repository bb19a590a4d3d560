// Teacher data for draft alignment training (SPEC §4.2, §9.5): the target's top-K trie-constrained
// beams and its logits at the S = levels + 1 slots of the ground truth and of each beam.
//
// On disk a teacher set is a directory with one subdirectory per split:
//   <dir>/train/part-000000.h5, part-000001.h5, ...     (one per chunk)
//   <dir>/valid/part-000000.h5, ...
// Part c of a split holds samples [c * chunk_size, min(n, (c + 1) * chunk_size)) of that split's
// sample list (train: data.draft_samples; valid: the first max_valid valid samples). Every part is
// an atomic HDF5 checkpoint file (core/io/checkpoint.h, kind "teacher": written to a temp file and
// renamed), so a part either exists complete or not at all. That gives:
//   * resume: a restarted run skips the parts already present (after checking that their attributes
//     match the run) and continues with the first missing one; a kill loses at most one chunk;
//   * sharding: under mpirun, rank r of N computes the parts c with c % N == r and writes them itself
//     (no gather, no communication). Part names depend only on c, so the set is the same for any N
//     (and a resumed run may use another N). Ranks on different machines write to their own disks;
//     copying the part files into one directory merges them (names never collide).
// The reader takes the directory, checks that every part agrees on the attributes and that the parts
// cover all n samples, and serves samples by index.
//
// Datasets of a part (n samples, K beams, S slots, V vocabulary; chunked, deflate + shuffle,
// Fletcher-32):
//   sample_index  int64 [n]        index into the split's sample list
//   user          int64 [n]        the sample's user (checked against the dataset when read)
//   gt_rows       int64 [n, S]     the ground truth [c1 .. cL, EOS]
//   beams         int64 [n, K, S]  beam rows [c1' .. cL', EOS], best first; when the search found
//                                  fewer than K beams the missing rows repeat beam 0 (num_beams says
//                                  how many are real), so every row is a valid continuation
//   num_beams     int64 [n]
//   beam_scores   float32 [n, K]   summed log-probs of the L code levels (SPEC §2.1)
//   gt_logits     [n, S, V]        target logits at the ground truth's slots (slot t predicts token t)
//   beam_logits   [n, K, S, V]     target logits at each beam row's slots (slot 0 = after the prompt)
// Logits are float32 or float16 (teacher.dtype). With top-k truncation (teacher.top_k = k > 0) the
// two logits datasets are replaced by <name>_values [.., k] (same dtype, descending) and
// <name>_indices int32 [.., k]; the reader rebuilds [.., V] with every other column set to a fill
// value (TeacherReadOptions::fill): -inf by default, which keeps softmax-based losses (wordkd, tvdkd,
// atspeed_r) exact over the kept mass; a finite floor (train-draft uses the row's smallest kept
// value minus align.teacher_floor_margin) keeps log-probs finite for atspeed_s.
// Root attributes: kind "teacher", fingerprint = the item index fingerprint; strings
// target_fingerprint (model::parameter_fingerprint of the target), split, logits_dtype,
// train_samples; ints part, first_sample, split_samples, chunk_size, beams, slots, vocab_size, top_k,
// history_len, sep_token; string prompt_format (absent in older files: resp).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace atspeed {

// The run-level description every part of a split carries (and a resumed run must match).
struct TeacherMeta {
  std::string fingerprint;         // item index
  std::string target_fingerprint;  // target weights
  std::string split;               // "train" or "valid"
  std::string train_samples;       // data.draft_samples ("last", "all_prefixes") for train; "valid"
  std::string logits_dtype = "float32";  // float32 | float16
  int64_t split_samples = 0;       // n of the split
  int64_t chunk_size = 256;
  int64_t beams = 20;              // K
  int64_t slots = 5;               // S = levels + 1
  int64_t vocab_size = 0;          // V
  int64_t top_k = 0;               // 0 = full logits
  int64_t history_len = 20;
  int64_t sep_token = 1;
  std::string prompt_format = "resp";  // data.prompt_format; parts written before the key existed read as resp

  int64_t num_parts() const { return (split_samples + chunk_size - 1) / chunk_size; }
  // Error(Config) naming teacher.<key> for a bad value.
  void validate() const;
  // "" when equal, else the first differing field as "key: a vs b".
  std::string difference(const TeacherMeta& other) const;
};

// One chunk in memory, always with full logits (CPU tensors; logits float32 or float16).
struct TeacherChunk {
  at::Tensor sample_index;  // int64 [n]
  at::Tensor user;          // int64 [n]
  at::Tensor gt_rows;       // int64 [n, S]
  at::Tensor beams;         // int64 [n, K, S]
  at::Tensor num_beams;     // int64 [n]
  at::Tensor beam_scores;   // float32 [n, K]
  at::Tensor gt_logits;     // [n, S, V]
  at::Tensor beam_logits;   // [n, K, S, V]
  int64_t size() const;
};

// "<dir>/<split>/part-%06d.h5".
std::string teacher_part_path(const std::string& dir, const std::string& split, int64_t part);

// Writes part `part` atomically (converting logits to meta.logits_dtype, truncating to meta.top_k
// when > 0). `deflate` is the deflate level (0-9).
void write_teacher_part(const std::string& dir, const TeacherMeta& meta, int64_t part, const TeacherChunk& chunk,
                        int deflate = 4);

// The part's meta, or nullopt when the file does not exist; Error(Checkpoint) when it exists but is
// unreadable or not a teacher part.
std::optional<TeacherMeta> read_teacher_part_meta(const std::string& path);

struct TeacherReadOptions {
  // Value of the columns that top-k truncation dropped; -inf by default. When floor_margin is set,
  // each row's fill is (its smallest kept value) - floor_margin instead (finite log-probs).
  float fill = -std::numeric_limits<float>::infinity();
  std::optional<float> floor_margin;
  bool to_float32 = true;  // return logits as float32 (else the stored dtype)
  // false: gt_logits and beam_logits stay undefined (seqkd reads only the beams; the logits are
  // most of a sample's bytes and of its decompression and top-k reconstruction).
  bool logits = true;
};

// Reads one split of a teacher directory. Thread-compatible (one reader per thread).
class TeacherReader {
 public:
  // Error(Data) when the split is missing or incomplete (names the first missing part) or its parts
  // disagree; Error(Checkpoint) on an unreadable part.
  TeacherReader(std::string dir, std::string split, TeacherReadOptions options = {});
  ~TeacherReader();
  TeacherReader(TeacherReader&&) noexcept;
  TeacherReader& operator=(TeacherReader&&) noexcept;

  const TeacherMeta& meta() const;
  int64_t size() const;
  // The samples `indices` (any order, repeats allowed) as one chunk, logits reconstructed.
  TeacherChunk get(const std::vector<int64_t>& indices) const;
  // A whole part, as stored but reconstructed (tests).
  TeacherChunk part(int64_t index) const;
  // Error(Data) unless the item-index and target fingerprints match (either may be "" to skip it).
  void check_fingerprints(const std::string& item_fingerprint, const std::string& target_fingerprint) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace atspeed
