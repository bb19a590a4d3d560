// `atspeed teacher teacher.target=CKPT [overrides]`: teacher data for draft training (SPEC §4.2,
// §9.5; format in data/teacher.h). For every training sample (data.draft_samples) and the first
// teacher.max_valid validation samples it stores the target's trie-constrained top-K beams and its
// logits at the slots of the ground truth and of each beam, in part files of teacher.chunk_size
// samples under teacher.out (default <run.out_dir>/teacher).
//
// Resume: rerunning the same command skips the parts already written (each is atomic) and continues
// with the missing ones; a part written with other settings is an error (delete the directory).
// Sharding: `mpirun -np N atspeed teacher ...` - rank r computes and writes the parts c with
// c % N == r itself (no gather); the directory's parts are the same for any N.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <torch/torch.h>

#include <filesystem>
#include <memory>

#include "core/config.h"
#include "core/config_types.h"
#include "core/dist/communicator.h"
#include "core/errors.h"
#include "core/logging.h"
#include "core/model/model_io.h"
#include "core/progress.h"
#include "data/data_config.h"
#include "data/dataset.h"
#include "data/samples.h"
#include "data/teacher.h"
#include "launch/commands.h"
#include "launch/model_loading.h"
#include "train/draft_config.h"
#include "train/teacher_model.h"

