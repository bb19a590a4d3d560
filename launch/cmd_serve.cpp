// `atspeed serve serve.target=T.h5 serve.draft=D.h5 [overrides]`: the HTTP recommendation server
// (serve/). This file only wires it: config, dataset (its catalogue maps the API's item ids and must
// match the checkpoints' fingerprint), models, decoder, engine, HTTP server, and signals: SIGTERM or
// SIGINT stops accepting, answers every in-flight request, and exits 0.
//
// Tensor-parallel serving (`mpirun -np N atspeed serve dist.tp=N`, serve/worker.h): every rank
// loads its shard of the target and of the draft and joins the tp group; rank 0 runs HTTP and the
// engine with a serve::BroadcastDecoder, ranks > 0 serve::run_worker(). A stop signal on rank 0
// drains as above, then broadcasts stop so every rank exits 0.
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <pthread.h>
#include <thread>
#include <utility>

#include "core/config.h"
#include "core/config_types.h"
#include "core/decode/decode_config.h"
#include "core/decode/planner.h"
#include "core/decode/tree_scorer.h"
#include "core/dist/communicator.h"
#include "core/errors.h"
#include "core/io/checkpoint.h"
#include "core/model/llama.h"
#include "core/vocab/constraint.h"
#include "data/data_config.h"
#include "data/dataset.h"
#include "data/evaluation.h"
#include "data/samples.h"
#include "launch/commands.h"
#include "launch/model_loading.h"
#include "serve/decoder.h"
#include "serve/engine.h"
#include "serve/http_server.h"
#include "serve/metrics.h"
#include "serve/serve_config.h"
#include "serve/server.h"
#include "serve/worker.h"

