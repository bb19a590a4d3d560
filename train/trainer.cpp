#include "train/trainer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/config_types.h"
#include "core/errors.h"
#include "core/io/checkpoint.h"
#include "core/model/llama.h"
#include "core/model/model_io.h"
#include "core/vocab/tokenizer.h"
#include "core/progress.h"
#include "data/batch.h"
#include "data/data_config.h"
#include "data/sampler.h"
#include "data/samples.h"
#include "train/optim.h"
#include "train/train_config.h"

namespace fs = std::filesystem;

namespace atspeed::train {

namespace {

volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The resolved config with model.vocab_size filled in, as stored in checkpoints.
std::string resolved_config_yaml(const Config& config, int64_t vocab_size) {
  YAML::Node root = YAML::Load(config.to_yaml());
  root["model"]["vocab_size"] = vocab_size;
  YAML::Emitter out;
  out << root;
  return std::string(out.c_str()) + "\n";
}

// Sum of response-token CE of one batch (float32 math) and its token count.
std::pair<at::Tensor, int64_t> token_ce_sum(model::LlamaModelImpl& m, const Batch& b, const at::Device& device) {
  const int64_t B = b.tokens.size(0), T = b.tokens.size(1);
  at::Tensor tokens = b.tokens.to(device), positions = b.positions.to(device), targets = b.targets.to(device);
  // Rows are right-padded, so the plain causal mask is exact for every real token; the pads'
  // outputs carry no target.
  at::Tensor mask = model::causal_mask(B, T, 0, m.options().param_dtype, device);
  at::Tensor logits = m.forward(tokens, positions, mask);
  at::Tensor ce = torch::nn::functional::cross_entropy(
      logits.reshape({-1, logits.size(-1)}).to(at::kFloat), targets.reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(kIgnoreIndex).reduction(torch::kSum));
  return {ce, (b.targets != kIgnoreIndex).sum().item<int64_t>()};
}

}  // namespace

TrainObjective token_ce_objective(const PromptFormat& format) {
  TrainObjective o;
  o.name = "ce";
  o.loss = [&format](model::LlamaModelImpl& m, const MicroBatch& b) {
    return token_ce_sum(m, collate_train(b.samples, format), b.device);
  };
  // Every target's response is the same number of tokens, all of them targets.
  o.units = [&format](const MicroBatch& b) {
    int64_t items = 0;
    for (const Sample* s : b.samples) items += static_cast<int64_t>(s->targets.size());
    return items * format.response_length();
  };
  return o;
}

namespace {

struct Position {
  int64_t epoch = 0, step_in_epoch = 0, global_step = 0;
};

}  // namespace

void install_stop_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // a signal during a checkpoint write must not fail its syscalls
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
}
int pending_stop_signal() { return g_stop_signal; }
void request_stop(int signal) { g_stop_signal = signal; }
void clear_stop_request() { g_stop_signal = 0; }

// The early-stopping metric behind best.h5 (train.metric; valid_loss is the one there is).
// compute() is collective (every rank calls it, every rank gets the same value).
struct ValidationMetric {
  std::string name = "valid_loss";
  bool higher_is_better = false;
  std::function<double()> compute;
};

struct Trainer::Impl {
  const Config& config;
  const Dataset& ds;
  Communicator& comm;
  std::string kind;
  RunConfig run_cfg;
  ModelConfig model_config;
  DataConfig data;
  TrainConfig train;
  std::string config_yaml;
  std::string out_dir, ckpt_dir, last_path, best_path, metrics_path;
  at::Device device = at::kCPU;

  model::LlamaModel model{nullptr};
  std::unique_ptr<torch::optim::AdamW> optimizer;
  std::vector<at::Tensor> params;
  std::unique_ptr<PromptFormat> format;
  std::vector<Sample> train_samples, valid_samples;
  int64_t accum = 1, spe = 0, total = 0;
  ValidationMetric metric;
  TrainObjective objective;  // token_ce_objective(*format) unless set_objective() replaced it
  bool resumed = false;

  Position pos;
  double best_metric = 0;
  int64_t bad_evals = 0, evals = 0;
  std::unique_ptr<std::ofstream> metrics;

