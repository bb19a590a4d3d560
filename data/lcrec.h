// Readers and writers of the LC-Rec data layout (SPEC §1.1):
//   <dir>/<ds>.LCRec-1e-3lr.json        {"<item id>": ["<a_12>", "<b_3>", "<c_200>", "<d_7>"], ...}
//   <dir>/sequential_{train,valid,test}.txt   one line per user: "uid item item ...", 1-based ids
// Everything read is validated; a problem is Error(Data) naming the file and the line (or key).
// In memory all ids are 0-based.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/io/text_file.h"  // read_text_file, write_text_file_atomic (used with these formats)
#include "core/vocab/item_catalog.h"

namespace atspeed {

// Per-user item sequences of one split, 0-based; user u is line u+1 of the file.
using UserSequences = std::vector<std::vector<int64_t>>;

// Reads an LC-Rec index. Keys must be exactly "0".."n-1"; each value holds `vocab.levels()` tokens
// "<x_N>" with x = 'a' + level and N in [0, codebook_size).
ItemCatalog read_lcrec_index(const std::string& path, const Vocabulary& vocab = Vocabulary());
// The same from the JSON text; `origin` names it in errors.
ItemCatalog parse_lcrec_index(const std::string& text, const std::string& origin, const Vocabulary& vocab = Vocabulary());
// Writes the index in the same format (keys in id order), atomically (temp file + rename).
void write_lcrec_index(const std::string& path, const ItemCatalog& catalog);

// Reads a sequential_*.txt file: line u must start with uid u (1-based) followed by 1-based item
// ids <= num_items, separated by single spaces. Returns 0-based sequences.
UserSequences read_split_file(const std::string& path, int64_t num_items);
// Writes the format back (1-based ids, a bare uid for an empty sequence), atomically.
void write_split_file(const std::string& path, const UserSequences& users);


}  // namespace atspeed
