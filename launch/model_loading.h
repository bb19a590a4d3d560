// Loading checkpoints for decoding commands (eval, bench decode, serve): device choice, the prompt
// layout the model was trained with, and the checks that a model fits the dataset.
#pragma once

#include <c10/core/Device.h>

#include <string>

#include "core/device.h"
#include "core/io/checkpoint.h"
#include "core/model/llama.h"
#include "data/data_config.h"
#include "data/dataset.h"

namespace atspeed::launch {

using atspeed::resolve_device;  // core/device.h

// Takes data.prompt_format (resp when absent: older checkpoints) / data.sep_token / data.history_len
// from the checkpoint's stored config when present (a model only understands its own prompt layout),
// warning when they differ from `data`, and the tokenizer a converted LC-Rec checkpoint carries
// (data.checkpoint_tokenizer). Call it before load_dataset: the layout and tokenizer decide the vocabulary.
void apply_prompt_settings(const CheckpointReader& reader, DataConfig& data);

// Error(Checkpoint) naming both when the checkpoint's item-index fingerprint is not the dataset's; a
// converted checkpoint (attribute converted_from, no fingerprint) is accepted with a warning.
void check_index_fingerprint(const CheckpointReader& reader, const Dataset& ds, const std::string& role);

// Loads the model of `reader` onto `device` in eval mode after checking that its item-index
// fingerprint and vocabulary size match the dataset's (Error(Checkpoint) naming both otherwise).
// `role` names it in messages ("target", "draft").
// dtype: decode.dtype ("checkpoint" or "" keeps the stored model.dtype; float32, bfloat16).
model::LlamaModel load_model_for(const CheckpointReader& reader, const Dataset& ds, c10::Device device,
                                 const std::string& role, const std::string& dtype = "checkpoint");

// The same for tensor-parallel shard tp_rank of tp_size (model::load_model_shard: each split weight
// read as an HDF5 hyperslab). Error(Config) naming the role, the file and the field when tp_size does
// not divide the model's heads, KV heads or intermediate size. The caller sets the tp communicator.
model::LlamaModel load_model_shard_for(const CheckpointReader& reader, const Dataset& ds, c10::Device device,
                                       const std::string& role, int64_t tp_rank, int64_t tp_size,
                                       const std::string& dtype = "checkpoint");

// Warns when the draft has more parameters than the target: the two paths are probably swapped
// (everything still works, only slower than target beam search).
void warn_if_draft_larger(model::LlamaModelImpl& target, model::LlamaModelImpl& draft, const std::string& target_path,
                          const std::string& draft_path);

}  // namespace atspeed::launch
