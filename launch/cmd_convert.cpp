// `atspeed convert`: HuggingFace LLaMA checkpoints (optionally + a PEFT LoRA adapter + an LC-Rec
// tokenizer) <-> our HDF5 checkpoints, streamed tensor by tensor.
//   atspeed convert --from HF_DIR_OR_FILE [--lora ADAPTER_DIR] [--tokenizer DIR|none] --out FILE.h5
//                   [--kind target|draft] [--dtype float32|bfloat16]
//   atspeed convert --from FILE.h5 --to-hf DIR [--dtype float32|bfloat16] [--max-shard-size 5GB]
// The work (config mapping, LoRA merge, shards, tokenizer) is in core/model/hf_import.h.
#include <spdlog/spdlog.h>

#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "core/errors.h"
#include "core/model/hf_import.h"
#include "core/model/model_io.h"
#include "launch/commands.h"

namespace atspeed::launch {
namespace {

struct ConvertOptions {
  model::HfImportOptions import;
  std::string out;
  std::string to_hf;
  std::string dtype;  // empty: keep the source's
  std::string max_shard_size = "5GB";
};

std::string megabytes(int64_t bytes) { return std::to_string((bytes + 500000) / 1000000) + " MB"; }

void import_hf(ConvertOptions& o) {
  if (!o.dtype.empty()) o.import.dtype = o.dtype;
  const model::HfImportReport r = model::import_hf_checkpoint(o.import, o.out);
  std::cout << "wrote " << o.out << ": " << o.import.kind << " model '" << r.config.name << "', "
            << model::parameter_count(model::LlamaOptions::from_config(r.config)) << " parameters, " << r.config.dtype
            << ", " << r.tensors << " tensors (largest " << megabytes(r.largest_tensor_bytes) << ")\n";
  if (!o.import.lora.empty())
    std::cout << "  LoRA " << o.import.lora << ": merged into " << r.lora_merged << " weights, " << r.replaced
              << " taken whole (modules_to_save)\n";
  if (!r.tokenizer.empty()) std::cout << "  tokenizer " << r.tokenizer_dir << " (inside the checkpoint): " << r.tokenizer << "\n";
  else std::cout << "  no tokenizer (tokenizer-free model)\n";
}

void export_hf(const ConvertOptions& o) {
  std::optional<std::string> dtype;
  if (!o.dtype.empty()) dtype = o.dtype;
  const model::HfExportReport r = model::export_hf_checkpoint(o.import.from, o.to_hf, dtype, model::parse_shard_size(o.max_shard_size));
  std::cout << "wrote " << o.to_hf << ": config.json, " << r.shards.size() << " safetensors file(s)"
            << (r.shards.size() > 1 ? " + model.safetensors.index.json" : "")
            << (r.tokenizer ? ", tokenizer files" : "") << ": model '" << r.config.name << "', " << r.config.dtype
            << " (largest tensor " << megabytes(r.largest_tensor_bytes) << ")\n";
}

const RegisterCommand kRegisterConvert([](CLI::App& app) {
  auto o = std::make_shared<ConvertOptions>();
  auto* cmd = app.add_subcommand(
      "convert", "import a HuggingFace LLaMA checkpoint (+ LoRA adapter, + tokenizer) into HDF5, or export one back");
  cmd->add_option("--from", o->import.from,
                  "source: an HF checkpoint directory (config.json + model.safetensors or shards with "
                  "model.safetensors.index.json) or its .safetensors/.index.json file; with --to-hf, an .h5 checkpoint")
      ->required();
  auto* out = cmd->add_option("--out", o->out, "HDF5 checkpoint to write (import)");
  auto* to_hf = cmd->add_option("--to-hf", o->to_hf,
                                "directory to write config.json, safetensors shards and the tokenizer files into (export)");
  out->excludes(to_hf);
  to_hf->excludes(out);
  cmd->add_option("--lora", o->import.lora,
                  "PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors/.bin) to merge: "
                  "W + (lora_alpha / r) B A; modules_to_save tensors replace the base's");
  cmd->add_option("--tokenizer", o->import.tokenizer,
                  "HF tokenizer directory to embed (tokenizer.model + tokenizer_config.json/added_tokens.json); "
                  "default: the adapter's directory if it has one, else the checkpoint's; 'none' for no tokenizer");
  cmd->add_option("--kind", o->import.kind, "checkpoint kind written on import")
      ->check(CLI::IsMember({"target", "draft"}))
      ->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "parameter dtype to write (default: the source's; float16 becomes float32)")
      ->check(CLI::IsMember({"float32", "bfloat16"}));
  cmd->add_option("--max-shard-size", o->max_shard_size,
                  "export: largest safetensors shard (decimal units, as transformers' max_shard_size)")
      ->capture_default_str();
  cmd->callback([o]() {
    if (o->out.empty() && o->to_hf.empty()) throw CLI::ValidationError("convert", "give --out FILE.h5 or --to-hf DIR");
    if (!o->out.empty() && o->import.from.ends_with(".h5"))
      throw CLI::ValidationError("convert", "--from is an HDF5 checkpoint: export it with --to-hf DIR");
    if (o->out.empty()) {
      if (!o->import.lora.empty() || !o->import.tokenizer.empty())
        throw CLI::ValidationError("convert", "--lora and --tokenizer are for imports (--out); an export writes the "
                                              "checkpoint's own tokenizer");
      export_hf(*o);
    } else {
      import_hf(*o);
    }
  });
});

}  // namespace
}  // namespace atspeed::launch
