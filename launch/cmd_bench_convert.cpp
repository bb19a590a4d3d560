// `atspeed bench convert`: what converting a real-size checkpoint costs. Writes a random HF
// checkpoint of a model preset (target_llama7b by default: sharded 5 GB safetensors in bf16, as
// transformers saves it; atspeed writes it itself, tensor by tensor, so nothing is downloaded),
// then runs `atspeed convert` on it (HF -> HDF5) and back (`--to-hf`) as child processes and
// reports each one's wall time and peak resident memory (wait4's ru_maxrss), against the model's
// size and its largest tensor. Checks free disk space first. Prints a table and writes JSON.
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>

#include "core/config.h"
#include "core/config_types.h"
#include "core/errors.h"
#include "core/io/safetensors.h"
#include "core/io/text_file.h"
#include "core/model/hf_checkpoint.h"
#include "core/model/hf_import.h"
#include "core/model/model_io.h"
#include "core/vocab/tokenizer.h"
#include "launch/commands.h"

namespace fs = std::filesystem;

namespace atspeed::launch {
namespace {

struct BenchConvertOptions {
  std::string model = "target_llama7b";
  std::string dtype = "bfloat16";
  int64_t vocab = 0;  // 0 = the preset's vocab_size (LLaMA: 32,000), else e.g. 33,024 for LC-Rec codes
  std::string tokenizer;   // an HF tokenizer directory written beside the random weights (vocab = its size)
  std::string eval_data;   // a dataset directory: also run `atspeed eval` on the converted model
  int64_t eval_users = 3;
  int64_t eval_k = 5;
  std::string dir = "runs/bench-convert";
  std::string max_shard_size = "5GB";
  bool keep = false;
  std::string json;
  std::vector<std::string> overrides;
};

struct ChildRun {
  double seconds = 0;
  int64_t peak_rss_bytes = 0;
};

// Runs this binary with `args` and waits; Error when it fails.
ChildRun run_self(const std::vector<std::string>& args) {
  const std::string exe = fs::read_symlink("/proc/self/exe").string();
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(exe.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::string shown = "atspeed";
  for (const auto& a : args) shown += " " + a;
  std::cout << "$ " << shown << std::endl;
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  ATSPEED_ENSURE(Internal, pid >= 0, "fork failed");
  if (pid == 0) {
    ::execv(exe.c_str(), argv.data());
    ::_exit(127);
  }
  int status = 0;
  struct rusage ru {};
  ATSPEED_ENSURE(Internal, ::wait4(pid, &status, 0, &ru) == pid, "wait4 failed");
  ChildRun r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.peak_rss_bytes = static_cast<int64_t>(ru.ru_maxrss) * 1024;
  ATSPEED_ENSURE(Internal, WIFEXITED(status) && WEXITSTATUS(status) == 0, "'", shown, "' failed (status ", status, ")");
  return r;
}

int64_t free_bytes(const fs::path& dir) {
  struct statvfs s {};
  ATSPEED_ENSURE(Config, ::statvfs(dir.c_str(), &s) == 0, dir.string(), ": cannot stat the file system");
  return static_cast<int64_t>(s.f_bavail) * static_cast<int64_t>(s.f_frsize);
}

std::string gb(int64_t bytes) { return fmt::format("{:.2f} GB", static_cast<double>(bytes) / 1e9); }

// A random HF checkpoint of `mc` in dir, written tensor by tensor. Returns its bytes.
int64_t write_random_hf(const ModelConfig& mc, const fs::path& dir, int64_t max_shard) {
  fs::create_directories(dir);
  const at::ScalarType type = model::LlamaOptions::from_config(mc).param_dtype;
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, shape] : model::llama_parameter_shapes(mc)) shapes[name] = shape;
  int64_t total = 0;
  torch::NoGradGuard no_grad;
  const auto files = model::write_hf_weights(mc, dir.string(), max_shard, [&](const std::string& name) {
    const auto& shape = shapes.at(name);
    // Norm weights 1, the rest like HF's init: a model whose forward stays finite.
    at::Tensor t = shape.size() == 1 ? at::ones(shape, type) : (at::randn(shape) * 0.02).to(type);
    total += t.numel() * t.element_size();
    return t;
  });
  std::cout << "  wrote " << files.size() << " safetensors file(s) into " << dir.string() << std::endl;
  return total;
}

void run_bench_convert(const BenchConvertOptions& o) {
  const Config config = load_config(o.overrides);
  const auto run = read_section<RunConfig>(config, "run");
  const Config c = Config::compose(find_config_dir(""), "config", {"model=" + o.model});
  ModelConfig mc = read_section<ModelConfig>(c, "model");
  ATSPEED_ENSURE(Usage, o.dtype == "float32" || o.dtype == "bfloat16", "--dtype must be float32 or bfloat16");
  mc.dtype = o.dtype;
  if (o.vocab > 0) mc.vocab_size = o.vocab;
  std::optional<TokenizerFiles> tok;
  if (!o.tokenizer.empty()) {
    tok = TokenizerFiles::read_dir(o.tokenizer);
    mc.vocab_size = TextTokenizer(*tok).size();
  }
  ATSPEED_ENSURE(Usage, mc.vocab_size > 0, "--vocab: the preset ", o.model, " has no vocab_size; give one");
  const model::LlamaOptions lo = model::LlamaOptions::from_config(mc);
  const int64_t params = model::parameter_count(lo);
  const int64_t bytes = params * static_cast<int64_t>(at::elementSize(lo.param_dtype));
  const int64_t largest = model::largest_parameter_bytes(mc);
  const fs::path dir(o.dir);
  fs::create_directories(dir);
  // The HF input, the HDF5 output and the export, plus 10% slack.
  const int64_t need = bytes * 3 + bytes / 10, have = free_bytes(dir);
  ATSPEED_ENSURE(Config, have >= need, dir.string(), ": ", o.model, " in ", o.dtype, " needs about ", gb(need),
                 " free (input, HDF5 output and export), only ", gb(have),
                 " are free; pick a smaller --model (e.g. a 1B preset) or another --dir");
  std::cout << fmt::format("bench convert: {} ({:.2f} B parameters, {}, {} on disk, largest tensor {}), {} free in {}\n",
                           o.model, static_cast<double>(params) / 1e9, o.dtype, gb(bytes), gb(largest), gb(have), dir.string());
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t max_shard = model::parse_shard_size(o.max_shard_size);
  const int64_t written = write_random_hf(mc, dir / "hf", max_shard);
  if (tok) tok->write_dir((dir / "hf").string());  // convert embeds it (an LC-Rec-style text model)
  const double write_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string h5 = (dir / "model.h5").string();
  // What a process that loads libtorch and does nothing holds, for scale.
  const ChildRun idle = run_self({"--version"});
  const ChildRun import = run_self({"convert", "--from", (dir / "hf").string(), "--out", h5});
  const ChildRun exp = run_self({"convert", "--from", h5, "--to-hf", (dir / "export").string(), "--max-shard-size", o.max_shard_size});
  fs::remove_all(dir / "export");
  fs::remove_all(dir / "hf");
  std::optional<ChildRun> eval;
  if (!o.eval_data.empty())
    eval = run_self({"eval", "ckpt=" + h5, "data.dir=" + o.eval_data, "data.name=bench-convert",
                     "eval.max_users=" + std::to_string(o.eval_users), "eval.ks=[" + std::to_string(o.eval_k) + "]",
                     "eval.batch_size=1", "decode.dtype=" + o.dtype, "run.out_dir=" + (dir / "eval").string()});

  std::cout << fmt::format("\n{:<28} {:>10} {:>14} {:>22}\n", "step", "seconds", "peak RSS", "peak RSS / largest");
  std::cout << fmt::format("{:<28} {:>10.1f} {:>14} {:>22}\n", "write random HF (in-process)", write_s, "-", "-");
  for (const auto& [name, r] : {std::pair<const char*, ChildRun>{"atspeed --version (baseline)", idle},
                                {"convert HF -> HDF5", import}, {"convert HDF5 -> HF", exp}})
    std::cout << fmt::format("{:<28} {:>10.1f} {:>14} {:>22.2f}\n", name, r.seconds, gb(r.peak_rss_bytes),
                             static_cast<double>(r.peak_rss_bytes) / static_cast<double>(largest));
  // The decoding alone, as eval measured it (the process time above includes loading the model).
  double decode_s = 0;
  if (eval) {
    const auto j = nlohmann::json::parse(read_text_file((dir / "eval" / "eval.json").string()));
    for (const auto& p : j.at("per_k")) decode_s += p.at("seconds").get<double>();
    std::cout << fmt::format("{:<28} {:>10.1f} {:>14} {:>22.2f}   (load and start {:.1f} s; decoding {:.2f} s per user, "
                             "target beam search, K = {}, {} users)\n",
                             "eval (" + o.dtype + ")", eval->seconds, gb(eval->peak_rss_bytes),
                             static_cast<double>(eval->peak_rss_bytes) / static_cast<double>(largest),
                             eval->seconds - decode_s, decode_s / static_cast<double>(o.eval_users), o.eval_k,
                             o.eval_users);
  }
  nlohmann::json out = {{"benchmark", "convert"}, {"model", o.model}, {"dtype", o.dtype}, {"parameters", params},
                        {"model_bytes", written}, {"largest_tensor_bytes", largest}, {"write_random_hf_s", write_s},
                        {"baseline_peak_rss_bytes", idle.peak_rss_bytes},
                        {"import", {{"seconds", import.seconds}, {"peak_rss_bytes", import.peak_rss_bytes}}},
                        {"export", {{"seconds", exp.seconds}, {"peak_rss_bytes", exp.peak_rss_bytes}}}};
  if (eval)
    out["eval"] = {{"seconds", eval->seconds}, {"peak_rss_bytes", eval->peak_rss_bytes}, {"users", o.eval_users},
                   {"k", o.eval_k}, {"decode_seconds_per_user", decode_s / static_cast<double>(o.eval_users)},
                   {"eval_json", (dir / "eval" / "eval.json").string()}};
  if (!o.keep) fs::remove(h5);
  const std::string path = o.json.empty() ? (fs::path(run.out_dir) / "bench_convert.json").string() : o.json;
  write_text_file_atomic(path, out.dump(2) + "\n");
  std::cout << "wrote " << path << (o.keep ? "" : " (the checkpoints were removed; --keep keeps them)") << "\n";
}

const RegisterCommand register_bench_convert([](CLI::App& app) {
  auto* bench = find_or_add_subcommand(app, "bench", "benchmarks: print a table and write JSON");
  auto o = std::make_shared<BenchConvertOptions>();
  auto* cmd = bench->add_subcommand("convert", "time and peak memory of converting a real-size (random) checkpoint");
  cmd->add_option("--model", o->model, "model preset (configs/model/*.yaml)")->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "float32 or bfloat16")->capture_default_str();
  cmd->add_option("--vocab", o->vocab, "vocabulary size (0 = the preset's)")->capture_default_str();
  cmd->add_option("--dir", o->dir, "working directory (needs about 3x the model's size free)")->capture_default_str();
  cmd->add_option("--max-shard-size", o->max_shard_size, "safetensors shard size")->capture_default_str();
  cmd->add_option("--tokenizer", o->tokenizer,
                  "HF tokenizer directory to put beside the random weights (vocab = its size; an LC-Rec text model)");
  cmd->add_option("--eval-data", o->eval_data, "dataset directory: also time `atspeed eval` on the converted model");
  cmd->add_option("--eval-users", o->eval_users, "users for --eval-data")->capture_default_str();
  cmd->add_option("--eval-k", o->eval_k, "beam width for --eval-data")->capture_default_str();
  cmd->add_flag("--keep", o->keep, "keep the HDF5 file (the random HF checkpoint and the export are always removed)");
  cmd->add_option("--json", o->json, "JSON output (default <run.out_dir>/bench_convert.json)");
  cmd->add_option("overrides", o->overrides, "config overrides (run.out_dir=...)");
  cmd->callback([o]() { run_bench_convert(*o); });
});

}  // namespace
}  // namespace atspeed::launch
