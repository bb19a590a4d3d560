#include "core/model/model_io.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <set>

#include "core/config.h"
#include "core/errors.h"

namespace atspeed::model {

void write_parameters(CheckpointWriter& writer, LlamaModelImpl& model) {
  // A shard's tensors under the full names would make a checkpoint no model can load.
  ATSPEED_ENSURE(Checkpoint, model.options().tp_size == 1, writer.path(), ": cannot write tensor-parallel shard ",
                 model.options().tp_rank, " of ", model.options().tp_size, " as a model checkpoint");
  for (const auto& p : model.named_parameters()) writer.write(p.key(), p.value().detach());
}

void read_parameters(const CheckpointReader& reader, LlamaModelImpl& model) {
  torch::NoGradGuard no_grad;
  const int64_t tp_rank = model.options().tp_rank, tp_size = model.options().tp_size;
  std::set<std::string> expected;
  for (auto& p : model.named_parameters()) {
    const std::string& name = p.key();
    expected.insert(name);
    ATSPEED_ENSURE(Checkpoint, reader.contains(name), reader.path(), ": missing tensor '", name,
                   "' (the checkpoint does not match model config '", model.options().name, "')");
    const TensorInfo info = reader.info(name);
    // The full shape this parameter is a shard of: the split dim scaled back up by tp_size.
    std::vector<int64_t> full = p.value().sizes().vec();
    const TpSplit split = tp_size > 1 ? tp_split_of(name) : TpSplit::None;
    if (split != TpSplit::None) full[split == TpSplit::Row ? 1 : 0] *= tp_size;
    ATSPEED_ENSURE(Checkpoint, info.shape == full, reader.path(), ": tensor '", name, "' has shape ",
                   at::IntArrayRef(info.shape), ", the model expects ", at::IntArrayRef(full));
    if (split == TpSplit::None) {
      p.value().copy_(reader.read(name).to(p.value().dtype()));
    } else {
      // Only this rank's hyperslab leaves the file.
      const TpSlice s = tp_slice_of(name, info.shape, tp_rank, tp_size);
      p.value().copy_(reader.read_block(name, s.dim, s.begin, s.end).to(p.value().dtype()));
    }
  }
  for (const TensorInfo& t : reader.list()) {
    const bool looks_like_param = t.name.rfind("model.", 0) == 0 || t.name.rfind("lm_head.", 0) == 0;
    ATSPEED_ENSURE(Checkpoint, !looks_like_param || expected.count(t.name), reader.path(), ": unexpected tensor '",
                   t.name, "' (not a parameter of model config '", model.options().name, "')");
  }
}

void write_tokenizer(CheckpointWriter& writer, const TextTokenizer& tokenizer) {
  const TokenizerFiles& files = tokenizer.files();
  auto bytes = [](const std::string& s) {
    return at::from_blob(const_cast<char*>(s.data()), {static_cast<int64_t>(s.size())}, at::kByte).clone();
  };
  writer.write("tokenizer/tokenizer.model", bytes(files.sentencepiece_model));
  for (const auto& [name, text] : files.json_files) writer.write("tokenizer/" + name, bytes(text));
  writer.set_string_attribute("tokenizer", "kind", "sentencepiece");
  writer.set_string_attribute("tokenizer", "fingerprint", tokenizer.fingerprint());
}

std::optional<TokenizerFiles> read_tokenizer(const CheckpointReader& reader) {
  if (!reader.contains("tokenizer/tokenizer.model")) return std::nullopt;
  auto text = [&](const std::string& name) {
    const at::Tensor t = reader.read(name).contiguous();
    ATSPEED_ENSURE(Checkpoint, t.scalar_type() == at::kByte && t.dim() == 1, reader.path(), ": ", name,
                   " must be a uint8 vector");
    return std::string(reinterpret_cast<const char*>(t.data_ptr<uint8_t>()), static_cast<size_t>(t.numel()));
  };
  TokenizerFiles f;
  f.origin = reader.path() + ":tokenizer";
  f.sentencepiece_model = text("tokenizer/tokenizer.model");
  for (const std::string& name : TokenizerFiles::json_file_names())
    if (reader.contains("tokenizer/" + name)) f.json_files[name] = text("tokenizer/" + name);
  const auto kind = reader.string_attribute("tokenizer", "kind");
  ATSPEED_ENSURE(Checkpoint, kind && *kind == "sentencepiece", reader.path(), ": tokenizer group kind is '",
                 kind.value_or(""), "', expected sentencepiece");
  return f;
}

ModelConfig model_config_from_checkpoint(const CheckpointReader& reader) {
  const std::string& yaml = reader.attributes().config_yaml;
  ATSPEED_ENSURE(Checkpoint, !yaml.empty(), reader.path(), ": no config_yaml attribute (not a model checkpoint?)");
  Config config;
  try {
    config = Config::from_yaml(yaml, reader.path() + ":config_yaml");
  } catch (const Error& e) {
    ATSPEED_THROW(Checkpoint, reader.path(), ": unreadable config_yaml: ", e.message());
  }
  ATSPEED_ENSURE(Checkpoint, config.has("model"), reader.path(), ": config_yaml has no 'model' section");
  try {
    return read_section<ModelConfig>(config, "model");
  } catch (const Error& e) {
    ATSPEED_THROW(Checkpoint, reader.path(), ": bad model section in config_yaml: ", e.message());
  }
}

LlamaModel load_model(const CheckpointReader& reader, const std::optional<std::string>& dtype) {
  return load_model_shard(reader, 0, 1, dtype);
}

LlamaModel load_model_shard(const CheckpointReader& reader, int64_t tp_rank, int64_t tp_size,
                            const std::optional<std::string>& dtype) {
  ModelConfig mc = model_config_from_checkpoint(reader);
  if (dtype) mc.dtype = *dtype;
  ATSPEED_ENSURE(Checkpoint, mc.vocab_size > 0, reader.path(), ": model.vocab_size is not resolved in config_yaml");
  LlamaModel model(LlamaOptions::from_config(mc).sharded(tp_rank, tp_size));
  read_parameters(reader, *model);
  model->eval();
  return model;
}

int64_t parameter_count(const LlamaOptions& o) {
  const int64_t h = o.hidden_size, kv = o.num_key_value_heads * o.head_dim();
  const int64_t per_layer = 2 * h * h + 2 * h * kv + 3 * h * o.intermediate_size + 2 * h;
  const int64_t head = o.tie_word_embeddings ? 0 : o.vocab_size * h;
  return o.vocab_size * h + o.num_hidden_layers * per_layer + h + head;
}

double flops_per_token(const LlamaOptions& o, int64_t context) {
  const double h = static_cast<double>(o.hidden_size), kv = static_cast<double>(o.num_key_value_heads * o.head_dim());
  const double matmul = o.num_hidden_layers * (2 * h * h + 2 * h * kv + 3 * h * o.intermediate_size) + o.vocab_size * h;
  return 2.0 * matmul + 4.0 * o.num_hidden_layers * h * static_cast<double>(context);
}

std::string parameter_fingerprint(LlamaModelImpl& model) {
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) {
      h ^= p[i];
      h *= 1099511628211ULL;
    }
  };
  torch::NoGradGuard no_grad;
  for (const auto& p : model.named_parameters()) {
    mix(p.key().data(), p.key().size());
    for (int64_t d : p.value().sizes()) mix(&d, sizeof d);
    const at::Tensor v = p.value().detach().to(at::kCPU, at::kFloat).contiguous();
    mix(v.data_ptr(), static_cast<size_t>(v.numel()) * sizeof(float));
  }
  return fmt::format("fnv1a64:{:016x}", h);
}

}  // namespace atspeed::model
