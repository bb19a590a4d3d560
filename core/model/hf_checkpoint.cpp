#include "core/model/hf_checkpoint.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "core/errors.h"
#include "core/io/safetensors.h"
#include "core/model/hf_import.h"

namespace atspeed::model {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ATSPEED_ENSURE(Checkpoint, in.good(), path, ": cannot open");
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

json parse_json(const std::string& text, const std::string& origin) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    ATSPEED_THROW(Checkpoint, origin, ": not valid JSON: ", e.what());
  }
}

// Keys that only matter to transformers itself (generation, training, serialization); they do not
// change the forward pass, so a checkpoint that sets them converts unchanged.
const std::set<std::string> kIgnoredKeys = {
    "_name_or_path", "transformers_version", "bos_token_id", "eos_token_id", "pad_token_id", "use_cache",
    "initializer_range", "pretraining_tp",  // pretraining_tp only reorders the same matmuls
    "output_attentions", "output_hidden_states", "return_dict", "torchscript", "use_return_dict",
    "tokenizer_class", "prefix", "sep_token_id", "decoder_start_token_id", "task_specific_params",
    "problem_type", "id2label", "label2id", "chunk_size_feed_forward", "is_encoder_decoder", "is_decoder",
    "add_cross_attention", "tie_encoder_decoder", "cross_attention_hidden_size", "finetuning_task",
    "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups",
    "diversity_penalty", "temperature", "top_k", "top_p", "typical_p", "repetition_penalty",
    "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids",
    "num_return_sequences", "output_scores", "return_dict_in_generate", "forced_bos_token_id",
    "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens",
    "begin_suppress_tokens", "pruned_heads", "torch_dtype", "dtype", "model_type", "architectures",
};

// Reads config.json values with the file named in every error.
class HfJson {
 public:
  HfJson(const json& j, std::string origin) : j_(j), origin_(std::move(origin)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
    ATSPEED_THROW(Checkpoint, origin_, ": ", key, ": ", problem);
  }
  // Present and not null.
  bool has(const std::string& key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  const json& at(const std::string& key) const { return j_.at(key); }

  int64_t integer(const std::string& key, std::optional<int64_t> fallback = std::nullopt) const {
    if (!has(key)) {
      if (!fallback) fail(key, "missing");
      return *fallback;
    }
    if (!at(key).is_number_integer()) fail(key, "must be an integer (got " + at(key).dump() + ")");
    return at(key).get<int64_t>();
  }
  double number(const json& v, const std::string& key) const {
    if (!v.is_number()) fail(key, "must be a number (got " + v.dump() + ")");
    return v.get<double>();
  }
  double number(const std::string& key, double fallback) const { return has(key) ? number(at(key), key) : fallback; }
  bool boolean(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!at(key).is_boolean()) fail(key, "must be true or false (got " + at(key).dump() + ")");
    return at(key).get<bool>();
  }
  std::string string(const std::string& key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    if (!at(key).is_string()) fail(key, "must be a string (got " + at(key).dump() + ")");
    return at(key).get<std::string>();
  }

 private:
  const json& j_;
  std::string origin_;
};

// rope_scaling (4.x) / rope_parameters (5.x): only plain RoPE is implemented; returns the theta the
// object sets, if any.
std::optional<double> read_rope_object(const HfJson& h, const std::string& key) {
  if (!h.has(key)) return std::nullopt;
  const json& r = h.at(key);
  if (!r.is_object()) h.fail(key, "must be an object (got " + r.dump() + ")");
  std::optional<double> theta;
  for (auto it = r.begin(); it != r.end(); ++it) {
    const std::string sub = key + "." + it.key();
    if (it.key() == "rope_type" || it.key() == "type") {
      if (!it.value().is_string() || it.value().get<std::string>() != "default")
        h.fail(sub, "only plain rotary embeddings (\"default\") are supported, got " + it.value().dump() +
                        " (rope scaling such as linear, dynamic, yarn or llama3 is not implemented)");
    } else if (it.key() == "rope_theta") {
      theta = h.number(it.value(), sub);
    } else {
      h.fail(sub, "not supported (only rope_type \"default\" and rope_theta are); got " + it.value().dump());
    }
  }
  return theta;
}

