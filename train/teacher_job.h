// `atspeed teacher` as a job (SPEC §4.2, §9.5; format in data/teacher.h): which part files of which
// split this rank writes, resuming over the ones already complete, and the repack of an existing
// directory. The command (launch/cmd_teacher.cpp) only loads the target and the data and runs it.
//
// Resume: a complete part (each is written atomically) is skipped; a part written with other
// settings is an error naming the difference. Sharding: rank r of N writes the parts c with
// c % N == r itself (no gather); the directory's parts are the same for any N.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/samples.h"
#include "data/teacher.h"
#include "train/draft_config.h"

namespace atspeed {
class Communicator;
class ProgressBar;
}  // namespace atspeed

namespace atspeed::train {

class TeacherComputer;

// One split's samples and how they were made (data.draft_samples for train, "valid").
struct TeacherSplit {
  std::string name;
  std::vector<Sample> samples;
  std::string mode;
};

class TeacherJob {
 public:
  // out: the teacher directory. Error(Data) when a part there was written with other settings.
  TeacherJob(std::vector<TeacherSplit> splits, const TeacherConfig& tc, const std::string& out,
             const std::string& catalog_fingerprint, const std::string& target_fingerprint, int64_t slots,
             int64_t vocab_size, int history_len, const PromptLayout& layout, int rank, int world);

  int64_t parts_to_write() const { return static_cast<int64_t>(jobs_.size()); }
  int64_t parts_skipped() const { return skipped_; }
  int64_t samples_to_write() const { return todo_samples_; }
  const std::vector<TeacherSplit>& splits() const { return splits_; }

  // Computes and writes this rank's parts; `bar` (nullable) counts samples.
  void run(TeacherComputer& computer, const PromptFormat& format, ProgressBar* bar);
  // After every rank ran (call on one): true when every part exists; then the whole set is validated.
  bool finish() const;

 private:
  struct Job {
    size_t split;
    int64_t part;
  };
  std::vector<TeacherSplit> splits_;
  std::vector<TeacherMeta> metas_;
  std::vector<Job> jobs_;
  std::string out_;
  int deflate_;
  int64_t skipped_ = 0, todo_samples_ = 0;
};

// teacher.repack=true: rewrites every part of `dir` in the current storage layout (one sample per
// compressed chunk); each rewrite is atomic, so an interrupted repack leaves valid parts. Rank r
// takes the parts c % N == r.
void repack_teacher(const std::string& dir, int64_t deflate, Communicator& comm);

}  // namespace atspeed::train