namespace atspeed::launch {
namespace {

namespace fs = std::filesystem;

struct TeacherOptions {
  std::vector<std::string> overrides;
};

// teacher.repack=true: rewrites every part of `dir` in the current storage layout (one sample per
// compressed chunk); each rewrite is atomic, so an interrupted repack leaves valid parts. Rank r
// takes the parts c % N == r.
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

void run_teacher(const TeacherOptions& o) {
  const Config config = load_config(o.overrides);
  const auto dist = read_section<DistConfig>(config, "dist");
  const auto log = read_section<LogConfig>(config, "log");
  const auto run = read_section<RunConfig>(config, "run");
  auto data = read_section<DataConfig>(config, "data");
  const auto tc = read_section<TeacherConfig>(config, "teacher");
  auto comm = make_communicator(dist.backend);
  set_log_rank(comm->rank(), comm->size(), log.all_ranks);
  if (tc.repack) {
    repack_teacher(tc.out.empty() ? (fs::path(run.out_dir) / "teacher").string() : tc.out, tc.deflate, *comm);
    return;
  }

  const CheckpointReader reader(tc.target);
  if (reader.attributes().kind != "target")
    spdlog::warn("{}: kind '{}' (using it as the teacher target)", tc.target, reader.attributes().kind);
  Dataset ds;
  if (comm->rank() == 0) ds = load_dataset(data);
  comm->barrier();
  if (comm->rank() != 0) ds = load_dataset(data);
  apply_prompt_settings(reader, data);
  const c10::Device device = resolve_device(tc.device);
  model::LlamaModel target = load_model_for(reader, ds, device, "target");
  const std::string target_fp = model::parameter_fingerprint(*target);
  const std::string out = tc.out.empty() ? (fs::path(run.out_dir) / "teacher").string() : tc.out;
  const PromptFormat format(ds.catalog, data.sep_token);
  train::TeacherComputer computer(target, ds.catalog, tc.beams, tc.batch_size, device);

  struct Split {
    std::string name;
    std::vector<Sample> samples;
    std::string mode;
  };
  std::vector<Split> splits;
  splits.push_back({"train", make_train_samples(ds, parse_train_samples(data.draft_samples), data.history_len),
                    data.draft_samples});
  splits.push_back({"valid", make_valid_samples(ds, data.history_len), "valid"});
  if (tc.max_valid > 0 && static_cast<int64_t>(splits[1].samples.size()) > tc.max_valid)
    splits[1].samples.resize(static_cast<size_t>(tc.max_valid));

  // The work of this rank: parts c % N == r of both splits, skipping complete ones.
  struct Job {
    size_t split;
    int64_t part;
  };
  std::vector<Job> jobs;
  std::vector<TeacherMeta> metas;
  int64_t todo_samples = 0, skipped = 0;
  for (size_t si = 0; si < splits.size(); ++si) {
    TeacherMeta m;
    m.fingerprint = ds.catalog->fingerprint();
    m.target_fingerprint = target_fp;
    m.split = splits[si].name;
    m.train_samples = splits[si].mode;
    m.logits_dtype = tc.dtype;
    m.split_samples = static_cast<int64_t>(splits[si].samples.size());
    m.chunk_size = tc.chunk_size;
    m.beams = tc.beams;
    m.slots = format.response_length();
    m.vocab_size = ds.catalog->vocab().size();
    m.top_k = tc.top_k;
    m.history_len = data.history_len;
    m.sep_token = data.sep_token ? 1 : 0;
    m.validate();
    metas.push_back(m);
    for (int64_t c = comm->rank(); c < m.num_parts(); c += comm->size()) {
      const std::string path = teacher_part_path(out, m.split, c);
      if (auto have = read_teacher_part_meta(path)) {
        const std::string diff = have->difference(m);
        ATSPEED_ENSURE(Data, diff.empty(), path, " was written with other settings (", diff,
                       "); delete ", out, " or choose another teacher.out");
        ++skipped;
        continue;
      }
      jobs.push_back({si, c});
      todo_samples += std::min(m.chunk_size, m.split_samples - c * m.chunk_size);
    }
  }
  if (tc.max_parts > 0 && static_cast<int64_t>(jobs.size()) > tc.max_parts) jobs.resize(static_cast<size_t>(tc.max_parts));
  spdlog::info("teacher: target {} ({}), K = {}, {} train + {} valid samples, {} parts to write on this rank ({} "
               "already complete), out {}",
               tc.target, target_fp, tc.beams, splits[0].samples.size(), splits[1].samples.size(), jobs.size(),
               skipped, out);
  std::unique_ptr<ProgressBar> bar;
  if (comm->rank() == 0) bar = std::make_unique<ProgressBar>("teacher", todo_samples);
  int64_t done = 0;
  for (const Job& j : jobs) {
    const auto& m = metas[j.split];
    const auto& all = splits[j.split].samples;
    const int64_t first = j.part * m.chunk_size, n = std::min(m.chunk_size, m.split_samples - first);
    std::vector<const Sample*> rows;
    for (int64_t i = first; i < first + n; ++i) rows.push_back(&all[static_cast<size_t>(i)]);
    TeacherChunk chunk = computer.compute(rows, format);
    chunk.sample_index = torch::arange(first, first + n, torch::kLong);
    write_teacher_part(out, m, j.part, chunk, static_cast<int>(tc.deflate));
    done += n;
    if (bar) bar->update(done, fmt::format("{} part {}", m.split, j.part));
  }
  if (bar) bar->finish();
  comm->barrier();
  if (comm->rank() == 0) {
    bool complete = true;
    for (const auto& m : metas)
      for (int64_t c = 0; c < m.num_parts(); ++c) complete = complete && fs::exists(teacher_part_path(out, m.split, c));
    if (complete) {
      for (const auto& m : metas) TeacherReader(out, m.split);  // validates the whole set
      spdlog::info("teacher data complete: {}", out);
    } else {
      spdlog::warn("teacher data incomplete in {}: rerun the same command to continue", out);
    }
  }
}

const RegisterCommand register_teacher([](CLI::App& app) {
  auto o = std::make_shared<TeacherOptions>();
  auto* cmd = app.add_subcommand("teacher", "generate teacher data (target beams + logits) for train-draft");
  cmd->add_option("overrides", o->overrides,
                  "config overrides: teacher.target=runs/t/best.h5 teacher.out=DIR teacher.dtype=float16 ...");
  cmd->callback([o]() { run_teacher(*o); });
});

}  // namespace
}  // namespace atspeed::launch
