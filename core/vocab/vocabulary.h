// The vocabulary: which token id names which (level, code), and how large V is. Two kinds:
//
// tokenizer-free (SPEC §1.6, the default): five special tokens, then one token per (level, code).
//   PAD=0, BOS=1, EOS=2, SEP=3 (item separator), RESP=4 (start of the response),
//   code token id = 5 + codebook_size * level + code   (level 0-based, code in [0, codebook_size))
//   With 4 levels of 256 codes V = 1029.
// text (an LC-Rec checkpoint's HF tokenizer, core/vocab/tokenizer.h): V = len(tokenizer), PAD=0
//   (<unk>, LC-Rec's pad), BOS=1, EOS=2 as in LLaMA; SEP and RESP do not exist (the prompt is text,
//   data.prompt_format = lcrec). Code token ids are looked up by string ("<a_12>") in the tokenizer;
//   LC-Rec adds them sorted as strings, so within a level the id order is not the code order
//   ("<a_10>" < "<a_2>"). A (level, code) the tokenizer lacks has no token: code_token() on it is
//   an Error(Data) naming it, so an item index that uses it is refused when the catalogue is built.
// Everything below the vocabulary (trie, search, verification, losses) sees only ids and these
// lookups; none of it may assume that a level's codes form an id range.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace atspeed {

class TextTokenizer;

class Vocabulary {
 public:
  static constexpr int64_t kPad = 0;
  static constexpr int64_t kBos = 1;
  static constexpr int64_t kEos = 2;
  static constexpr int64_t kSep = 3;
  static constexpr int64_t kResp = 4;
  static constexpr int64_t kNumSpecial = 5;
  static constexpr int kMaxLevels = 8;

  // Tokenizer-free. Throws Error(Config) unless 1 <= levels <= 8, codebook_size >= 2 and
  // codebook_size^levels fits in 63 bits (code tuples are packed into one integer key).
  explicit Vocabulary(int levels = 4, int64_t codebook_size = 256);
  // Text: code tokens looked up by their LC-Rec strings in `tokenizer`. Error(Config) when its
  // special ids are not LLaMA's (unk 0, <s> 1, </s> 2) or it has no code token at all.
  static Vocabulary with_tokenizer(std::shared_ptr<const TextTokenizer> tokenizer, int levels = 4,
                                   int64_t codebook_size = 256);

  // A vocabulary of `size` ids whose code tokens sit at code_token[level * codebook_size + code]
  // (-1: none), without a tokenizer: what a text vocabulary looks like to the search, for
  // benchmarks and tests at LLaMA's V. Error(Config) for ids outside [3, size) or used twice.
  static Vocabulary with_code_token_ids(int levels, int64_t codebook_size, int64_t size,
                                        std::vector<int64_t> code_token);

  int levels() const { return levels_; }
  int64_t codebook_size() const { return codebook_size_; }
  int64_t size() const { return size_; }
  bool is_text() const { return tokenizer_ != nullptr; }
  // The tokenizer of a text vocabulary; nullptr when tokenizer-free.
  const TextTokenizer* tokenizer() const { return tokenizer_.get(); }
  const std::shared_ptr<const TextTokenizer>& tokenizer_ptr() const { return tokenizer_; }

  // Token id of `code` at `level` (0-based). Error(Internal) when out of range; Error(Data) naming
  // the token string when a text vocabulary's tokenizer lacks it.
  int64_t code_token(int level, int64_t code) const;
  // Whether (level, code) has a token (always, tokenizer-free).
  bool has_code_token(int level, int64_t code) const;
  // Where the code tokens come from, for messages: "the tokenizer <dir>", "a code token table" or
  // "the tokenizer-free vocabulary".
  std::string code_source() const;
  bool is_code(int64_t token) const { return level_of(token) >= 0; }
  // Level (0-based) of a code token, or -1 for any other token.
  int level_of(int64_t token) const {
    if (token < 0 || token >= size_) return -1;
    if (!token_code_) return token >= kNumSpecial ? static_cast<int>((token - kNumSpecial) / codebook_size_) : -1;
    const int64_t lc = (*token_code_)[static_cast<size_t>(token)];
    return lc < 0 ? -1 : static_cast<int>(lc / codebook_size_);
  }
  // Code of a code token (undefined for other tokens; check is_code first).
  int64_t code_of(int64_t token) const {
    if (!token_code_) return (token - kNumSpecial) % codebook_size_;
    return (*token_code_)[static_cast<size_t>(token)] % codebook_size_;
  }
  // The tie-break order of equal scores (SPEC §9.2): code tokens by (level, code), whatever their
  // ids (a text vocabulary's ids within a level are in string order); other tokens after them, by id.
  int64_t order_key(int64_t token) const {
    const int level = level_of(token);
    return level >= 0 ? level * codebook_size_ + code_of(token) : size_ + token;
  }
  // LC-Rec's string for a code: "<a_12>" (level letter a, b, c, ...).
  static std::string code_string(int level, int64_t code);

  // "<PAD>", "<BOS>", "<EOS>", "<SEP>", "<RESP>" or "<a_12>" (tokenizer-free); the tokenizer's
  // string (text).
  std::string token_string(int64_t token) const;
  // A short identity: "tokfree-v1 levels=4 codebook=256 V=1029", or "text levels=4 codebook=256
  // codes=1024 ids=[32000, 33024) sentencepiece pieces=32000 added=1024 V=33024 fnv1a64:...".
  std::string describe() const;
  // Text: the smallest and one past the largest code token id; tokenizer-free: [5, V).
  std::pair<int64_t, int64_t> code_token_range() const;
  int64_t num_code_tokens() const;

  // Same kind, levels, codebook, size and code ids (text: the same tokenizer fingerprint).
  bool operator==(const Vocabulary& other) const;

 private:
  int levels_;
  int64_t codebook_size_;
  int64_t size_;
  std::shared_ptr<const TextTokenizer> tokenizer_;
  // Text only: level * codebook + code -> token id (-1: no token), and token id -> level * codebook
  // + code (-1: not a code token). Shared, since vocabularies are copied by value.
  std::shared_ptr<const std::vector<int64_t>> code_token_;
  std::shared_ptr<const std::vector<int64_t>> token_code_;
};

}  // namespace atspeed