  Impl(const Config& c, const Dataset& d, Communicator& cm, std::string k, std::optional<TrainSamples> samples)
      : config(c), ds(d), comm(cm), kind(std::move(k)) {
    run_cfg = read_section<RunConfig>(config, "run");
    model_config = read_section<ModelConfig>(config, "model");
    data = read_section<DataConfig>(config, "data");
    train = read_section<TrainConfig>(config, "train");
    const auto dist = read_section<DistConfig>(config, "dist");
    config_ensure(dist.tp == 1, "dist.tp", "training is data-parallel only (tp must be 1)");
    const int64_t V = ds.catalog->vocab().size();
    ATSPEED_ENSURE(Config, model_config.vocab_size == 0 || model_config.vocab_size == V,
                   "model.vocab_size: ", model_config.vocab_size, " does not match the dataset vocabulary (", V,
                   "); use 0 to take it from the data");
    model_config.vocab_size = V;
    config_yaml = resolved_config_yaml(config, V);

    const int64_t dp = comm.size();
    ATSPEED_ENSURE(Config, train.global_batch % (train.micro_batch * dp) == 0, "train.global_batch: ",
                   train.global_batch, " is not a multiple of train.micro_batch (", train.micro_batch, ") x ", dp,
                   " data-parallel ranks");
    accum = train.global_batch / (train.micro_batch * dp);

    if (train.device == "cuda") {
      ATSPEED_ENSURE(Device, torch::cuda::is_available(), "train.device=cuda but no CUDA device is available");
      device = at::Device(at::kCUDA, static_cast<at::DeviceIndex>(local_cuda_device(static_cast<int>(torch::cuda::device_count()))));
    }

    format = std::make_unique<PromptFormat>(ds.catalog, data.layout());
    const TrainSamples mode = samples.value_or(parse_train_samples(data.train_samples));
    config_ensure(mode != TrainSamples::OnePass || data.layout().is_stream(), "data.train_samples",
                  "one_pass needs data.prompt_format=stream (in resp and lcrec, text or RESP sits between a history "
                  "and its response, so each prefix needs its own row)");
    objective = token_ce_objective(*format);
    train_samples =
        make_train_samples(ds, mode, data.history_len);
    valid_samples = make_valid_samples(ds, data.history_len);
    if (train.max_valid_samples > 0 && static_cast<int64_t>(valid_samples.size()) > train.max_valid_samples)
      valid_samples.resize(static_cast<size_t>(train.max_valid_samples));
    const auto n = static_cast<int64_t>(train_samples.size());
    spe = n / train.global_batch;
    ATSPEED_ENSURE(Config, spe > 0, "train.global_batch: ", train.global_batch, " exceeds the ", n,
                   " training samples of ", ds.name);
    total = train.epochs * spe;
    if (train.max_steps > 0) total = std::min(total, train.max_steps);

    out_dir = run_cfg.out_dir;
    ckpt_dir = train.checkpoint_dir.empty() ? out_dir : train.checkpoint_dir;
    last_path = (fs::path(ckpt_dir) / "last.h5").string();
    best_path = (fs::path(ckpt_dir) / "best.h5").string();
    metrics_path = (fs::path(out_dir) / "metrics.jsonl").string();

    torch::manual_seed(static_cast<uint64_t>(run_cfg.seed));
    model = model::LlamaModel(model::LlamaOptions::from_config(model_config));
    model->to(device);
    for (auto& p : model->parameters()) params.push_back(p);
    optimizer = make_adamw(*model, {train.lr, train.weight_decay, train.beta1, train.beta2, train.eps});
    metric = ValidationMetric{"valid_loss", false, [this] { return validation_loss(); }};
    best_metric = std::numeric_limits<double>::infinity();
    if (train.resume) {
      restore();
      resumed = true;
    }
  }

  bool improves(double value) const {
    return metric.higher_is_better ? value > best_metric : value < best_metric;
  }

