#include "data/dataset.h"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "core/errors.h"
#include "data/data_config.h"
#include "core/vocab/tokenizer.h"
#include "data/synth.h"

namespace fs = std::filesystem;

namespace atspeed {

std::string split_path(const std::string& dir, const std::string& split) {
  return (fs::path(dir) / ("sequential_" + split + ".txt")).string();
}

std::string find_index_file(const std::string& dir, const std::string& index_file) {
  if (!index_file.empty()) {
    const fs::path p = fs::path(index_file).is_absolute() ? fs::path(index_file) : fs::path(dir) / index_file;
    ATSPEED_ENSURE(Data, fs::exists(p), "index file ", p.string(), " does not exist");
    return p.string();
  }
  ATSPEED_ENSURE(Data, fs::is_directory(dir), "dataset directory ", dir, " does not exist",
                 fs::path(dir).is_relative() ? " (relative paths are taken from the working directory " +
                                                   fs::current_path().string() + ")"
                                             : std::string());
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (e.is_regular_file() && n.find(".LCRec") != std::string::npos && n.size() > 5 &&
        n.substr(n.size() - 5) == ".json")
      found.push_back(e.path().string());
  }
  ATSPEED_ENSURE(Data, !found.empty(), dir, ": no semantic-ID index (*.LCRec*.json) found; set data.index_file");
  std::sort(found.begin(), found.end());
  ATSPEED_ENSURE(Data, found.size() == 1, dir, ": several *.LCRec*.json files (", found.front(), ", ", found[1],
                 ", ...); set data.index_file");
  return found.front();
}

Dataset load_dataset(const std::string& dir, const Vocabulary& vocab, const std::string& index_file,
                     const std::string& name) {
  Dataset ds;
  ds.dir = dir;
  ds.name = name.empty() ? fs::path(dir).lexically_normal().filename().string() : name;
  if (ds.name.empty()) ds.name = fs::path(dir).lexically_normal().parent_path().filename().string();
  ds.index_path = find_index_file(dir, index_file);
  ds.catalog = std::make_shared<const ItemCatalog>(read_lcrec_index(ds.index_path, vocab));
  const int64_t n_items = ds.catalog->num_items();
  ds.train = read_split_file(split_path(dir, "train"), n_items);
  ds.valid = read_split_file(split_path(dir, "valid"), n_items);
  ds.test = read_split_file(split_path(dir, "test"), n_items);
  ATSPEED_ENSURE(Data, ds.valid.size() == ds.train.size() && ds.test.size() == ds.train.size(), dir,
                 ": the split files disagree on the number of users (train ", ds.train.size(), ", valid ",
                 ds.valid.size(), ", test ", ds.test.size(), " lines)");
  ATSPEED_ENSURE(Data, !ds.train.empty(), split_path(dir, "train"), ": no users");
  return ds;
}

Vocabulary make_vocabulary(const DataConfig& config) {
  std::shared_ptr<const TextTokenizer> tok = config.checkpoint_tokenizer;
  if (!config.tokenizer.empty()) {
    auto from_dir = TextTokenizer::load_dir(config.tokenizer);
    ATSPEED_ENSURE(Config, !tok || tok->fingerprint() == from_dir->fingerprint(), "data.tokenizer: ", config.tokenizer,
                   " (", from_dir->describe(), ") is not the tokenizer inside the checkpoint (", tok ? tok->describe() : "",
                   "); leave data.tokenizer unset to use the checkpoint's");
    tok = std::move(from_dir);
  }
  if (config.layout().is_text()) {
    ATSPEED_ENSURE(Config, tok != nullptr, "data.prompt_format: lcrec is the LC-Rec text prompt and needs a tokenizer: "
                   "set data.tokenizer=DIR (an HF tokenizer directory) or load a converted checkpoint that carries one");
    return Vocabulary::with_tokenizer(std::move(tok), config.levels, config.codebook_size);
  }
  ATSPEED_ENSURE(Config, tok == nullptr, "data.prompt_format: ", config.prompt_format,
                 " is a tokenizer-free layout, but a tokenizer was given (set data.prompt_format=lcrec)");
  return Vocabulary(config.levels, config.codebook_size);
}

Dataset load_dataset(const DataConfig& config) {
  const Vocabulary vocab = make_vocabulary(config);
  if (config.source == "synthetic") ensure_synthetic_dataset(config.dir, config.synthetic, vocab);
  return load_dataset(config.dir, vocab, config.index_file, config.name);
}

std::string default_data_option() {
  return fs::is_directory("../shared/data/amazon/beauty") ? "beauty" : "synthetic";
}

}  // namespace atspeed
