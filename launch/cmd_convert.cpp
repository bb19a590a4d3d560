// `atspeed convert`: HuggingFace LLaMA checkpoints <-> our HDF5 checkpoints.
//   atspeed convert --from HF_DIR_OR_FILE --out FILE.h5 [--kind target|draft] [--dtype float32|bfloat16]
//   atspeed convert --from FILE.h5 --to-hf DIR [--dtype float32|bfloat16]
// The work (config mapping, validation, shards) is in core/model/hf_checkpoint.h.
#include <spdlog/spdlog.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "core/errors.h"
#include "core/io/checkpoint.h"
#include "core/model/hf_checkpoint.h"
#include "core/model/model_io.h"
#include "launch/commands.h"

namespace atspeed::launch {
namespace {

struct ConvertOptions {
  std::string from;
  std::string out;
  std::string to_hf;
  std::string kind = "target";
  std::string dtype;  // empty: keep the source's
};

std::optional<std::string> dtype_override(const ConvertOptions& o) {
  if (o.dtype.empty()) return std::nullopt;
  return o.dtype;
}

void import_hf(const ConvertOptions& o) {
  model::LlamaModel m = model::load_hf_model(o.from, dtype_override(o));
  CheckpointAttributes attrs;
  attrs.kind = o.kind;
  // Only the model section: a converted model has no training or data config yet, and
  // load_model() needs nothing else.
  attrs.config_yaml = model::model_config_yaml(m->options());
  attrs.strings["converted_from"] = std::filesystem::absolute(o.from).lexically_normal().string();
  CheckpointWriter writer(o.out, attrs);
  model::write_parameters(writer, *m);
  writer.commit();
  std::cout << "wrote " << o.out << ": " << o.kind << " model '" << m->options().name << "', "
            << model::parameter_count(m->options()) << " parameters, " << m->options().dtype << "\n";
}

void export_hf(const ConvertOptions& o) {
  CheckpointReader reader(o.from);
  model::LlamaModel m = model::load_model(reader, dtype_override(o));
  model::save_hf_model(*m, o.to_hf);
  std::cout << "wrote " << o.to_hf << "/config.json and model.safetensors: model '" << m->options().name << "', "
            << model::parameter_count(m->options()) << " parameters, " << m->options().dtype << "\n";
}

const RegisterCommand kRegisterConvert([](CLI::App& app) {
  auto o = std::make_shared<ConvertOptions>();
  auto* cmd = app.add_subcommand("convert", "import a HuggingFace LLaMA checkpoint into HDF5, or export one back");
  cmd->add_option("--from", o->from,
                  "source: an HF checkpoint directory (config.json + model.safetensors or sharded with "
                  "model.safetensors.index.json) or its .safetensors/.index.json file; with --to-hf, an .h5 checkpoint")
      ->required();
  auto* out = cmd->add_option("--out", o->out, "HDF5 checkpoint to write (import)");
  auto* to_hf = cmd->add_option("--to-hf", o->to_hf, "directory to write config.json and model.safetensors into (export)");
  out->excludes(to_hf);
  to_hf->excludes(out);
  cmd->add_option("--kind", o->kind, "checkpoint kind written on import")
      ->check(CLI::IsMember({"target", "draft"}))
      ->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "parameter dtype to write (default: the source's; float16 becomes float32)")
      ->check(CLI::IsMember({"float32", "bfloat16"}));
  cmd->callback([o]() {
    if (o->out.empty() && o->to_hf.empty()) throw CLI::ValidationError("convert", "give --out FILE.h5 or --to-hf DIR");
    if (!o->out.empty() && o->from.ends_with(".h5"))
      throw CLI::ValidationError("convert", "--from is an HDF5 checkpoint: export it with --to-hf DIR");
    if (o->out.empty()) {
      export_hf(*o);
    } else {
      import_hf(*o);
    }
  });
});

}  // namespace
}  // namespace atspeed::launch
