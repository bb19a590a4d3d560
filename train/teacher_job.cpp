#include "train/teacher_job.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <memory>

#include "core/dist/communicator.h"
#include "core/errors.h"
#include "core/progress.h"
#include "train/teacher_model.h"

namespace atspeed::train {

namespace fs = std::filesystem;

TeacherJob::TeacherJob(std::vector<TeacherSplit> splits, const TeacherConfig& tc, const std::string& out,
                       const std::string& catalog_fingerprint, const std::string& target_fingerprint, int64_t slots,
                       int64_t vocab_size, int history_len, const PromptLayout& layout, int rank, int world)
    : splits_(std::move(splits)), out_(out), deflate_(static_cast<int>(tc.deflate)) {
  for (size_t si = 0; si < splits_.size(); ++si) {
    TeacherMeta m;
    m.fingerprint = catalog_fingerprint;
    m.target_fingerprint = target_fingerprint;
    m.split = splits_[si].name;
    m.train_samples = splits_[si].mode;
    m.logits_dtype = tc.dtype;
    m.split_samples = static_cast<int64_t>(splits_[si].samples.size());
    m.chunk_size = tc.chunk_size;
    m.beams = tc.beams;
    m.slots = slots;
    m.vocab_size = vocab_size;
    m.top_k = tc.stored_top_k(vocab_size);
    m.history_len = history_len;
    m.sep_token = layout.sep_token ? 1 : 0;
    m.prompt_format = layout.format_name();
    m.validate();
    metas_.push_back(m);
    for (int64_t c = rank; c < m.num_parts(); c += world) {
      const std::string path = teacher_part_path(out_, m.split, c);
      if (auto have = read_teacher_part_meta(path)) {
        const std::string diff = have->difference(m);
        ATSPEED_ENSURE(Data, diff.empty(), path, " was written with other settings (", diff, "); delete ", out_,
                       " or choose another teacher.out");
        ++skipped_;
        continue;
      }
      jobs_.push_back({si, c});
      todo_samples_ += std::min(m.chunk_size, m.split_samples - c * m.chunk_size);
    }
  }
  if (tc.max_parts > 0 && static_cast<int64_t>(jobs_.size()) > tc.max_parts) jobs_.resize(static_cast<size_t>(tc.max_parts));
}

void TeacherJob::run(TeacherComputer& computer, const PromptFormat& format, ProgressBar* bar) {
  int64_t done = 0;
  for (const Job& j : jobs_) {
    const auto& m = metas_[j.split];
    const auto& all = splits_[j.split].samples;
    const int64_t first = j.part * m.chunk_size, n = std::min(m.chunk_size, m.split_samples - first);
    std::vector<const Sample*> rows;
    for (int64_t i = first; i < first + n; ++i) rows.push_back(&all[static_cast<size_t>(i)]);
    TeacherChunk chunk = computer.compute(rows, format);
    chunk.sample_index = torch::arange(first, first + n, torch::kLong);
    write_teacher_part(out_, m, j.part, chunk, deflate_);
    done += n;
    if (bar) bar->update(done, fmt::format("{} part {}", m.split, j.part));
  }
}

bool TeacherJob::finish() const {
  for (const auto& m : metas_) {
    for (int64_t c = 0; c < m.num_parts(); ++c) {
      if (!fs::exists(teacher_part_path(out_, m.split, c))) return false;
    }
  }
  for (const auto& m : metas_) TeacherReader(out_, m.split);  // validates the whole set
  return true;
}

void repack_teacher(const std::string& dir, int64_t deflate, Communicator& comm) {
  for (const std::string split : {"train", "valid"}) {
    const TeacherReader reader(dir, split);
    TeacherMeta meta = reader.meta();
    std::unique_ptr<ProgressBar> bar;
    if (comm.rank() == 0) bar = std::make_unique<ProgressBar>("repack " + split, meta.num_parts());
    for (int64_t p = comm.rank(); p < meta.num_parts(); p += comm.size()) {
      write_teacher_part(dir, meta, p, reader.part(p), static_cast<int>(deflate));
      if (bar) bar->update(p + 1, fmt::format("part {}", p));
    }
    if (bar) bar->finish();
  }
  comm.barrier();
  if (comm.rank() == 0) {
    for (const std::string split : {"train", "valid"}) TeacherReader(dir, split);  // validates the whole set
    spdlog::info("teacher data repacked: {}", dir);
  }
}

}  // namespace atspeed::train
