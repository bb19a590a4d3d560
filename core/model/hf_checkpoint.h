// HuggingFace LLaMA checkpoints <-> our models: a directory with config.json and model.safetensors,
// or with shards model-0000x-of-0000y.safetensors listed by model.safetensors.index.json.
//
// Our parameter names are HF's (see llama.h), so weights copy one to one; the work is in the config:
// every config.json value that changes the computation is either mapped onto ModelConfig or, when
// we do not implement it (attention/MLP biases, rope scaling, an activation other than SiLU,
// sliding windows, ...), refused with an Error(Checkpoint) that names the file and the key. Keys that
// only matter to HF itself (token ids, use_cache, initializer_range, ...) are ignored; keys we have
// never heard of are logged as a warning and ignored.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/config_types.h"
#include "core/model/llama.h"

namespace atspeed::model {

// The ModelConfig an HF config.json describes. `name` becomes model.name. model.dtype is the
// config's dtype/torch_dtype when float32 or bfloat16, else float32 (float16 widens losslessly).
ModelConfig model_config_from_hf_json_text(const std::string& json_text, const std::string& origin,
                                           const std::string& name);
// Reads the file; model.name is the name of the directory holding it.
ModelConfig model_config_from_hf_json(const std::string& path);

// The config.json text transformers reads back as the same model (LlamaForCausalLM). It carries
// rope_theta both at the top level (transformers 4.x) and in rope_parameters (5.x).
std::string hf_json_from_model_config(const ModelConfig& config);

// The `model:` section, every field written out, as a checkpoint's config_yaml holds it
// (model_config_from_checkpoint reads it back).
std::string model_config_yaml(const ModelConfig& config);

// The files of an HF checkpoint. `dir_or_file` is a directory, its model.safetensors, or its
// model.safetensors.index.json; config.json is taken from the same directory.
struct HfCheckpointFiles {
  std::string config_json;
  std::vector<std::string> weights;  // one file, or the shards in index order
};
HfCheckpointFiles find_hf_checkpoint(const std::string& dir_or_file);

// Builds the model an HF checkpoint describes and copies its weights in, converted to `dtype`
// ("float32"/"bfloat16"; default: the config's, see above). Missing, unexpected or misshapen
// tensors are Error(Checkpoint) naming the file and tensor. Returns the model in eval mode, on the CPU.
LlamaModel load_hf_model(const std::string& dir_or_file, const std::optional<std::string>& dtype = std::nullopt);

// Writes dir/config.json and dir/model.safetensors (creating dir) for `model`, in its own dtype.
void save_hf_model(LlamaModelImpl& model, const std::string& dir);

}  // namespace atspeed::model
