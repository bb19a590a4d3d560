// `atspeed bench train`: target-training throughput of the sample layouts side by side (issue 17):
// useful target items per second (items whose response is scored) and tokens per second, per
// `data.prompt_format:data.train_samples` mode, with the first mode as the baseline of the ratio
// column. Each mode runs the real Trainer (the same step code as train-target) from the same random
// initialisation for --warmup + --steps steps; only the --steps timed steps count. Prints a table and
// writes JSON.
//
// Batch sizes: per-prefix modes use train.global_batch rows (one item each). A one_pass row carries
// several items (about 5 on Beauty), so one_pass takes global_batch / (mean items per row) rows,
// rounded to a multiple of train.micro_batch: every mode trains on about the same number of items
// per optimizer step, which is what a user holds fixed when switching.
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>
#include <set>

#include "core/config.h"
#include "core/config_types.h"
#include "core/dist/communicator.h"
#include "core/errors.h"
#include "core/io/text_file.h"
#include "data/data_config.h"
#include "data/dataset.h"
#include "data/samples.h"
#include "launch/commands.h"
#include "train/train_config.h"
#include "train/trainer.h"

namespace atspeed::launch {
namespace {

namespace fs = std::filesystem;

struct BenchTrainOptions {
  std::vector<std::string> modes{"resp:all_prefixes", "stream:all_prefixes", "stream:one_pass"};
  int steps = 20;
  int warmup = 3;
  std::string json;  // default: <run.out_dir>/bench_train.json
  std::vector<std::string> overrides;
};

struct Mode {
  std::string text, prompt_format, train_samples;
};

Mode parse_mode(const std::string& text) {
  const auto colon = text.find(':');
  ATSPEED_ENSURE(Usage, colon != std::string::npos, "bench train --modes: '", text,
                 "' is not prompt_format:train_samples (e.g. stream:one_pass)");
  Mode m{text, text.substr(0, colon), text.substr(colon + 1)};
  // The same checks as a config file's data section, naming the mode.
  try {
    const PromptLayout layout = PromptLayout::from_config(m.prompt_format, true);
    const TrainSamples samples = parse_train_samples(m.train_samples);
    ATSPEED_ENSURE(Config, samples != TrainSamples::OnePass || layout.is_stream(),
                   "one_pass needs the stream layout");
  } catch (const Error& e) {
    ATSPEED_THROW(Usage, "bench train --modes: '", text, "': ", e.message());
  }
  return m;
}

struct ModeResult {
  Mode mode;
  int64_t rows = 0;  // global batch in rows
  double items_per_step = 0, tokens_per_step = 0, seconds_per_step = 0, loss_first = 0, loss_last = 0;
  double items_per_s() const { return items_per_step / std::max(1e-12, seconds_per_step); }
  double tokens_per_s() const { return tokens_per_step / std::max(1e-12, seconds_per_step); }
};

void run_bench_train(const BenchTrainOptions& o) {
  ATSPEED_ENSURE(Usage, o.steps >= 1, "bench train --steps: must be >= 1 (got ", o.steps, ")");
  ATSPEED_ENSURE(Usage, o.warmup >= 0, "bench train --warmup: must be >= 0 (got ", o.warmup, ")");
  ATSPEED_ENSURE(Usage, !o.modes.empty(), "bench train --modes: at least one mode");
  std::vector<Mode> modes;
  std::set<std::string> seen;
  for (const auto& t : o.modes) {
    ATSPEED_ENSURE(Usage, seen.insert(t).second, "bench train --modes lists ", t, " twice");
    modes.push_back(parse_mode(t));
  }
  const Config base = load_config(o.overrides);
  const auto run = read_section<RunConfig>(base, "run");
  const auto data = read_section<DataConfig>(base, "data");
  const auto model = read_section<ModelConfig>(base, "model");
  const auto tc = read_section<TrainConfig>(base, "train");
  auto comm = make_local_communicator();
  const Dataset ds = load_dataset(data);
  const fs::path scratch = fs::path(run.out_dir) / "bench_train_runs";

  std::vector<ModeResult> results;
  for (const Mode& m : modes) {
    const TrainSamples samples = parse_train_samples(m.train_samples);
    int64_t rows = tc.global_batch;
    if (samples == TrainSamples::OnePass) {
      const auto rows_all = make_train_samples(ds, samples, data.history_len);
      int64_t items = 0;
      for (const auto& s : rows_all) items += static_cast<int64_t>(s.targets.size());
      const double per_row = static_cast<double>(items) / static_cast<double>(std::max<size_t>(1, rows_all.size()));
      const auto micro = static_cast<double>(tc.micro_batch);
      rows = std::max<int64_t>(tc.micro_batch,
                               static_cast<int64_t>(std::llround(tc.global_batch / per_row / micro)) * tc.micro_batch);
    }
    std::vector<std::string> ov = o.overrides;
    for (const std::string& extra : std::vector<std::string>{
             "data.prompt_format=" + m.prompt_format, "data.train_samples=" + m.train_samples,
          "train.global_batch=" + std::to_string(rows), "train.max_steps=" + std::to_string(o.warmup + o.steps),
          "train.epochs=1000", "train.eval_every=0", "train.checkpoint_every=0", "train.max_valid_samples=1",
          "train.patience=0", "train.resume=false", "run.out_dir=" + (scratch / m.text).string()})
      ov.push_back(extra);
    const Config config = load_config(ov);
    spdlog::info("bench train: {} ({} rows per step, {} + {} steps)", m.text, rows, o.warmup, o.steps);
    train::Trainer trainer(config, ds, *comm, "target");
    const train::TrainResult r = trainer.run();
    ATSPEED_ENSURE(Data, static_cast<int>(r.steps.size()) == o.warmup + o.steps, "bench train: ", m.text, " ran ",
                   r.steps.size(), " steps, not ", o.warmup + o.steps, " (too few training rows for this batch?)");
    ModeResult res{m, rows};
    for (size_t i = static_cast<size_t>(o.warmup); i < r.steps.size(); ++i) {
      res.items_per_step += static_cast<double>(r.steps[i].items) / o.steps;
      res.tokens_per_step += static_cast<double>(r.steps[i].tokens) / o.steps;
      res.seconds_per_step += r.steps[i].seconds / o.steps;
    }
    res.loss_first = r.steps.front().loss;
    res.loss_last = r.steps.back().loss;
    results.push_back(res);
  }
  fs::remove_all(scratch);

  const ModeResult& baseline = results.front();
  std::cout << fmt::format("\ntarget training throughput: model {} ({} layers, hidden {}), data {}, {} threads, "
                           "{} timed steps after {} warm-up; baseline {}\n",
                           model.name, model.num_hidden_layers, model.hidden_size, ds.name, at::get_num_threads(),
                           o.steps, o.warmup, baseline.mode.text);
  std::cout << fmt::format("{:<22} {:>6} {:>11} {:>12} {:>9} {:>9} {:>10} {:>8} {:>8}\n", "mode", "rows", "items/step",
                           "tokens/step", "ms/step", "items/s", "tokens/s", "x items", "x tok");
  nlohmann::json out = {{"benchmark", "train"},      {"model", model.name},
                        {"layers", model.num_hidden_layers}, {"hidden", model.hidden_size},
                        {"data", ds.name},            {"threads", at::get_num_threads()},
                        {"steps", o.steps},           {"warmup", o.warmup},
                        {"baseline", baseline.mode.text}, {"results", nlohmann::json::array()}};
  for (const auto& r : results) {
    const double xi = r.items_per_s() / baseline.items_per_s(), xt = r.tokens_per_s() / baseline.tokens_per_s();
    std::cout << fmt::format("{:<22} {:>6} {:>11.1f} {:>12.0f} {:>9.1f} {:>9.0f} {:>10.0f} {:>7.2f}x {:>7.2f}x\n",
                             r.mode.text, r.rows, r.items_per_step, r.tokens_per_step, r.seconds_per_step * 1e3,
                             r.items_per_s(), r.tokens_per_s(), xi, xt);
    out["results"].push_back({{"mode", r.mode.text},
                              {"prompt_format", r.mode.prompt_format},
                              {"train_samples", r.mode.train_samples},
                              {"rows_per_step", r.rows},
                              {"items_per_step", r.items_per_step},
                              {"tokens_per_step", r.tokens_per_step},
                              {"seconds_per_step", r.seconds_per_step},
                              {"items_per_s", r.items_per_s()},
                              {"tokens_per_s", r.tokens_per_s()},
                              {"items_per_s_vs_baseline", xi},
                              {"loss_first_step", r.loss_first},
                              {"loss_last_step", r.loss_last}});
  }
  const std::string path = o.json.empty() ? (fs::path(run.out_dir) / "bench_train.json").string() : o.json;
  write_text_file_atomic(path, out.dump(2) + "\n");
  std::cout << "wrote " << path << "\n";
}

const RegisterCommand register_bench_train([](CLI::App& app) {
  CLI::App* bench = find_or_add_subcommand(app, "bench", "benchmarks: print a table, write JSON");
  auto o = std::make_shared<BenchTrainOptions>();
  CLI::App* cmd = bench->add_subcommand(
      "train", "target-training throughput (useful items/s) of per-prefix and one-pass samples, side by side");
  cmd->add_option("--modes", o->modes,
                  "prompt_format:train_samples modes; the first is the baseline (default resp:all_prefixes "
                  "stream:all_prefixes stream:one_pass)");
  cmd->add_option("--steps", o->steps, "timed steps per mode (default 20)");
  cmd->add_option("--warmup", o->warmup, "untimed steps first (default 3)");
  cmd->add_option("--json", o->json, "output JSON (default <run.out_dir>/bench_train.json)");
  cmd->add_option("overrides", o->overrides, "config overrides: model=target_small data=beauty train.global_batch=256 ...");
  cmd->callback([o]() { run_bench_train(*o); });
});

}  // namespace
}  // namespace atspeed::launch
