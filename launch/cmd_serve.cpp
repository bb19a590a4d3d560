// `atspeed serve serve.target=T.h5 serve.draft=D.h5 [overrides]`: the HTTP recommendation server
// (serve/). This file only wires it: config, dataset (its catalogue maps the API's item ids and must
// match the checkpoints' fingerprint), models, decoder, engine, HTTP server, and signals: SIGTERM or
// SIGINT stops accepting, answers every in-flight request, and exits 0.
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <atomic>
#include <csignal>
#include <iostream>
#include <memory>
#include <pthread.h>
#include <thread>

#include "core/config.h"
#include "core/config_types.h"
#include "core/decode/decode_config.h"
#include "core/decode/tree_scorer.h"
#include "core/errors.h"
#include "core/io/checkpoint.h"
#include "core/vocab/constraint.h"
#include "data/data_config.h"
#include "data/dataset.h"
#include "launch/commands.h"
#include "launch/model_loading.h"
#include "serve/decoder.h"
#include "serve/engine.h"
#include "serve/http_server.h"
#include "serve/metrics.h"
#include "serve/serve_config.h"

namespace atspeed::launch {
namespace {

struct ServeOptions {
  std::vector<std::string> overrides;
};

void run_serve(const ServeOptions& o) {
  // Block the stop signals in this thread before any other thread exists (libtorch's pools, the
  // engine, httplib's workers inherit the mask), so only the sigwait() below ever sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  const Config config = load_config(o.overrides);
  auto data = read_section<DataConfig>(config, "data");
  const auto dec = read_section<DecodeConfig>(config, "decode");
  const auto sc = read_section<ServeConfig>(config, "serve");
  const auto dist = read_section<DistConfig>(config, "dist");
  // Tensor-parallel serving: rank 0 would run everything below with a serve::BroadcastDecoder and
  // ranks > 0 serve::run_worker() on their shards (serve/worker.h); the sharded model is not here yet.
  ATSPEED_ENSURE(Config, dist.tp == 1, "dist.tp = ", dist.tp, ": tensor-parallel serving is not available yet (serve with dist.tp=1)");
  ATSPEED_ENSURE(Config, data.constraint == "trie", "data.constraint = ", data.constraint,
                 ": a server returns items, so it decodes with the trie (SPEC §9.1); set data.constraint=trie");

  const CheckpointReader target_reader(sc.target);
  std::unique_ptr<CheckpointReader> draft_reader;
  if (!sc.draft.empty()) draft_reader = std::make_unique<CheckpointReader>(sc.draft);
  const Dataset ds = load_dataset(data);
  apply_prompt_settings(target_reader, data);
  if (draft_reader) {
    // Both models read the same prompt; a draft trained on another layout would silently disagree.
    DataConfig draft_data = data;
    apply_prompt_settings(*draft_reader, draft_data);
    ATSPEED_ENSURE(Checkpoint, draft_data.sep_token == data.sep_token && draft_data.history_len == data.history_len,
                   sc.draft, ": prompt layout (data.sep_token = ", draft_data.sep_token, ", data.history_len = ",
                   draft_data.history_len, ") differs from the target's (", data.sep_token, ", ", data.history_len, ")");
  }
  const c10::Device device = resolve_device(dec.device);
  model::LlamaModel target = load_model_for(target_reader, ds, device, "target");
  std::unique_ptr<decode::TreeScorer> draft_scorer;
  if (draft_reader) draft_scorer = std::make_unique<decode::LlamaTreeScorer>(load_model_for(*draft_reader, ds, device, "draft"));
  std::shared_ptr<const Constraint> constraint = make_constraint(data.constraint, *ds.catalog);

  serve::ModelDecoder decoder(std::make_unique<decode::LlamaTreeScorer>(target), std::move(draft_scorer), constraint,
                              serve::SpeculativeSettings{dec.gamma, dec.temperature, dec.top_k});
  serve::ServeMetrics metrics;
  serve::Engine engine(decoder, serve::EngineOptions{sc.max_batch, sc.max_wait_ms, sc.max_queue}, &metrics);
  serve::RequestLimits limits;
  limits.max_history = sc.max_history;
  limits.history_len = data.history_len;
  limits.sep_token = data.sep_token;
  limits.max_k = sc.max_k;
  limits.max_draft_width = sc.max_draft_width;
  limits.default_k = sc.default_k;
  limits.default_mode = sc.default_mode == "target" ? serve::Mode::Target
                        : sc.default_mode == "relaxed" ? serve::Mode::Relaxed : serve::Mode::Strict;
  limits.default_draft_width = dec.draft_width;
  limits.has_draft = draft_reader != nullptr;
  serve::HttpServer http(engine, *ds.catalog, limits,
                         serve::HttpOptions{sc.host, sc.port, sc.max_body_bytes, sc.request_timeout_ms, sc.http_threads},
                         metrics);
  const int port = http.bind();
  spdlog::info("{} items ({}), target {}{}{}, device {}, max_batch {}, max_wait_ms {}", ds.num_items(), ds.name,
               sc.target, draft_reader ? ", draft " : "", sc.draft, device.str(), sc.max_batch, sc.max_wait_ms);
  // Tests and scripts parse this line for the port (serve.port=0 picks a free one).
  std::cout << "serving on http://" << sc.host << ":" << port << std::endl;

  std::atomic<bool> signalled{false};
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    if (signalled.exchange(true)) return;  // the main thread's wake-up below, not a real signal
    spdlog::info("signal {}: no new connections, answering in-flight requests", sig);
    http.stop();
    // Queued requests are decoded at once (no waiting for batches to fill); their handlers answer
    // them, and only then does serve() return.
    engine.stop();
  });
  http.serve();  // returns after stop(), once the connection threads have finished their requests
  // serve() can also return on its own (a listen failure): wake the waiter so it can be joined.
  if (!signalled.exchange(true)) pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  engine.stop();
  spdlog::info("stopped");
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