std::string json_number(double v) { return fmt::format("{}", v); }

}  // namespace

ModelConfig model_config_from_hf_json_text(const std::string& json_text, const std::string& origin,
                                           const std::string& name) {
  const json j = parse_json(json_text, origin);
  ATSPEED_ENSURE(Checkpoint, j.is_object(), origin, ": not a JSON object");
  HfJson h(j, origin);

  const std::string model_type = h.string("model_type", "llama");
  if (model_type != "llama") h.fail("model_type", "only \"llama\" is supported (got \"" + model_type + "\")");
  if (h.has("architectures")) {
    const json& a = h.at("architectures");
    bool causal_lm = false;
    if (a.is_array())
      for (const auto& x : a) causal_lm = causal_lm || (x.is_string() && x.get<std::string>() == "LlamaForCausalLM");
    if (!causal_lm) h.fail("architectures", "must name LlamaForCausalLM (got " + a.dump() + ")");
  }
  const std::string act = h.string("hidden_act", "silu");
  if (act != "silu") h.fail("hidden_act", "only \"silu\" (SwiGLU) is supported (got \"" + act + "\")");
  for (const char* key : {"attention_bias", "mlp_bias"})
    if (h.boolean(key, false)) h.fail(key, "biases are not supported (our linear layers have none)");
  if (h.number("attention_dropout", 0.0) != 0.0) h.fail("attention_dropout", "must be 0 (dropout is not implemented)");
  if (h.has("sliding_window")) h.fail("sliding_window", "sliding-window attention is not supported");
  if (h.boolean("use_sliding_window", false)) h.fail("use_sliding_window", "sliding-window attention is not supported");
  if (h.number("partial_rotary_factor", 1.0) != 1.0) h.fail("partial_rotary_factor", "must be 1 (partial RoPE is not supported)");
  if (h.has("quantization_config")) h.fail("quantization_config", "quantized checkpoints are not supported");

  ModelConfig c;
  c.name = name;
  c.vocab_size = h.integer("vocab_size");
  c.hidden_size = h.integer("hidden_size");
  c.intermediate_size = h.integer("intermediate_size");
  c.num_hidden_layers = h.integer("num_hidden_layers");
  c.num_attention_heads = h.integer("num_attention_heads");
  // HF: a missing or null num_key_value_heads means multi-head attention.
  c.num_key_value_heads = h.integer("num_key_value_heads", c.num_attention_heads);
  c.max_position_embeddings = h.integer("max_position_embeddings", 2048);
  c.rms_norm_eps = h.number("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = h.boolean("tie_word_embeddings", false);
  c.rope_theta = h.number("rope_theta", 10000.0);
  (void)read_rope_object(h, "rope_scaling");
  if (auto theta = read_rope_object(h, "rope_parameters")) {
    if (h.has("rope_theta") && *theta != c.rope_theta)
      h.fail("rope_parameters.rope_theta", "disagrees with rope_theta (" + json_number(c.rope_theta) + ")");
    c.rope_theta = *theta;
  }
  if (c.num_attention_heads > 0 && h.has("head_dim")) {
    const int64_t head_dim = h.integer("head_dim");
    if (head_dim != c.hidden_size / c.num_attention_heads || c.hidden_size % c.num_attention_heads != 0)
      h.fail("head_dim", "must be hidden_size / num_attention_heads = " +
                             std::to_string(c.hidden_size / c.num_attention_heads) + " (got " +
                             std::to_string(head_dim) + ")");
  }
  const std::string dtype = h.has("dtype") ? h.string("dtype", "") : h.string("torch_dtype", "float32");
  c.dtype = dtype == "bfloat16" ? "bfloat16" : "float32";

  std::vector<std::string> unknown;
  static const std::set<std::string> kMapped = {
      "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
      "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings", "rope_theta",
      "rope_scaling", "rope_parameters", "head_dim", "hidden_act", "attention_bias", "mlp_bias",
      "attention_dropout", "sliding_window", "use_sliding_window", "partial_rotary_factor"};
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!kMapped.count(it.key()) && !kIgnoredKeys.count(it.key())) unknown.push_back(it.key());
  if (!unknown.empty())
    spdlog::warn("{}: ignoring unknown config keys: {}", origin, fmt::join(unknown, ", "));

  try {
    c.validate();
  } catch (const Error& e) {
    ATSPEED_THROW(Checkpoint, origin, ": ", e.message());
  }
  ATSPEED_ENSURE(Checkpoint, c.vocab_size > 0, origin, ": vocab_size: must be > 0");
  return c;
}