namespace atspeed::launch {
namespace {

struct ServeOptions {
  std::vector<std::string> overrides;
};

// What one rank holds of a model: elements of the tp-split weights and of the replicated ones.
struct ShardSize {
  int64_t split = 0;
  int64_t replicated = 0;
};

ShardSize shard_size(model::LlamaModelImpl& m) {
  ShardSize s;
  for (const auto& p : m.named_parameters()) {
    (model::tp_split_of(p.key()) == model::TpSplit::None ? s.replicated : s.split) += p.value().numel();
  }
  return s;
}

void run_serve(const ServeOptions& o) {
  const sigset_t stop_signals = serve::block_stop_signals();
  const Config config = load_config(o.overrides);
  auto data = read_section<DataConfig>(config, "data");
  const auto dec = read_section<DecodeConfig>(config, "decode");
  const auto sc = read_section<ServeConfig>(config, "serve");
  const auto dist = read_section<DistConfig>(config, "dist");
  serve::ServingTopology topo = serve::ServingTopology::make(dist.tp, dist.backend, dec.device);
  const int rank = topo.rank, tp = topo.tp;
  const c10::Device device = topo.device;
  ATSPEED_ENSURE(Config, data.constraint == "trie", "data.constraint = ", data.constraint,
                 ": a server returns items, so it decodes with the trie (SPEC §9.1); set data.constraint=trie");

  const CheckpointReader target_reader(sc.target);
  std::unique_ptr<CheckpointReader> draft_reader;
  if (!sc.draft.empty()) draft_reader = std::make_unique<CheckpointReader>(sc.draft);
  apply_prompt_settings(target_reader, data);  // before the dataset: the layout and tokenizer decide its vocabulary
  const Dataset ds = load_dataset(data);
  if (draft_reader) {
    // Both models read the same prompt; a draft trained on another layout would silently disagree.
    DataConfig draft_data = data;
    apply_prompt_settings(*draft_reader, draft_data);
    ATSPEED_ENSURE(Checkpoint, draft_data.layout() == data.layout() && draft_data.history_len == data.history_len,
                   sc.draft, ": prompt layout (data.prompt_format = ", draft_data.prompt_format, ", data.sep_token = ",
                   draft_data.sep_token, ", data.history_len = ", draft_data.history_len, ") differs from the target's (",
                   data.prompt_format, ", ", data.sep_token, ", ", data.history_len, ")");
  }
  // The draft is sharded like the target rather than replicated, although it is small: every rank
  // must grow the very same trees or the target's all-reduces stop lining up (a hang, not an
  // error). A sharded draft's logits come out of an all-reduce, identical on every rank; a
  // replicated draft would rely on independent forwards being bitwise equal across ranks, which
  // holds for one CPU build and thread count but not in general across GPUs (cuBLAS algorithm
  // choice). The cost is two small all-reduces per draft layer and step.
  auto load = [&](const CheckpointReader& reader, const std::string& role) {
    model::LlamaModel m = tp > 1 ? load_model_shard_for(reader, ds, device, role, rank, tp, dec.dtype)
                                 : load_model_for(reader, ds, device, role, dec.dtype);
    if (tp > 1) m->set_tensor_parallel(topo.tp_group.get());
    const ShardSize size = shard_size(*m);
    // Tests parse this line (per rank: what it holds and read; the pid to signal rank 0 alone).
    spdlog::info("tp rank {}/{} pid {}: {} split_elements={} replicated_elements={} bytes_read={}", rank, tp, getpid(),
                 role, size.split, size.replicated, reader.bytes_read());
    return m;
  };
  model::LlamaModel target = load(target_reader, "target");
  auto target_scorer = std::make_unique<decode::LlamaTreeScorer>(target);
  std::unique_ptr<decode::TreeScorer> draft_scorer;
  if (draft_reader) {
    model::LlamaModel draft = load(*draft_reader, "draft");
    if (rank == 0) warn_if_draft_larger(*target, *draft, sc.target, sc.draft);
    draft_scorer = std::make_unique<decode::LlamaTreeScorer>(draft);
  }
  std::shared_ptr<const Constraint> constraint = make_constraint(data.constraint, *ds.catalog);

  // Mode auto: the plan is made (or read from the cache) before serving, for batches of
  // serve.max_batch. Under tensor parallelism every rank runs the calibration's forwards in lockstep
  // (their all-reduces must line up) and only rank 0's plan is used: the batch keys it broadcasts
  // carry the choice. A cache could answer on one rank and not another, so tp > 1 always measures.
  // Without a draft, auto is target beam search (the only exact method).
  std::shared_ptr<const decode::Plan> plan;
  if (sc.default_mode.is_auto()) {
    auto p = std::make_shared<decode::Plan>();
    if (draft_scorer) {
      decode::AutoOptions ao = dec.auto_plan;
      if (tp > 1) ao.cache = false;
      const PromptFormat format(ds.catalog, data.layout());
      const EvalUsers calib = make_eval_users(ds, format, "valid", data.history_len, ao.calib_users, std::nullopt, dec.seed);
      const auto key = decode::PlanKey::of(sc.target, sc.draft, device.str(), dec.dtype, constraint->name(),
                                           at::get_num_threads(), sc.max_batch, static_cast<int64_t>(calib.size()),
                                           ao.planner);
      if (rank == 0) spdlog::info("auto: planning K = {} for batches of {} on {} validation users",
                                  fmt::join(ao.planner.ks, ","), sc.max_batch, calib.size());
      torch::NoGradGuard no_grad;
      *p = decode::load_or_make_plan(*target_scorer, *draft_scorer, *constraint, calib.prompts, ao, key,
                                     dec.run_settings(decode::DecodeMode::Strict, 0));
    }
    plan = p;
  }

  // Every rank builds the same decoder: the decode is a function of the broadcast batch alone (the
  // relaxed mode's randomness comes from the per-request seeds in it, drawn on rank 0).
  serve::ModelDecoder decoder(std::move(target_scorer), std::move(draft_scorer), constraint,
                              serve::SpeculativeSettings{dec.gamma, dec.temperature, dec.top_k});
  serve::RequestLimits limits;
  limits.max_history = sc.max_history;
  limits.history_len = data.history_len;
  limits.prompt = data.layout();
  limits.max_k = sc.max_k;
  limits.max_draft_width = sc.max_draft_width;
  limits.default_k = sc.default_k;
  limits.default_mode = sc.default_mode;
  limits.plan = plan;
  limits.default_draft_width = dec.draft_width;
  limits.has_draft = draft_reader != nullptr;
  serve::run_server(topo, decoder, sc, limits, *ds.catalog, stop_signals,
                    fmt::format("{} items ({}), target {}{}{}, device {}, dist.tp {}, max_batch {}, max_wait_ms {}, "
                                "default mode {}", ds.num_items(), ds.name, sc.target, draft_reader ? ", draft " : "",
                                sc.draft, device.str(), tp, sc.max_batch, sc.max_wait_ms, sc.default_mode.name()));
}

const RegisterCommand register_serve([](CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  auto* cmd = app.add_subcommand("serve", "HTTP recommendation server: POST /v1/recommend, GET /healthz, GET /metrics");
  cmd->add_option("overrides", o->overrides,
                  "serve.target=T.h5 serve.draft=D.h5 serve.port=8080 data=beauty ... (see the serve: section of configs/config.yaml)");
  cmd->callback([o]() { run_serve(*o); });
});

}  // namespace
}  // namespace atspeed::launch
