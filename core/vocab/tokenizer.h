// TextTokenizer: the HuggingFace LLaMA tokenizer of an LC-Rec checkpoint, i.e. a SentencePiece
// model (tokenizer.model) plus the tokens `add_tokens` appended to it (<a_0>..<d_255>), read with
// the SentencePiece C++ library and reproducing, id for id, what the reference gets from
//   LlamaTokenizer.from_pretrained(dir, legacy=True)(text)["input_ids"]      (transformers 4.41)
// That slow tokenizer does three things, and so does encode():
//   1. split the text on added tokens (the special <unk>, <s>, </s> and every added token),
//      leftmost match first, longest match at a position; a token's lstrip/rstrip flags strip the
//      whitespace beside it (the code tokens LC-Rec adds have neither, so "items <a_1>" keeps its
//      space);
//   2. encode every other non-empty segment separately with SentencePiece (legacy mode: each
//      segment gets SentencePiece's dummy-prefix "▁", also after an added token);
//   3. put BOS in front (add_bos_token; no EOS).
// tests/data/lcrec/prompts.json (tools/make_lcrec_fixture.py) checks this on 250+ strings.
//
// The tokenizer's files travel with a converted checkpoint (HDF5 group "tokenizer", see
// TokenizerFiles) and are written back by `atspeed convert --to-hf`, byte for byte.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace atspeed {

// The files of an HF tokenizer directory that matter to us, as bytes.
struct TokenizerFiles {
  std::string origin;                            // where they came from, for messages
  std::string sentencepiece_model;               // tokenizer.model
  std::map<std::string, std::string> json_files; // tokenizer_config.json, added_tokens.json,
                                                 // special_tokens_map.json (those present)
  // The files HF's slow LLaMA tokenizer reads; the others (tokenizer.json of the fast tokenizer) are ignored.
  static const std::vector<std::string>& json_file_names();
  // Reads dir/tokenizer.model and the json files present. Error(Config) naming the directory when
  // tokenizer.model is missing.
  static TokenizerFiles read_dir(const std::string& dir);
  // Writes them into dir (created as needed), each file atomically.
  void write_dir(const std::string& dir) const;
  // True when dir holds a tokenizer.model.
  static bool dir_has_tokenizer(const std::string& dir);
};

struct AddedToken {
  int64_t id = 0;
  std::string content;
  bool lstrip = false;
  bool rstrip = false;
  bool special = false;
};

class TextTokenizer {
 public:
  // Error(Config) naming files.origin and the file for a model SentencePiece cannot load, added
  // tokens that are not valid JSON, or an added token whose id collides with another.
  explicit TextTokenizer(TokenizerFiles files);
  ~TextTokenizer();
  TextTokenizer(const TextTokenizer&) = delete;
  TextTokenizer& operator=(const TextTokenizer&) = delete;

  static std::shared_ptr<const TextTokenizer> load_dir(const std::string& dir);

  // len(tokenizer): SentencePiece pieces plus added tokens beyond them (ids are dense).
  int64_t size() const { return size_; }
  int64_t sentencepiece_size() const { return sp_size_; }
  int64_t bos_id() const { return bos_; }
  int64_t eos_id() const { return eos_; }
  int64_t unk_id() const { return unk_; }
  const std::vector<AddedToken>& added_tokens() const { return added_; }

  // The id of a token string: an added token, else a SentencePiece piece; nullopt when neither.
  std::optional<int64_t> token_id(std::string_view token) const;
  // The string of an id (added token content or piece); "" for an id outside [0, size()).
  std::string token_string(int64_t id) const;

  // Token ids of `text` as the slow HF tokenizer gives them (see the top of this file).
  std::vector<int64_t> encode(std::string_view text, bool add_bos = true) const;
  void append_encoded(std::string_view text, bool add_bos, std::vector<int64_t>& out) const;

  const TokenizerFiles& files() const { return files_; }
  // "fnv1a64:<16 hex>" over the model bytes and the added tokens (id, content, flags).
  const std::string& fingerprint() const { return fingerprint_; }
  // "sentencepiece pieces=32000 added=1024 V=33024 fnv1a64:..."
  std::string describe() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  TokenizerFiles files_;
  std::vector<AddedToken> added_;
  int64_t sp_size_ = 0;
  int64_t size_ = 0;
  int64_t bos_ = 1, eos_ = 2, unk_ = 0;
  std::string fingerprint_;
};

}  // namespace atspeed