  void restore() {
    ATSPEED_ENSURE(Checkpoint, fs::exists(last_path), "train.resume=true but there is no checkpoint ", last_path,
                   " (nothing to resume; run without train.resume to start fresh)");
    std::optional<CheckpointReader> reader;
    try {
      reader.emplace(last_path, kind);
    } catch (const Error& e) {
      ATSPEED_THROW(Checkpoint, "cannot resume: ", e.message());
    }
    const auto& attrs = reader->attributes();
    ATSPEED_ENSURE(Checkpoint, attrs.fingerprint == ds.catalog->fingerprint(), last_path,
                   ": was trained on an item index with fingerprint ", attrs.fingerprint, ", the dataset ", ds.dir,
                   " has ", ds.catalog->fingerprint());
    auto need = [&](const char* key) {
      auto v = reader->int_attribute("trainer_state", key);
      ATSPEED_ENSURE(Checkpoint, v.has_value(), last_path, ": trainer_state has no attribute '", key,
                     "' (not a training checkpoint?)");
      return *v;
    };
    const int64_t n_saved = need("num_train_samples"), gb_saved = need("global_batch");
    ATSPEED_ENSURE(Checkpoint, n_saved == static_cast<int64_t>(train_samples.size()) && gb_saved == train.global_batch,
                   last_path, ": saved with ", n_saved, " training samples and global batch ", gb_saved, ", this run has ",
                   train_samples.size(), " and ", train.global_batch, "; resuming would not continue the same run");
    try {
      model::read_parameters(*reader, *model);
      read_optimizer_state(*reader, *optimizer, *model);
    } catch (const Error& e) {
      ATSPEED_THROW(Checkpoint, "cannot resume: ", e.message());
    }
    pos.epoch = need("epoch");
    pos.step_in_epoch = need("step_in_epoch");
    pos.global_step = need("global_step");
    bad_evals = need("bad_evals");
    evals = need("evals");
    best_metric = reader->double_attribute("trainer_state", "best_metric").value_or(best_metric);
    // CPU kernels split their reductions by thread count, so only the same count continues the run
    // bitwise; another count still resumes (a different machine may force it), with a warning.
    const auto saved_threads = reader->int_attribute("trainer_state", "threads");
    if (saved_threads && *saved_threads != at::get_num_threads())
      spdlog::warn("{} was written with {} intra-op threads, this run has {} (run.threads): the resumed losses will "
                   "differ slightly from an uninterrupted run's; set run.threads={} to continue it bitwise",
                   last_path, *saved_threads, at::get_num_threads(), *saved_threads);
    spdlog::info("resumed from {}: epoch {}, step {}/{} of the epoch, global step {}", last_path, pos.epoch + 1,
                 pos.step_in_epoch, spe, pos.global_step);
  }

  CheckpointAttributes attributes() const {
    CheckpointAttributes a;
    a.kind = kind;
    a.config_yaml = config_yaml;
    a.fingerprint = ds.catalog->fingerprint();
    return a;
  }

  void write_state(CheckpointWriter& w) const {
    const std::string g = "trainer_state";
    w.set_int_attribute(g, "epoch", pos.epoch);
    w.set_int_attribute(g, "step_in_epoch", pos.step_in_epoch);
    w.set_int_attribute(g, "global_step", pos.global_step);
    w.set_int_attribute(g, "total_steps", total);
    w.set_int_attribute(g, "steps_per_epoch", spe);
    w.set_int_attribute(g, "num_train_samples", static_cast<int64_t>(train_samples.size()));
    w.set_int_attribute(g, "global_batch", train.global_batch);
    w.set_int_attribute(g, "seed", run_cfg.seed);
    w.set_int_attribute(g, "threads", at::get_num_threads());
    w.set_int_attribute(g, "bad_evals", bad_evals);
    w.set_int_attribute(g, "evals", evals);
    w.set_double_attribute(g, "best_metric", best_metric);
    w.set_string_attribute(g, "metric", metric.name);
  }

  // A model on a text vocabulary carries its tokenizer, like a converted checkpoint.
  void write_tokenizer_if_text(CheckpointWriter& w) const {
    if (const TextTokenizer* tok = ds.catalog->vocab().tokenizer()) model::write_tokenizer(w, *tok);
  }

  // Rank 0 writes; the other ranks hold identical state.
  void save_last() {
    if (comm.rank() == 0) {
      CheckpointWriter w(last_path, attributes());
      model::write_parameters(w, *model);
      write_tokenizer_if_text(w);
      write_optimizer_state(w, *optimizer, *model);
      write_state(w);
      w.commit();
      spdlog::debug("wrote {} (global step {})", last_path, pos.global_step);
    }
  }
  void save_best() {
    if (comm.rank() == 0) {
      CheckpointWriter w(best_path, attributes());
      model::write_parameters(w, *model);
      write_tokenizer_if_text(w);
      write_state(w);
      w.commit();
    }
  }

