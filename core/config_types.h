// Typed config sections shared by every subcommand. Each struct: defaults in the fields, read() maps
// yaml keys (same names) to fields, validate() checks values and names the key path on error.
#pragma once

#include <cstdint>
#include <string>

#include "core/config.h"

namespace atspeed {

struct RunConfig {
  std::string out_dir = "runs/default";  // outputs and the resolved config.yaml go here
  int64_t seed = 2025;
  int threads = 0;                        // intra-op threads for libtorch; 0 = all cores

  void read(ConfigSection& s);
  void validate() const;
};

struct LogConfig {
  std::string level = "info";  // trace, debug, info, warn, error, off
  bool all_ranks = false;      // info lines from every rank, not just rank 0

  void read(ConfigSection& s);
  void validate() const;
};

struct DistConfig {
  int tp = 1;                    // tensor-parallel degree; data-parallel degree = world size / tp
  std::string backend = "auto";  // auto (mpi under mpirun, else local), local, mpi, nccl

  void read(ConfigSection& s);
  void validate() const;
};

// LLaMA decoder shape; key names are HuggingFace's LlamaConfig names so conversion is a copy.
struct ModelConfig {
  std::string name = "target_small";
  int64_t vocab_size = 0;  // 0 = take the dataset vocabulary's size
  int64_t hidden_size = 256;
  int64_t intermediate_size = 688;
  int64_t num_hidden_layers = 4;
  int64_t num_attention_heads = 8;
  int64_t num_key_value_heads = 4;
  int64_t max_position_embeddings = 2048;
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  std::string dtype = "float32";  // float32, bfloat16

  void read(ConfigSection& s);
  void validate() const;
  int64_t head_dim() const { return hidden_size / num_attention_heads; }
};

// Applies run.threads: sets libtorch's intra-op and inter-op thread counts (torch defaults to 1 here).
void apply_threads(int threads);

}  // namespace atspeed
