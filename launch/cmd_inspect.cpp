// `atspeed inspect FILE.h5`: what a checkpoint holds (attributes, tensors with dtype, shape, L2
// norm and, for model parameters, their tensor-parallel split; parameter count), or with --config
// just its stored config, ready to redirect to a file.
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>
#include <sstream>

#include "core/io/checkpoint.h"
#include "core/model/llama.h"
#include "core/model/model_io.h"
#include "core/vocab/tokenizer.h"
#include "core/vocab/vocabulary.h"
#include "launch/commands.h"

namespace atspeed::launch {
namespace {

struct InspectOptions {
  std::string file;
  bool print_config = false;
  bool no_norms = false;
  int config_lines = 8;
};

// Tensors larger than this are normed in row blocks so inspect never holds a float64 copy of a
// whole embedding matrix.
constexpr int64_t kNormBlockBytes = 64ll << 20;

std::string format_shape(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

std::string format_count(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string format_value(const AttributeValue& value) {
  if (const auto* text = std::get_if<std::string>(&value)) {
    // Long or multi-line strings get a summary; the point is an overview.
    if (text->size() <= 80 && text->find('\n') == std::string::npos) return *text;
    return fmt::format("<string, {} bytes>", text->size());
  }
  if (const auto* i = std::get_if<int64_t>(&value)) return std::to_string(*i);
  return fmt::format("{:.8g}", std::get<double>(value));
}

// L2 norm accumulated in float64 whatever the stored dtype.
double l2_norm(const CheckpointReader& reader, const TensorInfo& info, int64_t element_size) {
  const int64_t bytes = info.numel() * element_size;
  if (info.shape.empty() || info.shape[0] <= 1 || bytes <= kNormBlockBytes)
    return reader.read(info.name).to(at::kDouble).norm().item<double>();
  const int64_t row_bytes = std::max<int64_t>(1, bytes / info.shape[0]);
  const int64_t rows = std::max<int64_t>(1, kNormBlockBytes / row_bytes);
  double sum_squares = 0;
  for (int64_t begin = 0; begin < info.shape[0]; begin += rows) {
    const int64_t end = std::min(info.shape[0], begin + rows);
    sum_squares += reader.read_block(info.name, 0, begin, end).to(at::kDouble).pow(2).sum().item<double>();
  }
  return std::sqrt(sum_squares);
}

// Model parameters sit at the root under their HF names; optimizer moments and trainer state in groups.
bool is_model_parameter(const std::string& name) {
  return name.find('/') == std::string::npos && (name.rfind("model.", 0) == 0 || name.rfind("lm_head.", 0) == 0);
}

int64_t element_size(const std::string& dtype) {
  if (dtype == "float64" || dtype == "int64") return 8;
  if (dtype == "float32" || dtype == "int32") return 4;
  if (dtype == "bfloat16" || dtype == "float16" || dtype == "int16") return 2;
  return 1;
}

void run_inspect(const InspectOptions& options) {
  CheckpointReader reader(options.file);
  const auto& attrs = reader.attributes();
  if (options.print_config) {
    std::cout << attrs.config_yaml;
    if (!attrs.config_yaml.empty() && attrs.config_yaml.back() != '\n') std::cout << '\n';
    return;
  }

  std::cout << "checkpoint:     " << reader.path() << "\n";
  std::cout << "format_version: " << attrs.format_version << "\n";
  std::cout << "kind:           " << (attrs.kind.empty() ? "(none)" : attrs.kind) << "\n";
  std::cout << "fingerprint:    " << (attrs.fingerprint.empty() ? "(none)" : attrs.fingerprint) << "\n";
  std::vector<std::string> lines;
  {
    std::istringstream in(attrs.config_yaml);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
  }
  std::cout << "config_yaml:    " << attrs.config_yaml.size() << " bytes, " << lines.size() << " lines";
  if (!lines.empty()) {
    const size_t shown = std::min<size_t>(lines.size(), options.config_lines);
    std::cout << (shown < lines.size() ? fmt::format(" (first {}; --config prints it all)", shown) : "") << "\n";
    for (size_t i = 0; i < shown; ++i) std::cout << "    " << lines[i] << "\n";
  } else {
    std::cout << "\n";
  }

  auto print_attributes = [&](const std::string& group, const std::string& title) {
    auto values = reader.group_attributes(group);
    if (group.empty())
      for (const char* fixed : {"format_version", "kind", "config_yaml", "fingerprint"}) values.erase(fixed);
    if (values.empty()) return;
    std::cout << title << "\n";
    for (const auto& [key, value] : values) std::cout << "  " << key << ": " << format_value(value) << "\n";
  };
  print_attributes("", "attributes:");
  for (const auto& group : reader.groups()) print_attributes(group, "group " + group + ":");
  // The vocabulary: tokenizer-free, or the LC-Rec tokenizer inside (kind, size, code-token ids).
  if (auto tok_files = model::read_tokenizer(reader)) {
    auto tok = std::make_shared<const TextTokenizer>(*tok_files);
    const Vocabulary vocab = Vocabulary::with_tokenizer(tok);
    const auto [lo, hi] = vocab.code_token_range();
    std::cout << "tokenizer:      sentencepiece (inside the checkpoint), " << tok->sentencepiece_size() << " pieces + "
              << tok->size() - tok->sentencepiece_size() << " added = " << tok->size() << " tokens, "
              << vocab.num_code_tokens() << " code tokens <a_*>..<" << static_cast<char>('a' + vocab.levels() - 1)
              << "_*> at ids [" << lo << ", " << hi << "), " << tok->fingerprint() << "\n";
  } else {
    std::cout << "tokenizer:      none (tokenizer-free vocabulary)\n";
  }

  const auto tensors = reader.list();
  // The tp_split column says how tensor parallelism (dist.tp) shards each weight (column: output
  // features, row: input features, none: replicated); shown only for files holding a model.
  const bool model_file =
      std::any_of(tensors.begin(), tensors.end(), [](const TensorInfo& t) { return is_model_parameter(t.name); });
  size_t name_width = 4, dtype_width = 5, shape_width = 5;
  std::vector<std::string> shapes;
  for (const auto& info : tensors) {
    shapes.push_back(format_shape(info.shape));
    name_width = std::max(name_width, info.name.size());
    dtype_width = std::max(dtype_width, info.dtype.size());
    shape_width = std::max(shape_width, shapes.back().size());
  }
  const std::string tp_header = model_file ? fmt::format("{:<8}  ", "tp_split") : "";
  std::cout << "tensors:\n";
  std::cout << fmt::format("  {:<{}}  {:<{}}  {:<{}}  {}{}\n", "name", name_width, "dtype", dtype_width, "shape",
                           shape_width, tp_header, options.no_norms ? "" : "l2_norm");
  int64_t total = 0, parameters = 0, parameter_tensors = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& info = tensors[i];
    const std::string norm =
        options.no_norms ? "" : fmt::format("{:.6g}", l2_norm(reader, info, element_size(info.dtype)));
    std::string tp;
    if (model_file)
      tp = fmt::format("{:<8}  ", is_model_parameter(info.name) ? model::to_string(model::tp_split_of(info.name)) : "-");
    std::cout << fmt::format("  {:<{}}  {:<{}}  {:<{}}  {}{}\n", info.name, name_width, info.dtype, dtype_width,
                             shapes[i], shape_width, tp, norm);
    total += info.numel();
    // Model parameters live at the root; optimizer moments and trainer state live in groups.
    if (info.name.find('/') == std::string::npos) {
      parameters += info.numel();
      ++parameter_tensors;
    }
  }
  std::cout << fmt::format("total: {} tensors, {} elements; parameters (root tensors): {} in {} tensors\n",
                           tensors.size(), format_count(total), format_count(parameters), parameter_tensors);
}

const RegisterCommand kRegisterInspect([](CLI::App& app) {
  auto options = std::make_shared<InspectOptions>();
  auto* cmd = app.add_subcommand("inspect", "show a checkpoint's attributes and tensors (name, dtype, shape, L2 norm)");
  cmd->add_option("file", options->file, "checkpoint file (.h5)")->required();
  cmd->add_flag("--config", options->print_config, "print only the stored config yaml, in full");
  cmd->add_flag("--no-norms", options->no_norms, "skip the L2 norms (reads no tensor data)");
  cmd->add_option("--config-lines", options->config_lines, "config lines shown in the overview")->capture_default_str();
  cmd->callback([options]() { run_inspect(*options); });
});

}  // namespace
}  // namespace atspeed::launch
