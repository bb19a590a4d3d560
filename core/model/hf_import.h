// Streaming conversion between HuggingFace LLaMA checkpoints (optionally with a PEFT LoRA adapter
// and an LC-Rec tokenizer) and our HDF5 checkpoints. Both directions go tensor by tensor: each
// tensor is read, converted (dtype, LoRA merge) and written before the next is read, so peak
// memory is near the largest tensor (the embedding or lm_head), not the model.
//
// LoRA merge (PEFT adapters: adapter_config.json + adapter_model.safetensors or .bin):
//   W' = W + s · B·A,  s = lora_alpha / r  (lora_alpha / sqrt(r) with use_rslora),
// computed in float32 for every "<module>.lora_A.weight" [r, in] / "<module>.lora_B.weight"
// [out, r] pair, r taken from A (so rank_pattern needs nothing). Refused by name: DoRA, lora bias
// terms, fan_in_fan_out, alpha_pattern, LoRA on the embedding, any adapter key we do not know.
// Full tensors in the adapter (modules_to_save, PEFT's saved embedding layers) replace the base's.
//
// Resized vocabularies. LC-Rec adds the code tokens to the tokenizer and resizes embed_tokens and
// lm_head; the new rows then live only in the adapter's modules_to_save. When the tokenizer is
// larger than the base model and the adapter lacks those rows (AtSpeed's adapters regenerate them
// from a seed at load time), the import is refused with a message naming the rows and pointing to
// tools/merge_lcrec_lora.py, which reproduces the reference's load order and writes a merged model.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/config_types.h"

namespace at {
class Tensor;
}

namespace atspeed::model {

struct HfImportOptions {
  std::string from;       // HF checkpoint: directory, model.safetensors or its index .json
  std::string lora;       // PEFT adapter directory; "" = none
  // HF tokenizer directory; "" = the adapter's directory when it has tokenizer.model, else the
  // checkpoint's, else none (a tokenizer-free model). "none" = do not embed one.
  std::string tokenizer;
  std::optional<std::string> dtype;  // float32 / bfloat16; default: the config's
  std::string kind = "target";
  void validate() const;  // Error(Usage) naming the option
};

struct HfImportReport {
  ModelConfig config;               // as written (vocab_size after any resize)
  int64_t tensors = 0;
  int64_t lora_merged = 0;          // weights with a LoRA delta added
  int64_t replaced = 0;             // weights taken whole from the adapter
  std::string tokenizer;            // Vocabulary::describe() of the embedded tokenizer, "" when none
  std::string tokenizer_dir;        // where it came from
  int64_t largest_tensor_bytes = 0; // in the written dtype
};

// Reads the HF checkpoint (and adapter), writes `out` (an HDF5 checkpoint, atomically).
HfImportReport import_hf_checkpoint(const HfImportOptions& options, const std::string& out);

struct HfExportReport {
  ModelConfig config;
  std::vector<std::string> shards;  // file names inside the directory
  bool tokenizer = false;
  int64_t largest_tensor_bytes = 0;
};

// Writes an HF directory from an HDF5 checkpoint: config.json, model-0000i-of-0000n.safetensors
// shards of at most max_shard_bytes each (one tensor may exceed it alone) with
// model.safetensors.index.json (a single model.safetensors when everything fits in one), and the
// tokenizer files when the checkpoint carries a tokenizer. `dtype` converts on the way.
HfExportReport export_hf_checkpoint(const std::string& h5_path, const std::string& dir,
                                    const std::optional<std::string>& dtype, int64_t max_shard_bytes);

// Writes the weights of `config` (in its dtype) into dir as transformers saves them: config.json and
// model-0000i-of-0000n.safetensors shards of at most max_shard_bytes (a single model.safetensors when
// one is enough) with model.safetensors.index.json, asking `tensor(name)` for each tensor in turn
// (so only one is in memory). Returns the weight file names.
std::vector<std::string> write_hf_weights(const ModelConfig& config, const std::string& dir, int64_t max_shard_bytes,
                                          const std::function<at::Tensor(const std::string&)>& tensor);

// "5GB", "500MB", "10KB" or a byte count (decimal units, as transformers' max_shard_size);
// Error(Usage) naming --max-shard-size otherwise.
int64_t parse_shard_size(const std::string& text);

// Bytes of the largest parameter of a LlamaForCausalLM with this config, in its dtype.
int64_t largest_parameter_bytes(const ModelConfig& config);

// Parameter names and shapes of a LlamaForCausalLM with this config, in our module order.
std::vector<std::pair<std::string, std::vector<int64_t>>> llama_parameter_shapes(const ModelConfig& config);

}  // namespace atspeed::model
