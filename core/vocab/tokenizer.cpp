#include "core/vocab/tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "core/errors.h"
#include "core/fnv1a.h"
#include "core/io/text_file.h"

namespace atspeed {
namespace fs = std::filesystem;
using json = nlohmann::json;

const std::vector<std::string>& TokenizerFiles::json_file_names() {
  static const std::vector<std::string> names = {"tokenizer_config.json", "added_tokens.json",
                                                 "special_tokens_map.json"};
  return names;
}

bool TokenizerFiles::dir_has_tokenizer(const std::string& dir) {
  return !dir.empty() && fs::is_regular_file(fs::path(dir) / "tokenizer.model");
}

TokenizerFiles TokenizerFiles::read_dir(const std::string& dir) {
  const fs::path model = fs::path(dir) / "tokenizer.model";
  ATSPEED_ENSURE(Config, fs::is_regular_file(model), dir,
                 ": no tokenizer.model (a tokenizer directory is what LlamaTokenizer.save_pretrained writes: "
                 "tokenizer.model plus tokenizer_config.json / added_tokens.json)");
  TokenizerFiles f;
  f.origin = dir;
  std::ifstream in(model, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  ATSPEED_ENSURE(Config, in.good() || in.eof(), model.string(), ": read failed");
  f.sentencepiece_model = bytes.str();
  for (const std::string& name : json_file_names()) {
    const fs::path p = fs::path(dir) / name;
    if (fs::is_regular_file(p)) f.json_files[name] = read_text_file(p.string());
  }
  return f;
}

void TokenizerFiles::write_dir(const std::string& dir) const {
  // write_text_file_atomic writes bytes as given; a serialized protobuf is just bytes.
  write_text_file_atomic((fs::path(dir) / "tokenizer.model").string(), sentencepiece_model);
  for (const auto& [name, text] : json_files) write_text_file_atomic((fs::path(dir) / name).string(), text);
}

struct TextTokenizer::Impl {
  sentencepiece::SentencePieceProcessor sp;
  std::unordered_map<std::string, int64_t> added_by_content;
  std::unordered_map<int64_t, size_t> added_by_id;  // id -> index in added_
  // Added tokens by first byte, longest first: the split tries them at every position.
  std::vector<std::vector<size_t>> by_first_byte = std::vector<std::vector<size_t>>(256);
};

namespace {

json parse_tokenizer_json(const TokenizerFiles& f, const std::string& name) {
  try {
    return json::parse(f.json_files.at(name));
  } catch (const json::exception& e) {
    ATSPEED_THROW(Config, f.origin, "/", name, ": not valid JSON: ", e.what());
  }
}

bool json_flag(const json& j, const char* key, bool fallback) {
  return j.contains(key) && j[key].is_boolean() ? j[key].get<bool>() : fallback;
}

// Python's str.isspace for the ASCII range; non-ASCII whitespace next to an added token with
// lstrip/rstrip is not stripped (none of the tokens LC-Rec adds has those flags).
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

}  // namespace

TextTokenizer::TextTokenizer(TokenizerFiles files) : impl_(std::make_unique<Impl>()), files_(std::move(files)) {
  const auto status = impl_->sp.LoadFromSerializedProto(files_.sentencepiece_model);
  ATSPEED_ENSURE(Config, status.ok(), files_.origin, "/tokenizer.model: SentencePiece cannot load it: ",
                 status.ToString());
  sp_size_ = impl_->sp.GetPieceSize();
  bos_ = impl_->sp.bos_id();
  eos_ = impl_->sp.eos_id();
  unk_ = impl_->sp.unk_id();
  ATSPEED_ENSURE(Config, bos_ >= 0 && eos_ >= 0, files_.origin,
                 "/tokenizer.model: the model has no BOS or EOS piece (a LLaMA tokenizer has <s> = 1 and </s> = 2)");

  // Added tokens: tokenizer_config.json's added_tokens_decoder (transformers >= 4.34, with flags),
  // else added_tokens.json ({content: id}, no flags: transformers 4.41 loads those without
  // lstrip/rstrip). The SentencePiece control pieces <unk>, <s>, </s> are special added tokens
  // either way, so "<s>" inside a text is BOS, as in transformers.
  std::map<int64_t, AddedToken> by_id;
  for (int64_t id : {unk_, bos_, eos_}) {
    if (id < 0) continue;
    by_id[id] = AddedToken{id, impl_->sp.IdToPiece(static_cast<int>(id)), false, false, true};
  }
  const auto& jf = files_.json_files;
  const json cfg = jf.count("tokenizer_config.json") ? parse_tokenizer_json(files_, "tokenizer_config.json") : json();
  if (cfg.is_object() && cfg.contains("added_tokens_decoder")) {
    const json& dec = cfg["added_tokens_decoder"];
    ATSPEED_ENSURE(Config, dec.is_object(), files_.origin, "/tokenizer_config.json: added_tokens_decoder must be an object");
    for (auto it = dec.begin(); it != dec.end(); ++it) {
      int64_t id = -1;
      try {
        id = std::stoll(it.key());
      } catch (const std::exception&) {
      }
      ATSPEED_ENSURE(Config, id >= 0 && it.value().is_object() && it.value().contains("content") &&
                                 it.value()["content"].is_string(),
                     files_.origin, "/tokenizer_config.json: added_tokens_decoder.", it.key(),
                     ": expected an id key and an object with a content string");
      const json& t = it.value();
      by_id[id] = AddedToken{id, t["content"].get<std::string>(), json_flag(t, "lstrip", false),
                             json_flag(t, "rstrip", false), json_flag(t, "special", false)};
    }
  } else if (jf.count("added_tokens.json")) {
    const json added = parse_tokenizer_json(files_, "added_tokens.json");
    ATSPEED_ENSURE(Config, added.is_object(), files_.origin, "/added_tokens.json: must be an object {token: id}");
    for (auto it = added.begin(); it != added.end(); ++it) {
      ATSPEED_ENSURE(Config, it.value().is_number_integer() && it.value().get<int64_t>() >= 0, files_.origin,
                     "/added_tokens.json: ", it.key(), ": the id must be a non-negative integer");
      const int64_t id = it.value().get<int64_t>();
      by_id[id] = AddedToken{id, it.key(), false, false, false};
    }
  }

  size_ = sp_size_;
  for (auto& [id, tok] : by_id) {
    ATSPEED_ENSURE(Config, !tok.content.empty(), files_.origin, ": added token ", id, " is empty");
    if (id >= sp_size_) {
      // transformers gives added tokens the ids len(tokenizer), len(tokenizer) + 1, ...
      ATSPEED_ENSURE(Config, id == size_, files_.origin, ": added token '", tok.content, "' has id ", id, ", expected ",
                     size_, " (added ids must follow the ", sp_size_, " SentencePiece pieces without gaps)");
      ++size_;
    }
    auto [prev, fresh] = impl_->added_by_content.emplace(tok.content, id);
    ATSPEED_ENSURE(Config, fresh, files_.origin, ": added token '", tok.content, "' has two ids (", prev->second,
                   " and ", id, ")");
    impl_->added_by_id[id] = added_.size();
    added_.push_back(tok);
  }
  for (size_t i = 0; i < added_.size(); ++i)
    impl_->by_first_byte[static_cast<uint8_t>(added_[i].content[0])].push_back(i);
  for (auto& v : impl_->by_first_byte)
    std::stable_sort(v.begin(), v.end(),
                     [&](size_t a, size_t b) { return added_[a].content.size() > added_[b].content.size(); });

  Fnv1a64 f;
  f.str(files_.sentencepiece_model);
  for (const AddedToken& t : added_) {
    f.u64(static_cast<uint64_t>(t.id));
    f.str(t.content);
    f.byte(static_cast<uint8_t>((t.lstrip ? 1 : 0) | (t.rstrip ? 2 : 0) | (t.special ? 4 : 0)));
  }
  fingerprint_ = "fnv1a64:" + f.hex();
}

TextTokenizer::~TextTokenizer() = default;

std::shared_ptr<const TextTokenizer> TextTokenizer::load_dir(const std::string& dir) {
  return std::make_shared<const TextTokenizer>(TokenizerFiles::read_dir(dir));
}

std::optional<int64_t> TextTokenizer::token_id(std::string_view token) const {
  auto it = impl_->added_by_content.find(std::string(token));
  if (it != impl_->added_by_content.end()) return it->second;
  const int id = impl_->sp.PieceToId(token);
  // PieceToId answers unk for unknown pieces; only "<unk>" itself maps there legitimately.
  if (id < 0 || (id == unk_ && token != impl_->sp.IdToPiece(static_cast<int>(unk_)))) return std::nullopt;
  return id;
}

std::string TextTokenizer::token_string(int64_t id) const {
  auto it = impl_->added_by_id.find(id);
  if (it != impl_->added_by_id.end()) return added_[it->second].content;
  if (id < 0 || id >= sp_size_) return "";
  return impl_->sp.IdToPiece(static_cast<int>(id));
}

std::vector<int64_t> TextTokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int64_t> out;
  append_encoded(text, add_bos, out);
  return out;
}

void TextTokenizer::append_encoded(std::string_view text, bool add_bos, std::vector<int64_t>& out) const {
  if (add_bos) out.push_back(bos_);
  // 1. Split into text segments and added tokens (leftmost, then longest match).
  struct Piece {
    std::string_view text;
    int64_t added = -1;  // index into added_, or -1 for a text segment
  };
  std::vector<Piece> pieces;
  size_t seg_begin = 0;
  for (size_t i = 0; i < text.size();) {
    const size_t* match = nullptr;
    for (const size_t& k : impl_->by_first_byte[static_cast<uint8_t>(text[i])]) {
      if (text.compare(i, added_[k].content.size(), added_[k].content) == 0) {
        match = &k;
        break;  // longest first
      }
    }
    if (!match) {
      ++i;
      continue;
    }
    if (i > seg_begin) pieces.push_back({text.substr(seg_begin, i - seg_begin)});
    pieces.push_back({text.substr(i, added_[*match].content.size()), static_cast<int64_t>(*match)});
    i += added_[*match].content.size();
    seg_begin = i;
  }
  if (seg_begin < text.size()) pieces.push_back({text.substr(seg_begin)});

  // 2. lstrip/rstrip flags eat the whitespace beside their token.
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (pieces[i].added < 0) continue;
    const AddedToken& t = added_[static_cast<size_t>(pieces[i].added)];
    if (t.rstrip && i + 1 < pieces.size() && pieces[i + 1].added < 0) {
      std::string_view& r = pieces[i + 1].text;
      while (!r.empty() && is_space(r.front())) r.remove_prefix(1);
    }
    if (t.lstrip && i > 0 && pieces[i - 1].added < 0) {
      std::string_view& l = pieces[i - 1].text;
      while (!l.empty() && is_space(l.back())) l.remove_suffix(1);
    }
  }

  // 3. Every non-empty segment through SentencePiece on its own.
  std::vector<int> ids;
  for (const Piece& p : pieces) {
    if (p.added >= 0) {
      out.push_back(added_[static_cast<size_t>(p.added)].id);
      continue;
    }
    if (p.text.empty()) continue;
    ids.clear();
    const auto status = impl_->sp.Encode(p.text, &ids);
    ATSPEED_ENSURE(Data, status.ok(), files_.origin, ": SentencePiece cannot encode a text segment: ", status.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
  }
}

std::string TextTokenizer::describe() const {
  return "sentencepiece pieces=" + std::to_string(sp_size_) + " added=" + std::to_string(size_ - sp_size_) +
         " V=" + std::to_string(size_) + " " + fingerprint_;
}

}  // namespace atspeed
