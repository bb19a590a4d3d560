// `atspeed bench forward`: the command-line face of the cost model (core/decode/cost_model.h). For
// model presets (configs/model/*.yaml) with random weights on the chosen device and dtype: the
// forward time of a tree of n new tokens over a cached prompt of --context tokens, for each n, as
// the median of --reps round-robin repetitions with its interquartile range (the same measurement
// the planner of mode auto uses), plus the parameter count and FLOPs per token. Prints a table (and
// the cost of each model against the first at n = 1) and writes JSON. --ops also counts the ATen
// operators one forward at the first --ns dispatches (each pays the per-op fixed cost on a CPU, a kernel
// launch on a GPU).
#include <ATen/record_function.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>
#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <tuple>

#include "core/config.h"
#include "core/config_types.h"
#include "core/decode/cost_model.h"
#include "core/decode/tree_scorer.h"
#include "core/device.h"
#include "core/errors.h"
#include "core/io/text_file.h"
#include "core/model/llama.h"
#include "core/model/model_io.h"
#include "core/vocab/vocabulary.h"
#include "launch/commands.h"

namespace fs = std::filesystem;

namespace atspeed::launch {
namespace {

struct BenchForwardOptions {
  std::vector<std::string> models{"target_deep", "target_small", "quickstart_target", "draft_small", "quickstart_draft"};
  std::vector<int64_t> ns{1, 5, 20, 40, 80, 120, 200, 400};
  int64_t context = 40;       // cached prompt tokens (a 20-item LC-Rec-style prompt is ~40-100)
  int64_t vocab = 0;          // 0 = the tokenizer-free vocabulary of 4 levels x 256 codes (1,029)
  int reps = 7;
  std::string device = "auto";
  std::string dtype = "";     // "" = each preset's model.dtype
  std::string json;
  bool ops = false;           // count the ATen operators of one forward at n = ns[0]
  std::vector<std::string> overrides;

  void validate() const {
    ATSPEED_ENSURE(Usage, !models.empty(), "--models: at least one model preset");
    ATSPEED_ENSURE(Usage, !ns.empty(), "--ns: at least one token count");
    std::set<int64_t> seen;
    for (int64_t n : ns) {
      ATSPEED_ENSURE(Usage, n >= 1 && n <= 8192, "--ns: ", n, " is not a token count in [1, 8192]");
      ATSPEED_ENSURE(Usage, seen.insert(n).second, "--ns lists ", n, " twice");
    }
    ATSPEED_ENSURE(Usage, std::set<std::string>(models.begin(), models.end()).size() == models.size(),
                   "--models lists a preset twice");
    ATSPEED_ENSURE(Usage, context >= 1 && context <= 8192, "--context must be in [1, 8192]");
    ATSPEED_ENSURE(Usage, vocab >= 0, "--vocab must be >= 0 (0 = 1,029)");
    ATSPEED_ENSURE(Usage, reps >= 1 && reps <= 1000, "--reps must be in [1, 1000]");
    ATSPEED_ENSURE(Usage, dtype.empty() || dtype == "float32" || dtype == "bfloat16", "--dtype must be float32 or bfloat16");
  }
};

// Top-level ATen operators (those not called from inside another operator) of the calls between
// start() and stop() on this thread, by name. Plain function pointers, as RecordFunction requires.
class OpCounter {
 public:
  OpCounter() {
    counts().clear();
    depth() = 0;
    handle_ = at::addThreadLocalCallback(
        at::RecordFunctionCallback(&OpCounter::enter, &OpCounter::leave).scopes({at::RecordScope::FUNCTION}));
  }
  ~OpCounter() { at::removeCallback(handle_); }
  OpCounter(const OpCounter&) = delete;
  OpCounter& operator=(const OpCounter&) = delete;
  struct Tally {
    int64_t count = 0;
    double seconds = 0;  // wall clock inside the operator, its callees included
  };
  static std::map<std::string, Tally>& counts() {
    thread_local std::map<std::string, Tally> c;
    return c;
  }

