// A loaded dataset: the item catalogue and the three per-user splits (0-based ids).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/vocab/item_catalog.h"
#include "data/lcrec.h"

namespace atspeed {

struct DataConfig;

struct Dataset {
  std::string name;
  std::string dir;
  std::string index_path;
  std::shared_ptr<const ItemCatalog> catalog;
  UserSequences train, valid, test;  // same number of users in each

  int64_t num_users() const { return static_cast<int64_t>(train.size()); }
  int64_t num_items() const { return catalog->num_items(); }
};

// The split file names of the layout.
inline constexpr const char* kSplitNames[3] = {"train", "valid", "test"};
std::string split_path(const std::string& dir, const std::string& split);  // <dir>/sequential_<split>.txt

// The index file in `dir`: `index_file` when non-empty (relative to dir unless absolute), else the
// single file named *.LCRec*.json there. Error(Data) when none or several match.
std::string find_index_file(const std::string& dir, const std::string& index_file = "");

// Reads <dir>: the index and the three split files, checking that they agree (same users in every
// split). `name` defaults to the directory's base name.
Dataset load_dataset(const std::string& dir, const Vocabulary& vocab = Vocabulary(), const std::string& index_file = "",
                     const std::string& name = "");
// From the data config: reads data.dir, or for source = synthetic first (re)generates it there
// when it is absent or was made with other generator parameters.
Dataset load_dataset(const DataConfig& config);
// The vocabulary data.levels/codebook_size/tokenizer describe (text when data.tokenizer is set).
Vocabulary make_vocabulary(const DataConfig& config);

// Which dataset option to pick when none is given: "beauty" when its default directory
// (../shared/data/amazon/beauty relative to the working directory) exists, else "synthetic".
std::string default_data_option();

}  // namespace atspeed