  void open_metrics() {
    if (comm.rank() != 0) return;
    fs::create_directories(out_dir);
    std::vector<std::string> kept;
    if (train.resume && fs::exists(metrics_path)) {
      // Cut the log back to the checkpoint: the steps after it are recomputed.
      std::ifstream in(metrics_path);
      std::string line;
      while (std::getline(in, line)) {
        if (line.empty()) continue;
        try {
          const auto j = nlohmann::json::parse(line);
          if (j.value("step", int64_t{0}) <= pos.global_step) kept.push_back(line);
        } catch (const nlohmann::json::exception&) {
          // A line cut by a kill: dropped.
        }
      }
    }
    metrics = std::make_unique<std::ofstream>(metrics_path, std::ios::trunc);
    ATSPEED_ENSURE(Data, metrics->good(), "cannot write ", metrics_path);
    for (const auto& l : kept) *metrics << l << '\n';
    metrics->flush();
  }
  void log_metrics(const nlohmann::json& j) {
    if (!metrics) return;
    *metrics << j.dump() << '\n';
    metrics->flush();
  }

  double validation_loss() {
    torch::NoGradGuard no_grad;
    model->eval();
    const auto idx = shard_indices(static_cast<int64_t>(valid_samples.size()), 0, 0, false, comm.rank(), comm.size(),
                                   ShardTail::Uneven);
    double sum = 0;
    int64_t count = 0;
    for (size_t i = 0; i < idx.size(); i += static_cast<size_t>(train.eval_batch)) {
      const std::vector<int64_t> chunk(idx.begin() + static_cast<std::ptrdiff_t>(i),
                                       idx.begin() + static_cast<std::ptrdiff_t>(
                                                         std::min(idx.size(), i + static_cast<size_t>(train.eval_batch))));
      std::vector<const Sample*> rows;
      for (int64_t k : chunk) rows.push_back(&valid_samples[static_cast<size_t>(k)]);
      auto [loss, n] = objective.loss(*model, MicroBatch{"valid", chunk, rows, device});
      sum += loss.item<double>();
      count += n;
    }
    model->train();
    at::Tensor t = at::tensor({sum, static_cast<double>(count)}, at::kDouble);
    comm_all_reduce(t);
    return t[1].item<double>() > 0 ? t[0].item<double>() / t[1].item<double>() : 0.0;
  }

  // Small host-side reductions go through the communicator on its device.
  void comm_all_reduce(at::Tensor& t) {
    if (comm.size() == 1) return;
    if (comm.backend() == "nccl") {
      at::Tensor d = t.to(device);
      comm.all_reduce(d, ReduceOp::Sum);
      t = d.cpu();
    } else {
      comm.all_reduce(t, ReduceOp::Sum);
    }
  }

  // Evaluates, updates best/bad_evals, writes best.h5 on improvement; true when patience ran out.
  bool evaluate() {
    const double value = metric.compute();
    ++evals;
    const bool better = improves(value);
    if (better) {
      best_metric = value;
      bad_evals = 0;
      save_best();
    } else {
      ++bad_evals;
    }
    log_metrics({{"step", pos.global_step}, {"epoch", pos.epoch + 1}, {metric.name, value}, {"best", best_metric},
                 {"bad_evals", bad_evals}});
    spdlog::info("eval at step {}: {} {:.5f}{} (best {:.5f})", pos.global_step, metric.name, value,
                 better ? " *" : "", best_metric);
    return train.patience > 0 && bad_evals >= train.patience;
  }

  bool stop_requested() {
    at::Tensor flag = at::tensor({static_cast<double>(g_stop_signal)}, at::kDouble);
    comm_all_reduce(flag);  // any rank's signal stops every rank at the same step
    return flag.item<double>() > 0;
  }

