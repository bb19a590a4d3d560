#include "launch/model_loading.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <optional>
#include <utility>

#include "core/config.h"
#include "core/errors.h"
#include "core/model/model_io.h"
#include "core/vocab/tokenizer.h"

namespace atspeed::launch {

void apply_prompt_settings(const CheckpointReader& reader, DataConfig& data) {
  const Config stored = Config::from_yaml(reader.attributes().config_yaml, reader.path() + ":config_yaml");
  // A checkpoint without the key predates it and was trained on the resp layout.
  const std::string format = stored.has("data.prompt_format") ? stored.at("data.prompt_format").as<std::string>() : "resp";
  if (format != data.prompt_format) {
    spdlog::warn("data.prompt_format = {} in {}, {} in the config: using the checkpoint's", format, reader.path(),
                 data.prompt_format);
  }
  data.prompt_format = format;
  // A converted LC-Rec checkpoint carries its tokenizer: the dataset's vocabulary is built from it.
  if (auto files = model::read_tokenizer(reader)) data.checkpoint_tokenizer = std::make_shared<const TextTokenizer>(*files);
  if (stored.has("data.sep_token")) {
    const bool v = stored.at("data.sep_token").as<bool>();
    if (v != data.sep_token) {
      spdlog::warn("data.sep_token = {} in {}, {} in the config: using the checkpoint's", v, reader.path(), data.sep_token);
    }
    data.sep_token = v;
  }
  if (stored.has("data.history_len")) {
    const int v = stored.at("data.history_len").as<int>();
    if (v != data.history_len) {
      spdlog::warn("data.history_len = {} in {}, {} in the config: using the checkpoint's", v, reader.path(),
                   data.history_len);
    }
    data.history_len = v;
  }
}

void check_index_fingerprint(const CheckpointReader& reader, const Dataset& ds, const std::string& role) {
  const std::string fingerprint = ds.catalog->fingerprint();
  if (reader.attributes().fingerprint.empty() && reader.string_attribute("", "converted_from")) {
    // A converted checkpoint was fine-tuned elsewhere: nothing recorded its item index.
    spdlog::warn("{} ({}): converted from {}, no item index fingerprint; it must have been fine-tuned on {}",
                 reader.path(), role, *reader.string_attribute("", "converted_from"), ds.index_path);
    return;
  }
  ATSPEED_ENSURE(Checkpoint, reader.attributes().fingerprint == fingerprint, reader.path(), " (", role,
                 "): item index fingerprint '", reader.attributes().fingerprint, "' differs from the dataset's '",
                 fingerprint, "' (", ds.index_path, "): the model was trained on another index");
}

namespace {

model::LlamaModel finish_loading(model::LlamaModel model, const CheckpointReader& reader, const Dataset& ds,
                                 c10::Device device, const std::string& role) {
  const int64_t vocab = ds.catalog->vocab().size();
  ATSPEED_ENSURE(Checkpoint, model->options().vocab_size == vocab, reader.path(), " (", role, "): model vocab_size ",
                 model->options().vocab_size, " but the dataset vocabulary has ", vocab, " tokens");
  model->to(device);
  model->eval();
  return model;
}

std::optional<std::string> dtype_override(const std::string& dtype) {
  if (dtype.empty() || dtype == "checkpoint") return std::nullopt;
  return dtype;
}

}  // namespace

model::LlamaModel load_model_for(const CheckpointReader& reader, const Dataset& ds, c10::Device device,
                                 const std::string& role, const std::string& dtype) {
  check_index_fingerprint(reader, ds, role);
  return finish_loading(model::load_model(reader, dtype_override(dtype)), reader, ds, device, role);
}

model::LlamaModel load_model_shard_for(const CheckpointReader& reader, const Dataset& ds, c10::Device device,
                                       const std::string& role, int64_t tp_rank, int64_t tp_size,
                                       const std::string& dtype) {
  check_index_fingerprint(reader, ds, role);
  // Checked here as well as in LlamaOptions::sharded so that the message names the model's role
  // and file, not only its config name.
  const ModelConfig c = model::model_config_from_checkpoint(reader);
  for (const auto& [field, n] : {std::pair<const char*, int64_t>{"num_attention_heads", c.num_attention_heads},
                                 {"num_key_value_heads", c.num_key_value_heads},
                                 {"intermediate_size", c.intermediate_size}}) {
    ATSPEED_ENSURE(Config, n % tp_size == 0, "dist.tp=", tp_size, " does not divide the ", role, "'s model.", field,
                   " (", n, ") in ", reader.path(), ": tensor-parallel serving splits heads, KV heads and MLP ",
                   "features evenly across ranks; pick a dist.tp that divides them");
  }
  return finish_loading(model::load_model_shard(reader, tp_rank, tp_size, dtype_override(dtype)), reader, ds, device,
                        role);
}

void warn_if_draft_larger(model::LlamaModelImpl& target, model::LlamaModelImpl& draft, const std::string& target_path,
                          const std::string& draft_path) {
  auto count = [](model::LlamaModelImpl& m) {
    int64_t n = 0;
    for (const auto& p : m.parameters()) n += p.numel();
    return n;
  };
  const int64_t t = count(target), d = count(draft);
  if (d > t) {
    spdlog::warn("the draft {} has more parameters ({}) than the target {} ({}): are the two paths swapped? "
                 "Speculative decoding pays only with a draft much cheaper than the target",
                 draft_path, d, target_path, t);
  }
}

}  // namespace atspeed::launch
