// `atspeed teacher teacher.target=CKPT [overrides]`: teacher data for draft training (SPEC §4.2,
// §9.5; format in data/teacher.h). For every training sample (data.draft_samples) and the first
// teacher.max_valid validation samples it stores the target's trie-constrained top-K beams and its
// logits at the slots of the ground truth and of each beam, in part files of teacher.chunk_size
// samples under teacher.out (default <run.out_dir>/teacher).
//
// Resume and sharding (`mpirun -np N atspeed teacher ...`) are train/teacher_job.h's: rerunning the
// same command continues with the missing parts; rank r of N writes the parts c % N == r.
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
#include "train/teacher_job.h"
#include "train/teacher_model.h"

namespace atspeed::launch {
namespace {

namespace fs = std::filesystem;

struct TeacherOptions {
  std::vector<std::string> overrides;
};

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
    train::repack_teacher(tc.out.empty() ? (fs::path(run.out_dir) / "teacher").string() : tc.out, tc.deflate, *comm);
    return;
  }

  const CheckpointReader reader(tc.target);
  if (reader.attributes().kind != "target")
    spdlog::warn("{}: kind '{}' (using it as the teacher target)", tc.target, reader.attributes().kind);
  apply_prompt_settings(reader, data);  // before the dataset: the layout and tokenizer decide its vocabulary
  Dataset ds;
  if (comm->rank() == 0) ds = load_dataset(data);
  comm->barrier();
  if (comm->rank() != 0) ds = load_dataset(data);
  const c10::Device device = resolve_device(tc.device, "teacher.device");
  model::LlamaModel target = load_model_for(reader, ds, device, "target");
  const std::string target_fp = model::parameter_fingerprint(*target);
  const std::string out = tc.out.empty() ? (fs::path(run.out_dir) / "teacher").string() : tc.out;
  const PromptFormat format(ds.catalog, data.layout());
  train::TeacherComputer computer(target, ds.catalog, tc.beams, tc.batch_size, device);

  std::vector<train::TeacherSplit> splits;
  splits.push_back({"train", make_train_samples(ds, parse_train_samples(data.draft_samples), data.history_len),
                    data.draft_samples});
  splits.push_back({"valid", make_valid_samples(ds, data.history_len), "valid"});
  if (tc.max_valid > 0 && static_cast<int64_t>(splits[1].samples.size()) > tc.max_valid)
    splits[1].samples.resize(static_cast<size_t>(tc.max_valid));
  train::TeacherJob job(std::move(splits), tc, out, ds.catalog->fingerprint(), target_fp, format.response_length(),
                        ds.catalog->vocab().size(), data.history_len, data.layout(), comm->rank(), comm->size());
  spdlog::info("teacher: target {} ({}), K = {}, {} train + {} valid samples, {} parts to write on this rank ({} "
               "already complete), out {}",
               tc.target, target_fp, tc.beams, job.splits()[0].samples.size(), job.splits()[1].samples.size(),
               job.parts_to_write(), job.parts_skipped(), out);
  std::unique_ptr<ProgressBar> bar;
  if (comm->rank() == 0) bar = std::make_unique<ProgressBar>("teacher", job.samples_to_write());
  job.run(computer, format, bar.get());
  if (bar) bar->finish();
  comm->barrier();
  if (comm->rank() == 0) {
    if (job.finish()) {
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
