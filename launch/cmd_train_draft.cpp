// `atspeed train-draft [overrides]`: alignment training of the draft (SPEC §4, §9.5-9.8). Defaults
// to train=draft (configs/train/draft.yaml) and model=draft_small unless those groups are given.
// The loss is (1 - align.alpha) * CE + align.alpha * L_align(align.objective) per sample
// (train/draft_objective.h); the teacher comes from align.teacher (files from `atspeed teacher`) or,
// when that is empty, is computed online from align.target inside the loop.
// Multi-process: `mpirun -np N atspeed train-draft ...` (data parallel, gradient all-reduce).
// SIGTERM/SIGINT: last.h5 is written and the exit code is 128 + signal; train.resume=true continues.
#include <spdlog/spdlog.h>

#include <memory>
#include <sstream>

#include "core/config.h"
#include "core/config_types.h"
#include "core/dist/communicator.h"
#include "core/errors.h"
#include "core/io/checkpoint.h"
#include "core/logging.h"
#include "core/model/hf_checkpoint.h"
#include "core/model/model_io.h"
#include "core/vocab/tokenizer.h"
#include "data/data_config.h"
#include "data/dataset.h"
#include "launch/commands.h"
#include "launch/training_run.h"
#include "launch/model_loading.h"
#include "train/draft_config.h"
#include "train/draft_objective.h"
#include "train/train_config.h"
#include "train/trainer.h"

namespace atspeed::launch {
namespace {

struct TrainDraftOptions {
  std::vector<std::string> overrides;
};

void run_train_draft(const TrainDraftOptions& o) {
  std::vector<std::string> overrides;
  bool has_train = false, has_model = false;
  for (const auto& a : o.overrides) {
    has_train = has_train || a.rfind("train=", 0) == 0;
    has_model = has_model || a.rfind("model=", 0) == 0;
  }
  if (!has_train) overrides.push_back("train=draft");
  if (!has_model) overrides.push_back("model=draft_small");
  overrides.insert(overrides.end(), o.overrides.begin(), o.overrides.end());
  Config config = load_config(overrides);
  // A draft fine-tuned from align.init (e.g. a converted LLaMA-68M) has that checkpoint's shape:
  // its model section replaces the preset's unless model= was given explicitly.
  if (const auto init = read_section<AlignConfig>(config, "align").init; !init.empty() && !has_model) {
    const ModelConfig mc = model::model_config_from_checkpoint(CheckpointReader(init));
    // Every field, as model_config_yaml writes them ("  key: value" under "model:"), as overrides.
    std::istringstream yaml(model::model_config_yaml(mc));
    for (std::string line; std::getline(yaml, line);) {
      const size_t colon = line.find(": ");
      if (line.rfind("  ", 0) == 0 && colon != std::string::npos)
        overrides.push_back("model." + line.substr(2, colon - 2) + "=" + line.substr(colon + 2));
    }
    spdlog::info("train-draft: the model shape of align.init {} ({} layers, hidden {})", init, mc.num_hidden_layers,
                 mc.hidden_size);
    config = load_config(overrides);
  }
  const auto dist = read_section<DistConfig>(config, "dist");
  const auto log = read_section<LogConfig>(config, "log");
  const auto train_config = read_section<TrainConfig>(config, "train");
  auto data = read_section<DataConfig>(config, "data");
  const auto align = read_section<AlignConfig>(config, "align");
  auto comm = make_communicator(dist.backend);
  set_log_rank(comm->rank(), comm->size(), log.all_ranks);
  train::install_stop_signal_handlers();
  // An LC-Rec target carries its tokenizer; the draft's prompts are built with it.
  if (align.needs_teacher() && !align.target.empty())
    if (auto files = model::read_tokenizer(CheckpointReader(align.target)))
      data.checkpoint_tokenizer = std::make_shared<const TextTokenizer>(*files);
  const Dataset ds = load_dataset_rank0_first(data, *comm);

  train::Trainer trainer(config, ds, *comm, "draft", parse_train_samples(data.draft_samples));
  // The target: the online teacher, or (offline) only its fingerprint, checked against the files.
  std::unique_ptr<train::TeacherComputer> online;
  std::string target_fp;
  if (align.needs_teacher() && !align.target.empty()) {
    const CheckpointReader reader(align.target);
    // The target only understands its own prompt layout, and the student must see the same prompts.
    DataConfig stored = data;
    apply_prompt_settings(reader, stored);
    ATSPEED_ENSURE(Config, stored.history_len == data.history_len && stored.layout() == data.layout(),
                   "data.history_len/prompt_format/sep_token (", data.history_len, "/", data.prompt_format, "/",
                   data.sep_token, ") differ from the target ", align.target, "'s (", stored.history_len, "/",
                   stored.prompt_format, "/", stored.sep_token, "); set them to the target's");
    model::LlamaModel target = load_model_for(reader, ds, trainer.device(), "target");
    target_fp = model::parameter_fingerprint(*target);
    if (align.teacher.empty())
      online = std::make_unique<train::TeacherComputer>(target, ds.catalog, align.beams, align.teacher_batch,
                                                        trainer.device());
  }
  if (!align.init.empty() && !trainer.resumed()) {
    const CheckpointReader init(align.init);
    check_index_fingerprint(init, ds, "draft init");
    model::read_parameters(init, trainer.model());
    spdlog::info("draft initialised from {}", align.init);
  }
  train::DraftObjective objective(align, ds.catalog, data.layout(), trainer, std::move(online), target_fp);
  if (const TeacherMeta* m = objective.teacher_meta())
    ATSPEED_ENSURE(Config,
                   m->history_len == data.history_len && m->sep_token == (data.sep_token ? 1 : 0) &&
                       m->prompt_format == data.prompt_format,
                   "data.history_len/prompt_format/sep_token (", data.history_len, "/", data.prompt_format, "/",
                   data.sep_token, ") differ from the teacher data ", align.teacher, "'s (", m->history_len, "/",
                   m->prompt_format, "/", m->sep_token, "); set them to the teacher's");
  trainer.set_objective(objective.objective());
  spdlog::info("train-draft: objective {} (alpha {}), teacher {}", align.options.objective.name(), align.options.alpha,
               !align.needs_teacher() ? "none" : align.teacher.empty() ? "online (" + align.target + ")" : align.teacher);
  const train::TrainResult r = trainer.run();
  comm->barrier();
  finish_training(r, train_config.metric);
}

const RegisterCommand register_train_draft([](CLI::App& app) {
  auto o = std::make_shared<TrainDraftOptions>();
  auto* cmd = app.add_subcommand("train-draft", "align the draft to the target (" + train::Objective::names() +
                                                    ") with checkpoints and exact resume");
  cmd->add_option("overrides", o->overrides,
                  "config overrides: align.objective=atspeed_s align.teacher=DIR (or align.target=CKPT) ...");
  cmd->callback([o]() { run_train_draft(*o); });
});

}  // namespace
}  // namespace atspeed::launch
