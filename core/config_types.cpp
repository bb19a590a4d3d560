#include "core/config_types.h"

#include <ATen/Parallel.h>

#include <thread>

#include "core/logging.h"

namespace atspeed {

void RunConfig::read(ConfigSection& s) { s.get("out_dir", out_dir).get("seed", seed).get("threads", threads); }
void RunConfig::validate() const {
  config_ensure(!out_dir.empty(), "run.out_dir", "must not be empty");
  config_ensure(seed >= 0, "run.seed", "must be >= 0");
  config_ensure(threads >= 0 && threads <= 1024, "run.threads", "must be in [0, 1024] (0 = all cores)");
}

void LogConfig::read(ConfigSection& s) { s.get("level", level).get("all_ranks", all_ranks); }
void LogConfig::validate() const {
  const bool known = level == "trace" || level == "debug" || level == "info" || level == "warn" ||
                     level == "error" || level == "off";
  config_ensure(known, "log.level", "unknown level '" + level + "' (trace, debug, info, warn, error, off)");
}

void DistConfig::read(ConfigSection& s) { s.get("tp", tp).get("backend", backend); }
void DistConfig::validate() const {
  config_ensure(tp >= 1, "dist.tp", "must be >= 1");
  config_ensure(backend == "auto" || backend == "local" || backend == "mpi" || backend == "nccl", "dist.backend",
                "must be auto, local, mpi or nccl (got '" + backend + "')");
}

void ModelConfig::read(ConfigSection& s) {
  s.get("name", name)
      .get("vocab_size", vocab_size)
      .get("hidden_size", hidden_size)
      .get("intermediate_size", intermediate_size)
      .get("num_hidden_layers", num_hidden_layers)
      .get("num_attention_heads", num_attention_heads)
      .get("num_key_value_heads", num_key_value_heads)
      .get("max_position_embeddings", max_position_embeddings)
      .get("rope_theta", rope_theta)
      .get("rms_norm_eps", rms_norm_eps)
      .get("tie_word_embeddings", tie_word_embeddings)
      .get("dtype", dtype);
}
void ModelConfig::validate() const {
  config_ensure(vocab_size >= 0, "model.vocab_size", "must be >= 0 (0 = from the dataset)");
  config_ensure(hidden_size > 0, "model.hidden_size", "must be > 0");
  config_ensure(intermediate_size > 0, "model.intermediate_size", "must be > 0");
  config_ensure(num_hidden_layers > 0, "model.num_hidden_layers", "must be > 0");
  config_ensure(num_attention_heads > 0 && hidden_size % num_attention_heads == 0, "model.num_attention_heads",
                "must be > 0 and divide hidden_size (" + std::to_string(hidden_size) + ")");
  config_ensure(head_dim() % 2 == 0, "model.num_attention_heads", "head dim hidden_size/num_attention_heads must be even for rotary embeddings");
  config_ensure(num_key_value_heads > 0 && num_attention_heads % num_key_value_heads == 0, "model.num_key_value_heads",
                "must be > 0 and divide num_attention_heads (" + std::to_string(num_attention_heads) + ")");
  config_ensure(max_position_embeddings > 0, "model.max_position_embeddings", "must be > 0");
  config_ensure(rope_theta > 0, "model.rope_theta", "must be > 0");
  config_ensure(rms_norm_eps > 0, "model.rms_norm_eps", "must be > 0");
  config_ensure(dtype == "float32" || dtype == "bfloat16", "model.dtype", "must be float32 or bfloat16 (got '" + dtype + "')");
}

void apply_threads(int threads) {
  const int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n);
  // Inter-op threads can be set once per process only; later calls would throw.
  static bool interop_set = false;
  if (!interop_set) {
    at::set_num_interop_threads(n);
    interop_set = true;
  }
  spdlog::debug("threads: intra-op {}, inter-op {}", at::get_num_threads(), at::get_num_interop_threads());
}

}  // namespace atspeed
