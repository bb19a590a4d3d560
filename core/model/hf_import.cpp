#include "core/model/hf_import.h"

#include <spdlog/spdlog.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "core/errors.h"
#include "core/io/checkpoint.h"
#include "core/io/safetensors.h"
#include "core/io/text_file.h"
#include "core/model/hf_checkpoint.h"
#include "core/model/model_io.h"
#include "core/vocab/tokenizer.h"
#include "core/vocab/vocabulary.h"

namespace atspeed::model {
namespace fs = std::filesystem;
using json = nlohmann::json;

void HfImportOptions::validate() const {
  ATSPEED_ENSURE(Usage, !from.empty(), "convert: --from is required");
  ATSPEED_ENSURE(Usage, kind == "target" || kind == "draft", "convert: --kind must be target or draft (got '", kind, "')");
  ATSPEED_ENSURE(Usage, !dtype || *dtype == "float32" || *dtype == "bfloat16",
                 "convert: --dtype must be float32 or bfloat16 (got '", dtype.value_or(""), "')");
  ATSPEED_ENSURE(Usage, lora.empty() || fs::is_directory(lora), "convert: --lora ", lora, ": not a directory");
  ATSPEED_ENSURE(Usage, tokenizer.empty() || tokenizer == "none" || fs::is_directory(tokenizer), "convert: --tokenizer ",
                 tokenizer, ": not a directory");
}

int64_t parse_shard_size(const std::string& text) {
  size_t pos = 0;
  double value = 0;
  try {
    value = std::stod(text, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  const std::string unit = text.substr(pos);
  double scale = 0;
  if (unit.empty() || unit == "B") scale = 1;
  else if (unit == "KB") scale = 1e3;
  else if (unit == "MB") scale = 1e6;
  else if (unit == "GB") scale = 1e9;
  ATSPEED_ENSURE(Usage, pos > 0 && scale > 0 && value > 0, "--max-shard-size '", text,
                 "': expected a size like 5GB, 500MB or a byte count");
  return static_cast<int64_t>(value * scale);
}

std::vector<std::pair<std::string, std::vector<int64_t>>> llama_parameter_shapes(const ModelConfig& c) {
  const int64_t h = c.hidden_size, hd = c.head_dim(), inter = c.intermediate_size;
  const int64_t q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  out.push_back({"model.embed_tokens.weight", {c.vocab_size, h}});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    out.push_back({p + "self_attn.q_proj.weight", {q, h}});
    out.push_back({p + "self_attn.k_proj.weight", {kv, h}});
    out.push_back({p + "self_attn.v_proj.weight", {kv, h}});
    out.push_back({p + "self_attn.o_proj.weight", {h, q}});
    out.push_back({p + "mlp.gate_proj.weight", {inter, h}});
    out.push_back({p + "mlp.up_proj.weight", {inter, h}});
    out.push_back({p + "mlp.down_proj.weight", {h, inter}});
    out.push_back({p + "input_layernorm.weight", {h}});
    out.push_back({p + "post_attention_layernorm.weight", {h}});
  }
  out.push_back({"model.norm.weight", {h}});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, h}});
  return out;
}

namespace {

const char* const kMergeScript = "tools/merge_lcrec_lora.py";

// A PEFT LoRA adapter, keyed by our parameter names.
struct LoraAdapter {
  std::string dir;
  std::string weights_file;
  double scale = 0.0;                     // lora_alpha / r (or / sqrt(r)), for the configured r
  double alpha = 0.0;
  bool rslora = false;
  std::map<std::string, at::Tensor> a;    // "model.layers.0.self_attn.q_proj.weight" -> [r, in]
  std::map<std::string, at::Tensor> b;    //                                             [out, r]
  std::map<std::string, at::Tensor> full; // whole replacement tensors (modules_to_save)

  double scale_for(int64_t r) const { return rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r); }
};

json read_json_file(const std::string& path) {
  try {
    return json::parse(read_text_file(path));
  } catch (const json::exception& e) {
    ATSPEED_THROW(Checkpoint, path, ": not valid JSON: ", e.what());
  }
}