ModelConfig model_config_from_hf_json(const std::string& path) {
  const fs::path dir = fs::absolute(fs::path(path)).parent_path();
  return model_config_from_hf_json_text(read_text(path), path, dir.filename().string());
}

std::string hf_json_from_model_config(const ModelConfig& c) {
  json j = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads},
      {"head_dim", c.head_dim()},
      {"max_position_embeddings", c.max_position_embeddings},
      {"hidden_act", "silu"},
      {"rms_norm_eps", c.rms_norm_eps},
      {"rope_theta", c.rope_theta},
      {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", c.rope_theta}}},
      {"rope_scaling", nullptr},
      {"attention_bias", false},
      {"mlp_bias", false},
      {"attention_dropout", 0.0},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"dtype", c.dtype},
      {"torch_dtype", c.dtype},
  };
  return j.dump(2) + "\n";
}

std::string model_config_yaml(const ModelConfig& c) {
  // Doubles in their shortest exact form (1e-06, not 9.9999999999999995e-07).
  std::string out = "model:\n";
  out += fmt::format("  name: {}\n", json(c.name).dump());  // a JSON string is a valid YAML scalar
  out += fmt::format("  vocab_size: {}\n", c.vocab_size);
  out += fmt::format("  hidden_size: {}\n", c.hidden_size);
  out += fmt::format("  intermediate_size: {}\n", c.intermediate_size);
  out += fmt::format("  num_hidden_layers: {}\n", c.num_hidden_layers);
  out += fmt::format("  num_attention_heads: {}\n", c.num_attention_heads);
  out += fmt::format("  num_key_value_heads: {}\n", c.num_key_value_heads);
  out += fmt::format("  max_position_embeddings: {}\n", c.max_position_embeddings);
  out += fmt::format("  rope_theta: {}\n", json_number(c.rope_theta));
  out += fmt::format("  rms_norm_eps: {}\n", json_number(c.rms_norm_eps));
  out += fmt::format("  tie_word_embeddings: {}\n", c.tie_word_embeddings ? "true" : "false");
  out += fmt::format("  dtype: {}\n", c.dtype);
  return out;
}

HfCheckpointFiles find_hf_checkpoint(const std::string& dir_or_file) {
  const fs::path given(dir_or_file);
  ATSPEED_ENSURE(Checkpoint, fs::exists(given), dir_or_file, ": no such file or directory");
  fs::path dir = fs::is_directory(given) ? given : given.parent_path();
  if (dir.empty()) dir = ".";
  HfCheckpointFiles files;
  files.config_json = (dir / "config.json").string();
  ATSPEED_ENSURE(Checkpoint, fs::exists(files.config_json), dir_or_file, ": no config.json beside the weights (",
                 files.config_json, ")");
  fs::path index;
  if (fs::is_directory(given)) {
    if (fs::exists(dir / "model.safetensors")) {
      files.weights.push_back((dir / "model.safetensors").string());
      return files;
    }
    index = dir / "model.safetensors.index.json";
    ATSPEED_ENSURE(Checkpoint, fs::exists(index), dir_or_file,
                   ": neither model.safetensors nor model.safetensors.index.json (only safetensors checkpoints "
                   "are supported; convert .bin files with transformers first)");
  } else if (given.string().size() >= 5 && given.string().ends_with(".json")) {
    index = given;
  } else {
    files.weights.push_back(given.string());
    return files;
  }
  const json j = parse_json(read_text(index.string()), index.string());
  ATSPEED_ENSURE(Checkpoint, j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
                 index.string(), ": no weight_map object");
  std::set<std::string> seen;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    ATSPEED_ENSURE(Checkpoint, it.value().is_string(), index.string(), ": weight_map.", it.key(),
                   ": must be a file name");
    const std::string shard = it.value().get<std::string>();
    // Shards are plain names in the same directory; a path would let an index point anywhere.
    ATSPEED_ENSURE(Checkpoint, fs::path(shard).filename() == fs::path(shard) && shard != ".." && shard != ".",
                   index.string(), ": weight_map.", it.key(), ": '", shard, "' is not a file name in ", dir.string());
    if (seen.insert(shard).second) files.weights.push_back((dir / shard).string());
  }
  ATSPEED_ENSURE(Checkpoint, !files.weights.empty(), index.string(), ": weight_map is empty");
  std::sort(files.weights.begin(), files.weights.end());
  for (const auto& w : files.weights)
    ATSPEED_ENSURE(Checkpoint, fs::exists(w), index.string(), ": shard ", w, " is missing");
  return files;
}

