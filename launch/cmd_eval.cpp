// `atspeed eval ckpt=PATH [overrides]`: Recall@K / NDCG@K (SPEC §5.1) of a target checkpoint's
// constrained beam search (or, with eval.mode and eval.draft, of strict, relaxed or auto decoding) on
// the valid or test split, beside the most-popular baseline; prints a table and writes JSON.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>

#include "core/config.h"
#include "core/config_types.h"
#include "core/decode/beam_search.h"
#include "core/decode/decode_config.h"
#include "core/decode/planner.h"
#include "core/decode/runner.h"
#include "core/decode/tree_scorer.h"
#include "core/errors.h"
#include "core/io/checkpoint.h"
#include "core/metrics/metrics.h"
#include "core/model/model_io.h"
#include "core/vocab/constraint.h"
#include "data/data_config.h"
#include "data/dataset.h"
#include "data/evaluation.h"
#include "data/lcrec.h"
#include "data/samples.h"
#include "launch/commands.h"
#include "launch/model_loading.h"

namespace fs = std::filesystem;

namespace atspeed::launch {
namespace {

struct EvalOptions {
  std::vector<std::string> args;  // ckpt=PATH and config overrides
  std::string ckpt;
};

void run_eval(EvalOptions o) {
  std::vector<std::string> overrides;
  for (const auto& a : o.args) {
    if (a.rfind("ckpt=", 0) == 0) {
      o.ckpt = a.substr(5);
    } else {
      overrides.push_back(a);
    }
  }
  ATSPEED_ENSURE(Usage, !o.ckpt.empty(), "eval needs a checkpoint: atspeed eval ckpt=PATH");
  const Config config = load_config(overrides);
  const auto run = read_section<RunConfig>(config, "run");
  auto data = read_section<DataConfig>(config, "data");
  const auto dec = read_section<DecodeConfig>(config, "decode");
  const auto ev = read_section<EvalConfig>(config, "eval");

  const CheckpointReader reader(o.ckpt);
  const auto& attrs = reader.attributes();
  if (attrs.kind != "target") spdlog::warn("{}: kind '{}' (evaluating it as a target)", o.ckpt, attrs.kind);
  std::unique_ptr<CheckpointReader> draft_reader;
  if (ev.mode.needs_draft()) draft_reader = std::make_unique<CheckpointReader>(ev.draft);
  apply_prompt_settings(reader, data);  // before the dataset: the layout and tokenizer decide its vocabulary
  const Dataset ds = load_dataset(data);
  const std::string fingerprint = ds.catalog->fingerprint();
  const at::Device device = resolve_device(dec.device);
  model::LlamaModel model = load_model_for(reader, ds, device, "target", dec.dtype);
  model::LlamaModel draft_model{nullptr};
  if (draft_reader) {
    draft_model = load_model_for(*draft_reader, ds, device, "draft", dec.dtype);
    warn_if_draft_larger(*model, *draft_model, o.ckpt, ev.draft);
  }

  const PromptFormat format(ds.catalog, data.layout());
  const EvalUsers users = make_eval_users(ds, format, ev.split, data.history_len, ev.max_users, std::nullopt, dec.seed);
  const auto constraint = make_constraint(data.constraint, *ds.catalog);
  spdlog::info("eval {} on {} ({} split, {} users, constraint {}, device {}, mode {}, K = {})", o.ckpt, ds.name, ev.split,
               users.size(), constraint->name(), device.str(), ev.mode.name(), fmt::join(ev.ks, ","));

  // Baselines from the history the split's users have (train, plus valid for the test split):
  // most-popular, and item-to-item transitions from the last history item filled by popularity.
  metrics::TopKAccumulator model_acc(ev.ks), pop_acc(ev.ks), trans_acc(ev.ks);
  const int64_t max_k = *std::max_element(ev.ks.begin(), ev.ks.end());
  const std::vector<const UserSequences*> history =
      ev.split == "test" ? std::vector<const UserSequences*>{&ds.train, &ds.valid} : std::vector<const UserSequences*>{&ds.train};
  const auto popular = metrics::most_popular_tuples(*ds.catalog, history, max_k);
  const metrics::TransitionModel transitions(*ds.catalog, history);
  for (size_t u = 0; u < users.size(); ++u) {
    pop_acc.add(popular, users.truth[u]);
    const auto& h = users.samples[u].history;
    trans_acc.add(transitions.rank(h.empty() ? -1 : h.back(), popular, max_k), users.truth[u]);
  }

  torch::NoGradGuard no_grad;
  decode::LlamaTreeScorer scorer(model);
  std::unique_ptr<decode::LlamaTreeScorer> draft_scorer;
  if (draft_model) draft_scorer = std::make_unique<decode::LlamaTreeScorer>(draft_model);
  std::optional<decode::Plan> plan;
  if (ev.mode.is_auto()) {
    decode::AutoOptions ao = dec.auto_plan;
    ao.planner.ks = ev.ks;
    const EvalUsers calib = make_eval_users(ds, format, "valid", data.history_len, ao.calib_users, std::nullopt, dec.seed);
    const auto key = decode::PlanKey::of(o.ckpt, ev.draft, device.str(), dec.dtype, constraint->name(),
                                         at::get_num_threads(), ev.batch_size, static_cast<int64_t>(calib.size()), ao.planner);
    plan = decode::load_or_make_plan(scorer, *draft_scorer, *constraint, calib.prompts, ao, key,
                                     dec.run_settings(decode::DecodeMode::Strict, 0));
  }
  nlohmann::json per_k = nlohmann::json::array();
  const int64_t total_work = static_cast<int64_t>(users.size() * ev.ks.size());
  int64_t work_done = 0;
  const auto eval_start = std::chrono::steady_clock::now();
  auto last_log = eval_start;
  for (size_t ki = 0; ki < ev.ks.size(); ++ki) {
    const int64_t k = ev.ks[ki];
    const decode::RunSettings settings =
        plan ? plan->choose(k).settings(dec.run_settings(decode::DecodeMode::Strict, k)) : dec.run_settings(ev.mode, k);
    const auto k_start = std::chrono::steady_clock::now();
    int64_t forward_calls = 0, draft_calls = 0, returned = 0, non_items = 0;
    for (size_t begin = 0; begin < users.size(); begin += static_cast<size_t>(ev.batch_size)) {
      const size_t end = std::min(users.size(), begin + static_cast<size_t>(ev.batch_size));
      const std::vector<std::vector<int64_t>> prompts(users.prompts.begin() + static_cast<std::ptrdiff_t>(begin),
                                                      users.prompts.begin() + static_cast<std::ptrdiff_t>(end));
      const std::vector<uint64_t> seeds(users.seeds.begin() + static_cast<std::ptrdiff_t>(begin),
                                        users.seeds.begin() + static_cast<std::ptrdiff_t>(end));
      const auto results = decode::run_batch(scorer, draft_scorer.get(), *constraint, settings, prompts, seeds);
      for (size_t u = begin; u < end; ++u) {
        const auto& r = results[u - begin];
        const std::vector<int64_t> ranking = ranking_of(*ds.catalog, r.beams, &non_items);
        returned += static_cast<int64_t>(ranking.size());
        forward_calls += r.target_forwards;
        draft_calls += r.draft_forwards;
        model_acc.add_at(ki, ranking, users.truth[u]);
      }
      work_done += static_cast<int64_t>(end - begin);
      const auto now = std::chrono::steady_clock::now();
      if (std::chrono::duration<double>(now - last_log).count() >= ev.log_every_s) {
        last_log = now;
        const double el = std::chrono::duration<double>(now - eval_start).count();
        const double rate = static_cast<double>(work_done) / el;
        spdlog::info("K={}: {}/{} users, {:.1f} users/s, ETA {:.0f} s (all K)", k, end, users.size(), rate,
                     static_cast<double>(total_work - work_done) / rate);
      }
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - k_start).count();
    const double n = static_cast<double>(users.size());
    nlohmann::json row = {{"k", k},
                          {"mode", settings.mode.name()},
                          {"recall", model_acc.recall(ki)},
                          {"ndcg", model_acc.ndcg(ki)},
                          {"most_popular_recall", pop_acc.recall(ki)},
                          {"most_popular_ndcg", pop_acc.ndcg(ki)},
                          {"transition_recall", trans_acc.recall(ki)},
                          {"transition_ndcg", trans_acc.ndcg(ki)},
                          {"seconds", secs},
                          {"users_per_s", n / secs},
                          {"forward_calls_per_user", static_cast<double>(forward_calls) / n},
                          {"draft_calls_per_user", static_cast<double>(draft_calls) / n},
                          {"mean_returned", static_cast<double>(returned) / n},
                          {"non_item_share", returned ? static_cast<double>(non_items) / static_cast<double>(returned) : 0.0}};
    if (settings.mode.is_speculative()) {
      row["draft_width"] = decode::effective_draft_width(settings.draft_width, k);
      row["gamma"] = settings.gamma;
    }
    per_k.push_back(row);
    spdlog::info("K={}: Recall {:.4f} NDCG {:.4f} ({:.1f} s, {:.1f} users/s, {})", k, model_acc.recall(ki),
                 model_acc.ndcg(ki), secs, n / secs, settings.mode.name());
  }

  // Table: the model and the two baselines side by side for each K.
  std::cout << fmt::format("{} | {} {} | {} users | constraint {} | mode {}\n", o.ckpt, ds.name, ev.split,
                           users.size(), constraint->name(), ev.mode.name());
  std::cout << fmt::format("{:>4}  {:>9} {:>9}  {:>12} {:>12}  {:>14} {:>14}  {:>8}\n", "K", "Recall@K", "NDCG@K",
                           "Pop Recall@K", "Pop NDCG@K", "Trans Recall@K", "Trans NDCG@K", "users/s");
  for (size_t ki = 0; ki < ev.ks.size(); ++ki) {
    const auto& row = per_k[ki];
    std::cout << fmt::format("{:>4}  {:>9.4f} {:>9.4f}  {:>12.4f} {:>12.4f}  {:>14.4f} {:>14.4f}  {:>8.1f}\n", ev.ks[ki],
                             row["recall"].get<double>(), row["ndcg"].get<double>(),
                             row["most_popular_recall"].get<double>(), row["most_popular_ndcg"].get<double>(),
                             row["transition_recall"].get<double>(), row["transition_ndcg"].get<double>(),
                             row["users_per_s"].get<double>());
  }

  nlohmann::json out = {{"checkpoint", o.ckpt},
                        {"kind", attrs.kind},
                        {"fingerprint", fingerprint},
                        {"dataset", ds.name},
                        {"data_dir", ds.dir},
                        {"split", ev.split},
                        {"users", users.size()},
                        {"mode", ev.mode.name()},
                        {"draft", ev.draft},
                        {"constraint", constraint->name()},
                        {"sample", dec.sample},
                        {"device", device.str()},
                        {"batch_size", ev.batch_size},
                        {"ks", ev.ks},
                        {"per_k", per_k}};
  nlohmann::json model_json, pop_json, trans_json;
  for (size_t ki = 0; ki < ev.ks.size(); ++ki) {
    const std::string k = std::to_string(ev.ks[ki]);
    model_json["recall@" + k] = model_acc.recall(ki);
    model_json["ndcg@" + k] = model_acc.ndcg(ki);
    pop_json["recall@" + k] = pop_acc.recall(ki);
    pop_json["ndcg@" + k] = pop_acc.ndcg(ki);
    trans_json["recall@" + k] = trans_acc.recall(ki);
    trans_json["ndcg@" + k] = trans_acc.ndcg(ki);
  }
  out["model"] = model_json;
  out["most_popular"] = pop_json;
  out["item_transitions"] = trans_json;
  std::string path = ev.out;
  if (path.empty()) {
    config.save_to_dir(run.out_dir);
    path = (fs::path(run.out_dir) / "eval.json").string();
  } else if (fs::path(path).has_parent_path()) {
    fs::create_directories(fs::path(path).parent_path());
  }
  write_text_file_atomic(path, out.dump(2) + "\n");
  spdlog::info("wrote {}", path);
}

const RegisterCommand register_eval([](CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  auto* cmd = app.add_subcommand("eval", "Recall@K / NDCG@K of a target checkpoint's beam search (SPEC §5.1)");
  cmd->add_option("args", o->args, "ckpt=PATH and config overrides (data=games eval.split=valid eval.ks=[5,10] ...)");
  cmd->add_option("--ckpt", o->ckpt, "the checkpoint (same as ckpt=PATH)");
  cmd->callback([o]() { run_eval(*o); });
});

}  // namespace
}  // namespace atspeed::launch
