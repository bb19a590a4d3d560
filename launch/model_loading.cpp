#include "launch/model_loading.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "core/config.h"
#include "core/errors.h"
#include "core/model/model_io.h"

namespace atspeed::launch {

c10::Device resolve_device(const std::string& name) {
  if (name == "auto") return torch::cuda::is_available() ? c10::Device(c10::kCUDA) : c10::Device(c10::kCPU);
  if (name.rfind("cuda", 0) == 0) {
    ATSPEED_ENSURE(Device, torch::cuda::is_available(), "decode.device = ", name, " but no CUDA device is available");
  }
  return c10::Device(name);
}

void apply_prompt_settings(const CheckpointReader& reader, DataConfig& data) {
  const Config stored = Config::from_yaml(reader.attributes().config_yaml, reader.path() + ":config_yaml");
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

model::LlamaModel load_model_for(const CheckpointReader& reader, const Dataset& ds, c10::Device device,
                                 const std::string& role) {
  const std::string fingerprint = ds.catalog->fingerprint();
  ATSPEED_ENSURE(Checkpoint, reader.attributes().fingerprint == fingerprint, reader.path(), " (", role,
                 "): item index fingerprint '", reader.attributes().fingerprint, "' differs from the dataset's '",
                 fingerprint, "' (", ds.index_path, "): the model was trained on another index");
  model::LlamaModel model = model::load_model(reader);
  const int64_t vocab = ds.catalog->vocab().size();
  ATSPEED_ENSURE(Checkpoint, model->options().vocab_size == vocab, reader.path(), " (", role, "): model vocab_size ",
                 model->options().vocab_size, " but the dataset vocabulary has ", vocab, " tokens");
  model->to(device);
  model->eval();
  return model;
}

}  // namespace atspeed::launch
