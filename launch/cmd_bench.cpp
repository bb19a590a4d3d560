// `atspeed bench matmul`: matmul throughput. On the CPU in fp32 it confirms a fast BLAS is in use
// (the reference BLAS is ~20x slower); on a GPU (--device cuda --dtype bfloat16) it is the ceiling
// the model forwards are measured against. Prints a table and writes JSON.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <set>

#include "core/config_types.h"
#include "core/errors.h"
#include "core/io/text_file.h"
#include "launch/model_loading.h"
#include "launch/commands.h"

namespace atspeed::launch {
namespace {

struct MatmulOptions {
  std::vector<int64_t> sizes{256, 512, 1024, 2048};
  int repeats = 5;
  std::string device = "cpu";   // cpu | cuda | cuda:N | auto
  std::string dtype = "float32";  // float32 | bfloat16 | float16
  std::string json = "";  // default: <run.out_dir>/bench_matmul.json
  std::vector<std::string> overrides;
};

at::ScalarType parse_dtype(const std::string& name) {
  if (name == "float32") return at::kFloat;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float16") return at::kHalf;
  ATSPEED_THROW(Config, "bench matmul --dtype: must be float32, bfloat16 or float16 (got '", name, "')");
}

// Waits for the device's queued work (a no-op on the CPU), so wall time covers the kernels.
void sync(const at::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

double time_matmul(int64_t n, int repeats, const at::TensorOptions& opts) {
  at::Tensor a = at::randn({n, n}, opts), b = at::randn({n, n}, opts);
  at::mm(a, b);  // warm-up
  sync(opts.device());
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    at::Tensor c = at::mm(a, b);
    sync(opts.device());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
  }
  return best;
}

void run_matmul(const MatmulOptions& opt) {
  ATSPEED_ENSURE(Usage, !opt.sizes.empty(), "--sizes: at least one matrix size");
  std::set<int64_t> seen;
  for (int64_t n : opt.sizes) {
    ATSPEED_ENSURE(Usage, n >= 1 && n <= 65536, "--sizes: ", n, " is not a matrix size in [1, 65536]");
    ATSPEED_ENSURE(Usage, seen.insert(n).second, "--sizes lists ", n, " twice");
  }
  Config config = load_config(opt.overrides);
  const auto run = read_section<RunConfig>(config, "run");
  std::string blas = "unknown";
  {
    const std::string info = at::show_config();
    const auto pos = info.find("BLAS_INFO=");
    if (pos != std::string::npos) blas = info.substr(pos + 10, info.find(',', pos) - pos - 10);
  }
  const at::Device device = resolve_device(opt.device, "bench matmul --device");
  const auto opts = at::TensorOptions().dtype(parse_dtype(opt.dtype)).device(device);
  const std::string where = device.is_cpu() ? std::to_string(at::get_num_threads()) + " threads, BLAS " + blas
                                            : device.str();
  nlohmann::json out = {{"benchmark", "matmul"}, {"dtype", opt.dtype}, {"device", device.str()},
                        {"threads", at::get_num_threads()}, {"blas", blas}, {"results", nlohmann::json::array()}};
  std::cout << opt.dtype << " matmul, " << where << "\n";
  std::cout << "     n   best time (ms)   GFLOP/s\n";
  for (int64_t n : opt.sizes) {
    const double s = time_matmul(n, opt.repeats, opts);
    const double gflops = 2.0 * n * n * n / s / 1e9;
    std::printf("%6ld   %14.3f   %7.1f\n", static_cast<long>(n), s * 1e3, gflops);
    out["results"].push_back({{"n", n}, {"seconds", s}, {"gflops", gflops}});
  }
  const std::string path = opt.json.empty() ? run.out_dir + "/bench_matmul.json" : opt.json;
  write_text_file_atomic(path, out.dump(2) + "\n");
  config.save_to_dir(std::filesystem::path(path).parent_path().empty() ? "." : std::filesystem::path(path).parent_path().string());
  std::cout << "wrote " << path << "\n";
}

RegisterCommand reg([](CLI::App& app) {
  CLI::App* bench = find_or_add_subcommand(app, "bench", "benchmarks: print a table, write JSON");
  bench->require_subcommand(1);
  auto opt = std::make_shared<MatmulOptions>();
  CLI::App* cmd = bench->add_subcommand("matmul", "matmul GFLOP/s (CPU fp32: checks that a fast BLAS is in use)");
  cmd->add_option("--sizes", opt->sizes, "matrix sizes n (n x n times n x n)")->capture_default_str();
  cmd->add_option("--repeats", opt->repeats, "timed repeats per size; the best is reported")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--device", opt->device, "cpu, cuda, cuda:N or auto")->capture_default_str();
  cmd->add_option("--dtype", opt->dtype, "float32, bfloat16 or float16")->capture_default_str();
  cmd->add_option("--json", opt->json, "output JSON path (default <run.out_dir>/bench_matmul.json)");
  cmd->add_option("overrides", opt->overrides, "config overrides");
  cmd->callback([opt] { run_matmul(*opt); });
});

}  // namespace
}  // namespace atspeed::launch