LlamaModel load_hf_model(const std::string& dir_or_file, const std::optional<std::string>& dtype) {
  const HfCheckpointFiles files = find_hf_checkpoint(dir_or_file);
  ModelConfig mc = model_config_from_hf_json(files.config_json);
  if (dtype) mc.dtype = *dtype;
  LlamaModel model(LlamaOptions::from_config(mc));
  torch::NoGradGuard no_grad;
  std::map<std::string, at::Tensor> params;
  for (auto& p : model->named_parameters()) params.emplace(p.key(), p.value());
  std::map<std::string, std::string> loaded_from;  // parameter -> file
  for (const std::string& file : files.weights) {
    SafetensorsReader reader(file);
    for (const SafetensorsEntry& e : reader.list()) {
      // Old checkpoints store the rotary inverse frequencies; we recompute them from rope_theta.
      if (e.name.ends_with(".rotary_emb.inv_freq")) continue;
      // A tied checkpoint may still carry the (identical) head; the model uses the embedding.
      if (mc.tie_word_embeddings && e.name == "lm_head.weight") continue;
      auto it = params.find(e.name);
      ATSPEED_ENSURE(Checkpoint, it != params.end(), file, ": unexpected tensor '", e.name,
                     "' (not a parameter of a LlamaForCausalLM with this config.json)");
      auto [prev, fresh] = loaded_from.emplace(e.name, file);
      ATSPEED_ENSURE(Checkpoint, fresh, file, ": tensor '", e.name, "' also in ", prev->second);
      ATSPEED_ENSURE(Checkpoint, e.shape == it->second.sizes().vec(), file, ": tensor '", e.name, "' has shape ",
                     at::IntArrayRef(e.shape), ", config.json implies ", it->second.sizes());
      const at::Tensor t = reader.read(e.name);
      ATSPEED_ENSURE(Checkpoint, at::isFloatingType(t.scalar_type()), file, ": tensor '", e.name,
                     "' has non-float dtype ", e.dtype);
      it->second.copy_(t.to(it->second.scalar_type()));
    }
  }
  for (const auto& [name, _] : params)
    ATSPEED_ENSURE(Checkpoint, loaded_from.count(name), dir_or_file, ": missing tensor '", name, "'");
  model->eval();
  return model;
}

void save_hf_model(LlamaModelImpl& model, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  ATSPEED_ENSURE(Checkpoint, !ec, dir, ": cannot create directory: ", ec.message());
  std::map<std::string, at::Tensor> params;
  for (const auto& p : model.named_parameters()) params.emplace(p.key(), p.value().detach());
  // One model.safetensors (no shard limit) and config.json, as `convert --to-hf` writes them.
  write_hf_weights(model.options(), dir, std::numeric_limits<int64_t>::max(),
                   [&](const std::string& name) { return params.at(name); });
}

}  // namespace atspeed::model