  StepRecord step(const std::vector<int64_t>& order) {
    const auto t0 = Clock::now();
    const int64_t M = train.micro_batch;
    const int64_t base = pos.step_in_epoch * M * accum;
    // The step's samples, grouped into micro-batches by row length: the gradient is a sum over
    // the step's set, so the grouping changes nothing but the padding (rows are padded to the
    // longest in their micro-batch; unsorted, about 2/3 of a micro-batch would be padding).
    std::vector<int64_t> step_rows;
    for (int64_t k = 0; k < M * accum; ++k) step_rows.push_back(order[static_cast<size_t>(base + k)]);
    std::stable_sort(step_rows.begin(), step_rows.end(), [this](int64_t a, int64_t b) {
      return format->row_length(train_samples[static_cast<size_t>(a)]) <
             format->row_length(train_samples[static_cast<size_t>(b)]);
    });
    std::vector<std::vector<int64_t>> micro;
    std::vector<std::vector<const Sample*>> micro_rows;
    int64_t local_targets = 0, local_tokens = 0, local_items = 0;
    const std::string split = "train";
    for (int64_t a = 0; a < accum; ++a) {
      micro.emplace_back(step_rows.begin() + a * M, step_rows.begin() + (a + 1) * M);
      micro_rows.emplace_back();
      for (int64_t i : micro.back()) {
        const Sample& s = train_samples[static_cast<size_t>(i)];
        micro_rows.back().push_back(&s);
        local_tokens += format->row_length(s);
        local_items += static_cast<int64_t>(s.targets.size());
      }
      local_targets += objective.units(MicroBatch{split, micro.back(), micro_rows.back(), device});
    }
    at::Tensor counts = at::tensor(
        {static_cast<double>(local_targets), static_cast<double>(local_tokens), static_cast<double>(local_items)},
        at::kDouble);
    comm_all_reduce(counts);
    const double global_targets = std::max(1.0, counts[0].item<double>());
    const double lr = train.lr * warmup_cosine_factor(pos.global_step, train.warmup_steps, total);
    set_learning_rate(*optimizer, lr);
    optimizer->zero_grad();
    double loss_sum = 0;
    for (int64_t a = 0; a < accum; ++a) {
      const auto i = static_cast<size_t>(a);
      at::Tensor sum = objective.loss(*model, MicroBatch{split, micro[i], micro_rows[i], device}).first;
      (sum / global_targets).backward();
      loss_sum += sum.item<double>();
    }
    all_reduce_gradients(params, comm, ReduceOp::Sum, train.bucket_mb << 20);
    at::Tensor loss_t = at::tensor({loss_sum}, at::kDouble);
    comm_all_reduce(loss_t);
    const double grad_norm = clip_grad_norm(params, train.grad_clip);
    optimizer->step();
    ++pos.global_step;
    ++pos.step_in_epoch;
    StepRecord r;
    r.step = pos.global_step;
    r.epoch = pos.epoch + 1;
    r.loss = loss_t.item<double>() / global_targets;
    r.lr = lr;
    r.grad_norm = grad_norm;
    r.tokens = static_cast<int64_t>(counts[1].item<double>());
    r.items = static_cast<int64_t>(counts[2].item<double>());
    r.seconds = seconds_since(t0);
    r.tokens_per_s = static_cast<double>(r.tokens) / std::max(1e-9, r.seconds);
    return r;
  }