 private:
  static int& depth() {
    thread_local int d = 0;
    return d;
  }
  static std::chrono::steady_clock::time_point& started() {
    thread_local std::chrono::steady_clock::time_point t;
    return t;
  }
  static std::unique_ptr<at::ObserverContext> enter(const at::RecordFunction&) {
    if (depth()++ == 0) started() = std::chrono::steady_clock::now();
    return nullptr;
  }
  static void leave(const at::RecordFunction& fn, at::ObserverContext*) {
    if (--depth() == 0) {
      Tally& t = counts()[fn.name()];
      ++t.count;
      t.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - started()).count();
    }
  }
  at::CallbackHandle handle_;
};

// The ATen operators one extend() of n new tokens (children of the prompt's last, as measure_cost) dispatches, by time.
int64_t count_forward_ops(decode::TreeScorer& scorer, const std::vector<int64_t>& prompt, int64_t n) {
  scorer.prefill({prompt});
  const int64_t root = static_cast<int64_t>(prompt.size()) - 1;
  const at::Tensor tokens = at::full({1, n}, prompt.back(), at::kLong), parents = at::full({1, n}, root, at::kLong);
  scorer.extend(tokens, parents);  // warm-up: fused weights and rotary tables are built once
  scorer.truncate(static_cast<int64_t>(prompt.size()));
  std::vector<std::tuple<double, std::string, int64_t>> by_time;
  double forward_s = 0;
  {
    OpCounter counter;
    const auto t0 = std::chrono::steady_clock::now();
    scorer.extend(tokens, parents);
    forward_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (const auto& [name, t] : OpCounter::counts()) by_time.emplace_back(t.seconds, name, t.count);
  }
  std::sort(by_time.rbegin(), by_time.rend());
  int64_t total = 0;
  double inside = 0;
  std::string listing;
  for (const auto& [seconds, name, count] : by_time) {
    total += count;
    inside += seconds;
    listing += fmt::format("  {} x{} {:.1f} us", name, count, seconds * 1e6);
  }
  // One observed forward (the callbacks add their own cost): where its time goes, by operator.
  std::cout << fmt::format("ATen operators in one forward at n = {}: {}, {:.1f} of {:.1f} us inside them:{}\n", n, total,
                           inside * 1e6, forward_s * 1e6, listing);
  return total;
}

void run_bench_forward(BenchForwardOptions o) {
  o.validate();
  const Config config = load_config(o.overrides);
  const auto run = read_section<RunConfig>(config, "run");
  const at::Device device = resolve_device(o.device, "bench forward --device");
  const int64_t vocab = o.vocab > 0 ? o.vocab : Vocabulary(4, 256).size();
  const std::string config_dir = find_config_dir("");
  nlohmann::json out = {{"benchmark", "forward"}, {"device", device.str()}, {"threads", at::get_num_threads()},
                        {"context", o.context}, {"vocab", vocab}, {"reps", o.reps}, {"models", nlohmann::json::array()}};
  std::cout << fmt::format("bench forward: device {}, {} threads, context {} tokens, vocabulary {}, median [IQR] of {}\n",
                           device.str(), at::get_num_threads(), o.context, vocab, o.reps);
  torch::NoGradGuard no_grad;
  std::vector<int64_t> prompt(static_cast<size_t>(o.context));
  for (int64_t i = 0; i < o.context; ++i) prompt[static_cast<size_t>(i)] = 5 + (i * 7919) % (vocab - 5);
  decode::CostOptions co;
  co.ns = o.ns;
  co.reps = o.reps;
  std::vector<std::pair<std::string, decode::CostCurve>> curves;
  for (const auto& name : o.models) {
    // The preset as the config system composes it, so a preset's errors name its file.
    const Config c = Config::compose(config_dir, "config", {"model=" + name});
    ModelConfig mc = read_section<ModelConfig>(c, "model");
    mc.vocab_size = vocab;
    if (!o.dtype.empty()) mc.dtype = o.dtype;
    torch::manual_seed(static_cast<uint64_t>(run.seed));
    const model::LlamaOptions opts = model::LlamaOptions::from_config(mc);
    model::LlamaModel m(opts);
    m->to(device, opts.param_dtype);
    m->eval();
    decode::LlamaTreeScorer scorer(m);
    const decode::CostCurve curve = decode::measure_cost(scorer, prompt, co);
    const int64_t params = model::parameter_count(opts);
    std::cout << fmt::format("\n{} ({:.2f} M parameters, {} layers, hidden {}, {}, {:.1f} MFLOP per token at context {}): "
                             "prefill {:.3f} ms\n",
                             name, static_cast<double>(params) / 1e6, mc.num_hidden_layers, mc.hidden_size, mc.dtype,
                             model::flops_per_token(opts, o.context) / 1e6, o.context, curve.prefill_s * 1e3);
    const int64_t ops = o.ops ? count_forward_ops(scorer, prompt, o.ns.front()) : 0;
    std::cout << fmt::format("{:>6} {:>12} {:>24}\n", "n", "median ms", "IQR ms");
    nlohmann::json points = nlohmann::json::array();
    for (const auto& p : curve.points) {
      std::cout << fmt::format("{:>6} {:>12.3f} {:>24}\n", p.n, p.median_s * 1e3,
                               fmt::format("{:.3f}-{:.3f}", p.q1_s * 1e3, p.q3_s * 1e3));
    }
    out["models"].push_back({{"model", name}, {"parameters", params}, {"layers", mc.num_hidden_layers},
                             {"hidden", mc.hidden_size}, {"dtype", mc.dtype},
                             {"flops_per_token", model::flops_per_token(opts, o.context)}, {"cost", decode::to_json(curve)}});
    if (o.ops) out["models"].back()["aten_ops_per_forward"] = ops;
    curves.emplace_back(name, curve);
  }
  if (curves.size() > 1) {
    std::cout << fmt::format("\nforward cost at n = 1 against {} (the first model):\n", curves[0].first);
    for (const auto& [name, curve] : curves) {
      std::cout << fmt::format("  {:<20} {:.3f}\n", name, curve.points[0].median_s / curves[0].second.points[0].median_s);
    }
  }
  const std::string path = o.json.empty() ? (fs::path(run.out_dir) / "bench_forward.json").string() : o.json;
  write_text_file_atomic(path, out.dump(2) + "\n");
  std::cout << "wrote " << path << "\n";
}

const RegisterCommand register_bench_forward([](CLI::App& app) {
  auto* bench = find_or_add_subcommand(app, "bench", "benchmarks: print a table and write JSON");
  auto o = std::make_shared<BenchForwardOptions>();
  auto* cmd = bench->add_subcommand("forward", "forward time against new tokens for model presets (random weights)");
  cmd->add_option("--models", o->models, "model presets (configs/model/*.yaml)")->capture_default_str();
  cmd->add_option("--ns", o->ns, "new-token counts n of the timed tree forward")->capture_default_str();
  cmd->add_option("--context", o->context, "cached prompt tokens")->capture_default_str();
  cmd->add_option("--vocab", o->vocab, "vocabulary size (0 = 1,029; 33,024 = LLaMA + LC-Rec codes)")->capture_default_str();
  cmd->add_option("--reps", o->reps, "timed repetitions per point")->capture_default_str();
  cmd->add_option("--device", o->device, "cpu, cuda, cuda:N or auto")->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "float32 or bfloat16 (default: each preset's)");
  cmd->add_option("--json", o->json, "JSON output (default <run.out_dir>/bench_forward.json)");
  cmd->add_flag("--ops", o->ops, "also count and time the ATen operators of one forward at the first of --ns");
  cmd->add_option("overrides", o->overrides, "config overrides (run.threads=2 run.seed=1 ...)");
  cmd->callback([o]() { run_bench_forward(*o); });
});

}  // namespace
}  // namespace atspeed::launch
