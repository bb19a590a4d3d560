// LLaMA models in HDF5 checkpoints: parameters are datasets named by their HF module path, the
// resolved config (whose `model:` section gives the shape) is the root attribute config_yaml.
#pragma once

#include <optional>
#include <string>

#include "core/config_types.h"
#include "core/io/checkpoint.h"
#include "core/model/llama.h"
#include "core/vocab/tokenizer.h"

namespace atspeed::model {

// Writes every parameter of `model` (HF names, model order, its own dtype) into `writer`.
// Error(Checkpoint) for a tensor-parallel shard (tp_size > 1).
void write_parameters(CheckpointWriter& writer, LlamaModelImpl& model);

// Copies every parameter of `model` from the reader's datasets of the same name, converting the
// stored dtype to the parameter's. A missing tensor or a shape mismatch is Error(Checkpoint) naming
// the file and the tensor. Tensors in the file that the model does not have (optimizer state,
// trainer state, ...) are ignored unless they look like model parameters ("model." or "lm_head.").
// A tensor-parallel shard (options().tp_size > 1) checks the full shapes and reads only its own
// hyperslab of each split tensor (CheckpointReader::read_block); replicated tensors are read whole.
void read_parameters(const CheckpointReader& reader, LlamaModelImpl& model);

// The `model:` section of a checkpoint's config_yaml, validated; Error(Checkpoint) when absent.
ModelConfig model_config_from_checkpoint(const CheckpointReader& reader);

// Builds the model the checkpoint describes and loads its weights. `dtype` ("float32"/"bfloat16")
// overrides the stored model.dtype when given. Returns the model in eval mode on the CPU.
LlamaModel load_model(const CheckpointReader& reader, const std::optional<std::string>& dtype = std::nullopt);
// The same for tensor-parallel shard tp_rank of tp_size (load_model is shard 0 of 1): the model is
// built with LlamaOptions::sharded (Error(Config) when tp_size does not divide the heads, KV heads
// or intermediate size) and each split weight is read as a hyperslab, so no rank materialises the
// full checkpoint. The caller connects the shard to its group with set_tensor_parallel().
LlamaModel load_model_shard(const CheckpointReader& reader, int64_t tp_rank, int64_t tp_size,
                            const std::optional<std::string>& dtype = std::nullopt);

// The tokenizer of a converted LC-Rec checkpoint travels inside it: group "tokenizer" holds one
// uint8 dataset per file (tokenizer/tokenizer.model, tokenizer/tokenizer_config.json, ...), byte
// for byte, and the group attributes kind ("sentencepiece") and fingerprint (TextTokenizer's).
void write_tokenizer(CheckpointWriter& writer, const TextTokenizer& tokenizer);
// nullopt when the checkpoint has none (tokenizer-free); Error(Checkpoint) for a damaged group.
std::optional<TokenizerFiles> read_tokenizer(const CheckpointReader& reader);

// A content fingerprint of the weights: "fnv1a64:<16 hex>" over every parameter's name, shape and
// float32 bytes in model order. Depends only on the values (not on the file, its dtype choice for
// other tensors or its path), so teacher data can record which target produced it.
std::string parameter_fingerprint(LlamaModelImpl& model);

// Number of parameters (elements) of the model and the forward FLOPs per token at a given context
// length (2 * matmul params + attention 4 * layers * hidden * context), used by configs and benches.
int64_t parameter_count(const LlamaOptions& o);
double flops_per_token(const LlamaOptions& o, int64_t context);

}  // namespace atspeed::model