  TrainResult run() {
    TrainResult result;
    fs::create_directories(ckpt_dir);
    if (comm.rank() == 0) {
      fs::create_directories(out_dir);
      config.save_to_dir(out_dir);
      if (!train.resume && fs::exists(last_path))
        spdlog::warn("{} exists and train.resume is false: starting fresh, it will be overwritten", last_path);
    }
    open_metrics();
    spdlog::info("{} training: {} samples, {} steps/epoch x {} epochs ({} steps{}), global batch {} = {} micro x {} "
                 "accum x {} ranks, lr {:g}, {} params, out {}",
                 kind, train_samples.size(), spe, train.epochs, total, train.max_steps > 0 ? ", max_steps" : "",
                 train.global_batch, train.micro_batch, accum, comm.size(), train.lr,
                 model::parameter_count(model->options()), out_dir);
    std::unique_ptr<ProgressBar> bar;
    if (comm.rank() == 0) bar = std::make_unique<ProgressBar>("train", total, stderr, ProgressOptions{}, pos.global_step);
    model->train();
    const auto start = Clock::now();
    int64_t run_tokens = 0;
    bool stop = pos.global_step >= total;
    bool early = false;
    while (!stop && pos.epoch < train.epochs) {
      const auto order = shard_indices(static_cast<int64_t>(train_samples.size()), static_cast<uint64_t>(run_cfg.seed),
                                       pos.epoch, true, comm.rank(), comm.size(), ShardTail::Drop);
      while (pos.step_in_epoch < spe) {
        if (stop_requested()) {
          result.stop_signal = g_stop_signal != 0 ? static_cast<int>(g_stop_signal) : SIGTERM;
          if (bar) bar->message("stop requested: writing " + last_path);
          save_last();
          stop = true;
          break;
        }
        const StepRecord r = step(order);
        run_tokens += r.tokens;
        result.steps.push_back(r);
        log_metrics({{"step", r.step}, {"epoch", r.epoch}, {"loss", r.loss}, {"lr", r.lr}, {"grad_norm", r.grad_norm},
                     {"tokens_per_s", r.tokens_per_s}, {"tokens", r.tokens}, {"items", r.items}});
        if (bar) {
          const std::string extra =
              fmt::format("epoch {}/{}  loss {:.4f}  lr {:.2e}  {} tok/s  {} items/s", r.epoch, train.epochs, r.loss,
                          r.lr, ProgressBar::format_rate(r.tokens_per_s),
                          ProgressBar::format_rate(static_cast<double>(r.items) / std::max(1e-9, r.seconds)));
          if (bar->is_tty())
            bar->update(r.step, extra);
          else
            bar->update(r.step, extra, r.step % train.log_every == 0 || r.step == total);
        }
        const bool epoch_end = pos.step_in_epoch == spe;
        const bool last_step = pos.global_step >= total;
        if (train.eval_every > 0 && pos.global_step % train.eval_every == 0 && !epoch_end) early = evaluate();
        if (epoch_end) break;
        if (last_step || early) {
          // A run cut by max_steps still gets its final evaluation (and best.h5).
          if (last_step && !early && (train.eval_every == 0 || pos.global_step % train.eval_every != 0)) evaluate();
          save_last();
          stop = true;
          break;
        }
        if (train.checkpoint_every > 0 && pos.global_step % train.checkpoint_every == 0) save_last();
      }
      if (stop) break;
      // Epoch end.
      if (train.eval_every == 0 || pos.global_step % train.eval_every == 0) early = evaluate();
      ++pos.epoch;
      pos.step_in_epoch = 0;
      save_last();
      if (early || pos.global_step >= total) break;
    }
    if (bar) bar->finish();
    result.global_step = pos.global_step;
    result.epoch = pos.epoch;
    result.early_stopped = early;
    result.completed = result.stop_signal == 0;
    result.best_metric = best_metric;
    result.last_checkpoint = last_path;
    result.best_checkpoint = evals > 0 ? best_path : "";
    const double secs = seconds_since(start);
    result.tokens_per_s = secs > 0 ? static_cast<double>(run_tokens) / secs : 0.0;
    return result;
  }
};

Trainer::Trainer(const Config& config, const Dataset& dataset, Communicator& comm, std::string kind,
                 std::optional<TrainSamples> samples)
    : impl_(std::make_unique<Impl>(config, dataset, comm, std::move(kind), samples)) {}
void Trainer::set_objective(TrainObjective objective) {
  ATSPEED_CHECK(objective.loss && objective.units, "Trainer::set_objective: loss and units are required");
  impl_->objective = std::move(objective);
}
const std::vector<Sample>& Trainer::samples(const std::string& split) const {
  ATSPEED_CHECK(split == "train" || split == "valid", "Trainer::samples: unknown split ", split);
  return split == "train" ? impl_->train_samples : impl_->valid_samples;
}
bool Trainer::resumed() const { return impl_->resumed; }
c10::Device Trainer::device() const { return impl_->device; }
Trainer::~Trainer() = default;
double Trainer::validation_loss() { return impl_->validation_loss(); }
TrainResult Trainer::run() { return impl_->run(); }
model::LlamaModelImpl& Trainer::model() { return *impl_->model; }
int64_t Trainer::steps_per_epoch() const { return impl_->spe; }
int64_t Trainer::total_steps() const { return impl_->total; }
int64_t Trainer::grad_accum() const { return impl_->accum; }

}  // namespace atspeed::train