std::map<std::string, at::Tensor> read_adapter_tensors(const std::string& dir, std::string& file) {
  const fs::path st = fs::path(dir) / "adapter_model.safetensors", bin = fs::path(dir) / "adapter_model.bin";
  if (fs::exists(st)) {
    file = st.string();
    return load_safetensors(file);
  }
  ATSPEED_ENSURE(Checkpoint, fs::exists(bin), dir, ": neither adapter_model.safetensors nor adapter_model.bin");
  file = bin.string();
  std::ifstream in(bin, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  c10::IValue v;
  try {
    v = torch::pickle_load(bytes);
  } catch (const std::exception& e) {
    ATSPEED_THROW(Checkpoint, file, ": cannot read it as a torch.save file: ", e.what());
  }
  ATSPEED_ENSURE(Checkpoint, v.isGenericDict(), file, ": expected a dict of tensors (a PEFT state dict)");
  std::map<std::string, at::Tensor> out;
  for (const auto& kv : v.toGenericDict()) {
    ATSPEED_ENSURE(Checkpoint, kv.key().isString() && kv.value().isTensor(), file,
                   ": expected a dict of name -> tensor");
    out.emplace(kv.key().toStringRef(), kv.value().toTensor());
  }
  return out;
}

LoraAdapter read_adapter(const std::string& dir, const std::set<std::string>& param_names) {
  LoraAdapter ad;
  ad.dir = dir;
  const std::string cfg_path = (fs::path(dir) / "adapter_config.json").string();
  ATSPEED_ENSURE(Checkpoint, fs::exists(cfg_path), dir, ": no adapter_config.json (not a PEFT adapter directory)");
  const json cfg = read_json_file(cfg_path);
  auto field = [&](const char* key) -> const json& {
    ATSPEED_ENSURE(Checkpoint, cfg.contains(key), cfg_path, ": missing ", key);
    return cfg[key];
  };
  const std::string peft_type = field("peft_type").get<std::string>();
  ATSPEED_ENSURE(Checkpoint, peft_type == "LORA", cfg_path, ": peft_type ", peft_type, " is not supported (LORA only)");
  const json& r = field("r");
  const json& alpha = field("lora_alpha");
  ATSPEED_ENSURE(Checkpoint, r.is_number_integer() && r.get<int64_t>() > 0, cfg_path, ": r must be a positive integer");
  ATSPEED_ENSURE(Checkpoint, alpha.is_number(), cfg_path, ": lora_alpha must be a number");
  ad.alpha = alpha.get<double>();
  auto flag = [&](const char* key) { return cfg.contains(key) && cfg[key].is_boolean() && cfg[key].get<bool>(); };
  ad.rslora = flag("use_rslora");
  ad.scale = ad.scale_for(r.get<int64_t>());
  ATSPEED_ENSURE(Checkpoint, !flag("use_dora"), cfg_path, ": use_dora: DoRA adapters are not supported");
  ATSPEED_ENSURE(Checkpoint, !flag("fan_in_fan_out"), cfg_path,
                 ": fan_in_fan_out: true is for Conv1D (GPT-2) layers, which LLaMA has none of");
  const std::string bias = cfg.contains("bias") && cfg["bias"].is_string() ? cfg["bias"].get<std::string>() : "none";
  ATSPEED_ENSURE(Checkpoint, bias == "none", cfg_path, ": bias '", bias, "': LoRA bias terms are not supported (LLaMA has no biases)");
  ATSPEED_ENSURE(Checkpoint, !cfg.contains("alpha_pattern") || cfg["alpha_pattern"].is_null() || cfg["alpha_pattern"].empty(),
                 cfg_path, ": alpha_pattern (per-module lora_alpha) is not supported");

  std::map<std::string, at::Tensor> tensors = read_adapter_tensors(dir, ad.weights_file);
  for (auto& [key, t] : tensors) {
    // PEFT saves "base_model.model.<our name>", with the adapter name ("default") removed; accept it left in.
    std::string name = key;
    for (const char* prefix : {"base_model.model.", "base_model."}) {
      if (name.rfind(prefix, 0) == 0) {
        name = name.substr(std::string(prefix).size());
        break;
      }
    }
    for (const std::string adapter : {".modules_to_save.default.", ".modules_to_save.", ".default."}) {
      const size_t at = name.find(adapter);
      if (at != std::string::npos) name = name.substr(0, at) + "." + name.substr(at + adapter.size());
    }
    auto strip = [&](const std::string& suffix, std::map<std::string, at::Tensor>& into) {
      if (!name.ends_with(suffix)) return false;
      const std::string param = name.substr(0, name.size() - suffix.size()) + ".weight";
      ATSPEED_ENSURE(Checkpoint, param_names.count(param), ad.weights_file, ": '", key, "' adapts ", param,
                     ", which is not a weight of this model");
      ATSPEED_ENSURE(Checkpoint, t.dim() == 2, ad.weights_file, ": '", key, "' is not a matrix");
      into[param] = t.to(at::kFloat);
      return true;
    };
    if (strip(".lora_A.weight", ad.a) || strip(".lora_B.weight", ad.b)) continue;
    ATSPEED_ENSURE(Checkpoint, name.find("lora_embedding") == std::string::npos, ad.weights_file, ": '", key,
                   "': LoRA on the embedding is not supported (PEFT target_modules with embed_tokens)");
    ATSPEED_ENSURE(Checkpoint, param_names.count(name), ad.weights_file, ": unknown adapter tensor '", key,
                   "' (neither a lora_A/lora_B pair nor a weight of this model; DoRA magnitudes and LoRA biases are "
                   "not supported)");
    ad.full[name] = t;
  }
  for (const auto& [param, a] : ad.a) {
    auto it = ad.b.find(param);
    ATSPEED_ENSURE(Checkpoint, it != ad.b.end(), ad.weights_file, ": ", param, " has lora_A but no lora_B");
    ATSPEED_ENSURE(Checkpoint, it->second.size(1) == a.size(0), ad.weights_file, ": ", param, ": lora_B ", it->second.sizes(),
                   " and lora_A ", a.sizes(), " disagree on the rank");
  }
  for (const auto& [param, b] : ad.b)
    ATSPEED_ENSURE(Checkpoint, ad.a.count(param), ad.weights_file, ": ", param, " has lora_B but no lora_A");
  return ad;
}

// Where each tensor of a (possibly sharded) HF checkpoint lives.
struct HfSource {
  std::vector<std::unique_ptr<SafetensorsReader>> readers;
  std::map<std::string, const SafetensorsReader*> where;

  explicit HfSource(const HfCheckpointFiles& files) {
    for (const std::string& f : files.weights) {
      readers.push_back(std::make_unique<SafetensorsReader>(f));
      for (const SafetensorsEntry& e : readers.back()->list()) {
        auto [prev, fresh] = where.emplace(e.name, readers.back().get());
        ATSPEED_ENSURE(Checkpoint, fresh, f, ": tensor '", e.name, "' also in ", prev->second->path());
      }
    }
  }
};

std::string resolve_tokenizer_dir(const HfImportOptions& o) {
  if (o.tokenizer == "none") return "";
  if (!o.tokenizer.empty()) return o.tokenizer;
  if (!o.lora.empty() && TokenizerFiles::dir_has_tokenizer(o.lora)) return o.lora;
  const fs::path from(o.from);
  const std::string dir = fs::is_directory(from) ? from.string() : from.parent_path().string();
  return TokenizerFiles::dir_has_tokenizer(dir) ? dir : "";
}

// The parameters' dtype as a LlamaModel of this config has it.
at::ScalarType param_dtype(const ModelConfig& mc) { return LlamaOptions::from_config(mc).param_dtype; }

int64_t tensor_bytes(const std::vector<int64_t>& shape, at::ScalarType dtype) {
  int64_t n = static_cast<int64_t>(at::elementSize(dtype));
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

int64_t largest_parameter_bytes(const ModelConfig& config) {
  int64_t largest = 0;
  const at::ScalarType dtype = param_dtype(config);
  for (const auto& [name, shape] : llama_parameter_shapes(config)) largest = std::max(largest, tensor_bytes(shape, dtype));
  return largest;
}

HfImportReport import_hf_checkpoint(const HfImportOptions& o, const std::string& out) {
  o.validate();
  const HfCheckpointFiles files = find_hf_checkpoint(o.from);
  ModelConfig mc = model_config_from_hf_json(files.config_json);
  if (o.dtype) mc.dtype = *o.dtype;
  const int64_t base_vocab = mc.vocab_size;
  HfImportReport report;

  // The tokenizer decides the vocabulary size when it is larger (LC-Rec's resize).
  report.tokenizer_dir = resolve_tokenizer_dir(o);
  std::shared_ptr<const TextTokenizer> tok;
  int64_t vocab = base_vocab;
  if (!report.tokenizer_dir.empty()) {
    tok = TextTokenizer::load_dir(report.tokenizer_dir);
    report.tokenizer = Vocabulary::with_tokenizer(tok).describe();
    ATSPEED_ENSURE(Checkpoint, tok->size() >= base_vocab, report.tokenizer_dir, ": the tokenizer has ", tok->size(),
                   " tokens but ", files.config_json, " says vocab_size ", base_vocab,
                   " (a model whose vocabulary is larger than its tokenizer is not supported)");
    vocab = tok->size();
  }

  std::set<std::string> base_names;
  for (const auto& [name, shape] : llama_parameter_shapes(mc)) base_names.insert(name);
  std::optional<LoraAdapter> adapter;
  if (!o.lora.empty()) adapter = read_adapter(o.lora, base_names);
  if (adapter && report.tokenizer_dir.empty()) {
    // No tokenizer: the adapter's full embedding (if any) says how large the vocabulary became.
    auto it = adapter->full.find("model.embed_tokens.weight");
    if (it != adapter->full.end()) vocab = it->second.size(0);
  }
  mc.vocab_size = vocab;

  // Rows beyond the base vocabulary must come from the adapter.
  if (vocab > base_vocab) {
    std::vector<std::string> missing;
    for (const char* name : {"model.embed_tokens.weight", "lm_head.weight"}) {
      if (mc.tie_word_embeddings && std::string(name) == "lm_head.weight") continue;
      if (!adapter || !adapter->full.count(name)) missing.push_back(name);
    }
    if (!missing.empty()) {
      std::string names;
      for (const auto& m : missing) names += (names.empty() ? "" : " and ") + m;
      ATSPEED_THROW(Checkpoint, "rows ", base_vocab, "..", vocab - 1, " of ", names, " (the ", vocab - base_vocab,
                    " tokens added to the tokenizer at ", report.tokenizer_dir, ") are in neither ", o.from,
                    " (vocab_size ", base_vocab, ") nor ", o.lora.empty() ? std::string("an adapter") : o.lora,
                    " (no modules_to_save). AtSpeed/LC-Rec adapters regenerate those rows at load time from a seed "
                    "(set_seed(42); resize_token_embeddings), so they exist nowhere on disk: run ",
                    kMergeScript, " --base ", o.from, o.lora.empty() ? "" : " --adapter " + o.lora,
                    " --out MERGED_DIR (python from `bash tools/lcrec_fixture_venv.sh`; add --device cuda "
                    "--dtype float16 on a GPU to draw the rows as the reference did), which reproduces the "
                    "reference's load order and merge, then convert MERGED_DIR");
    }
  }

  CheckpointAttributes attrs;
  attrs.kind = o.kind;
  // The model section; a text model also records its prompt layout, since the tokenizer inside
  // only makes sense with the LC-Rec text prompt.
  attrs.config_yaml = model_config_yaml(mc) + (tok ? "data:\n  prompt_format: lcrec\n" : "");
  attrs.strings["converted_from"] = fs::absolute(o.from).lexically_normal().string();
  if (!o.lora.empty()) attrs.strings["lora_adapter"] = fs::absolute(o.lora).lexically_normal().string();
  // Like --to-hf, the output's directory is created as needed.
  if (const fs::path parent = fs::path(out).parent_path(); !parent.empty()) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    ATSPEED_ENSURE(Checkpoint, !ec, out, ": cannot create directory ", parent.string(), ": ", ec.message());
  }
  CheckpointWriter writer(out, attrs);

  HfSource source(files);
  const at::ScalarType out_type = param_dtype(mc);
  std::set<std::string> used;
  const auto shapes = llama_parameter_shapes(mc);
  torch::NoGradGuard no_grad;
  for (const auto& [name, shape] : shapes) {
    at::Tensor t;
    if (adapter && adapter->full.count(name)) {
      t = adapter->full.at(name);
      ++report.replaced;
      if (source.where.count(name)) used.insert(name);
    } else {
      auto it = source.where.find(name);
      ATSPEED_ENSURE(Checkpoint, it != source.where.end(), o.from, ": missing tensor '", name, "'");
      used.insert(name);
      t = it->second->read(name);
      ATSPEED_ENSURE(Checkpoint, at::isFloatingType(t.scalar_type()), it->second->path(), ": tensor '", name,
                     "' has non-float dtype ", t.scalar_type());
    }
    // A base embedding of base_vocab rows in a model of vocab rows is the missing-rows case refused above.
    ATSPEED_ENSURE(Checkpoint, t.sizes().vec() == shape, o.from, ": tensor '", name, "' has shape ", t.sizes(),
                   ", the config implies ", at::IntArrayRef(shape));
    if (adapter && adapter->a.count(name)) {
      const at::Tensor& a = adapter->a.at(name);
      const at::Tensor& b = adapter->b.at(name);
      ATSPEED_ENSURE(Checkpoint, b.size(0) == shape[0] && a.size(1) == shape[1], adapter->weights_file, ": ", name,
                     ": lora_B ", b.sizes(), " x lora_A ", a.sizes(), " does not make the weight's shape ",
                     at::IntArrayRef(shape));
      t = t.to(at::kFloat).add(at::matmul(b, a), adapter->scale_for(a.size(0)));
      ++report.lora_merged;
    }
    writer.write(name, t.to(out_type).contiguous());
    ++report.tensors;
  }
  for (const auto& [name, reader] : source.where) {
    if (used.count(name) || name.ends_with(".rotary_emb.inv_freq")) continue;
    if (mc.tie_word_embeddings && name == "lm_head.weight") continue;
    ATSPEED_THROW(Checkpoint, reader->path(), ": unexpected tensor '", name,
                  "' (not a parameter of a LlamaForCausalLM with this config.json)");
  }
  if (tok) write_tokenizer(writer, *tok);
  writer.commit();
  report.config = mc;
  report.largest_tensor_bytes = largest_parameter_bytes(mc);
  return report;
}

std::vector<std::string> write_hf_weights(const ModelConfig& mc, const std::string& dir, int64_t max_shard_bytes,
                                          const std::function<at::Tensor(const std::string&)>& tensor) {
  // Plan the shards as transformers does: fill a shard until the next tensor would overflow it.
  const at::ScalarType dtype = param_dtype(mc);
  std::vector<std::vector<SafetensorsEntry>> shards(1);
  int64_t shard_bytes = 0;
  for (const auto& [name, shape] : llama_parameter_shapes(mc)) {
    const int64_t bytes = tensor_bytes(shape, dtype);
    if (!shards.back().empty() && shard_bytes + bytes > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    SafetensorsEntry e;
    e.name = name;
    e.dtype = dtype == at::kBFloat16 ? "BF16" : "F32";
    e.shape = shape;
    shards.back().push_back(std::move(e));
    shard_bytes += bytes;
  }
  const size_t n = shards.size();
  json weight_map = json::object();
  int64_t total = 0;
  std::vector<std::string> files;
  for (size_t i = 0; i < n; ++i) {
    char file[64];
    std::snprintf(file, sizeof file, "model-%05zu-of-%05zu.safetensors", i + 1, n);
    const std::string name = n == 1 ? "model.safetensors" : file;
    // transformers refuses safetensors files without format metadata.
    SafetensorsWriter w((fs::path(dir) / name).string(), shards[i], {{"format", "pt"}});
    for (const SafetensorsEntry& e : shards[i]) {
      w.write(e.name, tensor(e.name));
      weight_map[e.name] = name;
      total += tensor_bytes(e.shape, dtype);
    }
    w.commit();
    files.push_back(name);
  }
  if (n > 1) {
    const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_text_file_atomic((fs::path(dir) / "model.safetensors.index.json").string(), index.dump(2) + "\n");
  }
  write_text_file_atomic((fs::path(dir) / "config.json").string(), hf_json_from_model_config(mc));
  return files;
}

HfExportReport export_hf_checkpoint(const std::string& h5_path, const std::string& dir,
                                    const std::optional<std::string>& dtype, int64_t max_shard_bytes) {
  ATSPEED_ENSURE(Usage, max_shard_bytes > 0, "convert: --max-shard-size must be positive");
  CheckpointReader reader(h5_path);
  ModelConfig mc = model_config_from_checkpoint(reader);
  if (dtype) mc.dtype = *dtype;
  const at::ScalarType out_type = param_dtype(mc);
  HfExportReport report;

  for (const auto& [name, shape] : llama_parameter_shapes(mc)) {
    ATSPEED_ENSURE(Checkpoint, reader.contains(name), h5_path, ": missing tensor '", name, "'");
    ATSPEED_ENSURE(Checkpoint, reader.info(name).shape == shape, h5_path, ": tensor '", name, "' has shape ",
                   at::IntArrayRef(reader.info(name).shape), ", the config implies ", at::IntArrayRef(shape));
  }
  report.largest_tensor_bytes = largest_parameter_bytes(mc);
  std::error_code ec;
  fs::create_directories(dir, ec);
  ATSPEED_ENSURE(Checkpoint, !ec, dir, ": cannot create directory: ", ec.message());
  report.shards = write_hf_weights(mc, dir, max_shard_bytes, [&](const std::string& name) {
    return reader.read(name).to(out_type).contiguous();
  });
  if (auto tok = read_tokenizer(reader)) {
    tok->write_dir(dir);
    report.tokenizer = true;
  }
  report.config = mc;
  return report;
}

}  // namespace atspeed::model
