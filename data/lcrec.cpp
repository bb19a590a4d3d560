#include "data/lcrec.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/errors.h"

namespace atspeed {

namespace {

// Parses a non-negative decimal integer that fills the whole string; -1 when it is not one.
int64_t parse_id(const std::string& s) {
  if (s.empty() || s.size() > 18) return -1;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  if (s.size() > 1 && s[0] == '0') return -1;  // "007" is not a canonical key
  return v;
}

}  // namespace

ItemCatalog read_lcrec_index(const std::string& path, const Vocabulary& vocab) {
  return parse_lcrec_index(read_text_file(path), path, vocab);
}

ItemCatalog parse_lcrec_index(const std::string& text, const std::string& path, const Vocabulary& vocab) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    ATSPEED_THROW(Data, path, ": not valid JSON: ", e.what());
  }
  ATSPEED_ENSURE(Data, doc.is_object(), path, ": expected a JSON object {\"<item id>\": [codes...]}");
  ATSPEED_ENSURE(Data, !doc.empty(), path, ": the index holds no items");
  const int levels = vocab.levels();
  const int64_t n = static_cast<int64_t>(doc.size());
  std::vector<int32_t> codes(static_cast<size_t>(n * levels), -1);
  std::vector<char> seen(static_cast<size_t>(n), 0);
  for (const auto& [key, value] : doc.items()) {
    const int64_t id = parse_id(key);
    ATSPEED_ENSURE(Data, id >= 0, path, ": key \"", key, "\" is not an item id (a decimal integer)");
    ATSPEED_ENSURE(Data, id < n, path, ": item ", id, " is out of range: the ", n,
                   " keys must be exactly 0..", n - 1);
    seen[static_cast<size_t>(id)] = 1;
    ATSPEED_ENSURE(Data, value.is_array() && static_cast<int>(value.size()) == levels, path, ": item ", id,
                   ": expected a list of ", levels, " code tokens, got ", value.dump());
    for (int l = 0; l < levels; ++l) {
      const auto& tok = value[static_cast<size_t>(l)];
      ATSPEED_ENSURE(Data, tok.is_string(), path, ": item ", id, ": code ", l + 1, " is not a string: ", tok.dump());
      const std::string& s = tok.get_ref<const std::string&>();
      const char letter = static_cast<char>('a' + l);
      const bool shaped = s.size() >= 5 && s[0] == '<' && s[2] == '_' && s.back() == '>';
      ATSPEED_ENSURE(Data, shaped, path, ": item ", id, ": token \"", s, "\" is not of the form <", letter, "_N>");
      ATSPEED_ENSURE(Data, s[1] == letter, path, ": item ", id, ": token \"", s, "\" at level ", l + 1,
                     " has the wrong prefix (expected <", letter, "_N>)");
      const int64_t code = parse_id(s.substr(3, s.size() - 4));
      ATSPEED_ENSURE(Data, code >= 0, path, ": item ", id, ": token \"", s, "\" has no valid code number");
      ATSPEED_ENSURE(Data, code < vocab.codebook_size(), path, ": item ", id, ": code ", code, " of token \"", s,
                     "\" is outside the codebook [0, ", vocab.codebook_size(), ")");
      codes[static_cast<size_t>(id * levels + l)] = static_cast<int32_t>(code);
    }
  }
  for (int64_t i = 0; i < n; ++i)
    ATSPEED_ENSURE(Data, seen[static_cast<size_t>(i)], path, ": item ", i, " is missing (keys must be 0..", n - 1, ")");
  return ItemCatalog(vocab, std::move(codes));
}

void write_lcrec_index(const std::string& path, const ItemCatalog& catalog) {
  // Written by hand to keep the keys in id order (nlohmann's object sorts keys as strings).
  std::string out = "{";
  const auto& vocab = catalog.vocab();
  for (int64_t i = 0; i < catalog.num_items(); ++i) {
    out += (i ? ", \"" : "\"") + std::to_string(i) + "\": [";
    const auto c = catalog.codes(i);
    for (int l = 0; l < catalog.levels(); ++l) {
      if (l) out += ", ";
      out += "\"" + vocab.token_string(vocab.code_token(l, c[static_cast<size_t>(l)])) + "\"";
    }
    out += "]";
  }
  out += "}";
  write_text_file_atomic(path, out);
}

UserSequences read_split_file(const std::string& path, int64_t num_items) {
  const std::string text = read_text_file(path);
  UserSequences users;
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    ++line_no;
    size_t stop = end;
    if (stop > pos && text[stop - 1] == '\r') --stop;  // tolerate CRLF files
    std::vector<int64_t> items;
    int64_t uid = -1;
    size_t p = pos;
    ATSPEED_ENSURE(Data, p < stop, path, ":", line_no, ": empty line (expected the user id ", line_no, ")");
    while (p < stop) {
      ATSPEED_ENSURE(Data, text[p] >= '0' && text[p] <= '9', path, ":", line_no, ": malformed line: unexpected '",
                     text[p], "' at column ", p - pos + 1, " (expected ids separated by single spaces)");
      int64_t v = 0;
      int digits = 0;
      while (p < stop && text[p] >= '0' && text[p] <= '9') {
        v = v * 10 + (text[p] - '0');
        ATSPEED_ENSURE(Data, ++digits <= 15, path, ":", line_no, ": malformed line: number too long");
        ++p;
      }
      if (uid < 0) {
        ATSPEED_ENSURE(Data, v == line_no, path, ":", line_no, ": user id ", v, " found where ", line_no,
                       " was expected (one line per user, in order, 1-based)");
        uid = v;
      } else {
        ATSPEED_ENSURE(Data, v >= 1, path, ":", line_no, ": item id 0 (ids are 1-based)");
        ATSPEED_ENSURE(Data, v <= num_items, path, ":", line_no, ": item ", v, " is not in the index (", num_items,
                       " items)");
        items.push_back(v - 1);
      }
      if (p < stop) {
        ATSPEED_ENSURE(Data, text[p] == ' ' && p + 1 < stop, path, ":", line_no,
                       ": malformed line: unexpected '", text[p] == '\t' ? std::string("\\t") : std::string(1, text[p]),
                       "' at column ", p - pos + 1, " (expected ids separated by single spaces)");
        ++p;
      }
    }
    users.push_back(std::move(items));
    pos = end + 1;
  }
  return users;
}

void write_split_file(const std::string& path, const UserSequences& users) {
  std::string out;
  for (size_t u = 0; u < users.size(); ++u) {
    out += std::to_string(u + 1);
    for (int64_t item : users[u]) {
      out += ' ';
      out += std::to_string(item + 1);
    }
    out += '\n';
  }
  write_text_file_atomic(path, out);
}

}  // namespace atspeed
