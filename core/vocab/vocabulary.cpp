#include "core/vocab/vocabulary.h"

#include <algorithm>
#include <cmath>

#include "core/errors.h"
#include "core/vocab/tokenizer.h"

namespace atspeed {

Vocabulary::Vocabulary(int levels, int64_t codebook_size) : levels_(levels), codebook_size_(codebook_size) {
  ATSPEED_ENSURE(Config, levels >= 1 && levels <= kMaxLevels, "vocabulary: levels must be in [1, ", kMaxLevels,
                 "] (got ", levels, ")");
  ATSPEED_ENSURE(Config, codebook_size >= 2 && codebook_size <= (int64_t{1} << 24),
                 "vocabulary: codebook_size must be in [2, 2^24] (got ", codebook_size, ")");
  // Code tuples are packed base-codebook_size into an int64 key.
  ATSPEED_ENSURE(Config, levels * std::log2(static_cast<double>(codebook_size)) <= 63.0,
                 "vocabulary: codebook_size^levels must fit in 63 bits (levels ", levels, ", codebook_size ",
                 codebook_size, ")");
  size_ = kNumSpecial + codebook_size_ * levels_;
}

Vocabulary Vocabulary::with_tokenizer(std::shared_ptr<const TextTokenizer> tokenizer, int levels,
                                      int64_t codebook_size) {
  ATSPEED_CHECK(tokenizer != nullptr, "null tokenizer");
  Vocabulary v(levels, codebook_size);
  const std::string& origin = tokenizer->files().origin;
  // The decoder, trie and losses use PAD/BOS/EOS = 0/1/2, as LLaMA does.
  ATSPEED_ENSURE(Config, tokenizer->unk_id() == kPad && tokenizer->bos_id() == kBos && tokenizer->eos_id() == kEos,
                 origin, ": the tokenizer's <unk>/<s>/</s> ids are ", tokenizer->unk_id(), "/", tokenizer->bos_id(), "/",
                 tokenizer->eos_id(), "; atspeed needs LLaMA's 0/1/2");
  std::vector<int64_t> code_token(static_cast<size_t>(levels * codebook_size), -1);
  int64_t found = 0;
  for (int l = 0; l < levels; ++l) {
    for (int64_t c = 0; c < codebook_size; ++c) {
      const auto id = tokenizer->token_id(code_string(l, c));
      if (!id) continue;
      code_token[static_cast<size_t>(l * codebook_size + c)] = *id;
      ++found;
    }
  }
  ATSPEED_ENSURE(Config, found > 0, origin, ": the tokenizer has none of the code tokens <a_0>..",
                 code_string(levels - 1, codebook_size - 1),
                 " (LC-Rec adds them with tokenizer.add_tokens before fine-tuning; is this the fine-tuned "
                 "checkpoint's tokenizer?)");
  v = with_code_token_ids(levels, codebook_size, tokenizer->size(), std::move(code_token));
  v.tokenizer_ = std::move(tokenizer);
  return v;
}

Vocabulary Vocabulary::with_code_token_ids(int levels, int64_t codebook_size, int64_t size,
                                           std::vector<int64_t> code_token) {
  Vocabulary v(levels, codebook_size);
  ATSPEED_ENSURE(Config, static_cast<int64_t>(code_token.size()) == levels * codebook_size,
                 "vocabulary: code token table has ", code_token.size(), " entries, expected ", levels * codebook_size);
  v.size_ = size;
  auto token_code = std::make_shared<std::vector<int64_t>>(static_cast<size_t>(size), -1);
  for (size_t lc = 0; lc < code_token.size(); ++lc) {
    const int64_t id = code_token[lc];
    if (id < 0) continue;
    // PAD/BOS/EOS keep their meaning; a code token must be another id.
    ATSPEED_ENSURE(Config, id > kEos && id < size, "vocabulary: code token ", code_string(static_cast<int>(lc / codebook_size),
                   static_cast<int64_t>(lc) % codebook_size), " has id ", id, ", outside [3, ", size, ")");
    ATSPEED_ENSURE(Config, (*token_code)[static_cast<size_t>(id)] < 0, "vocabulary: id ", id, " names two codes");
    (*token_code)[static_cast<size_t>(id)] = static_cast<int64_t>(lc);
  }
  v.code_token_ = std::make_shared<const std::vector<int64_t>>(std::move(code_token));
  v.token_code_ = std::move(token_code);
  return v;
}

int64_t Vocabulary::code_token(int level, int64_t code) const {
  ATSPEED_CHECK(level >= 0 && level < levels_ && code >= 0 && code < codebook_size_, "level ", level, " code ", code);
  if (!code_token_) return kNumSpecial + codebook_size_ * level + code;
  const int64_t id = (*code_token_)[static_cast<size_t>(level * codebook_size_ + code)];
  ATSPEED_ENSURE(Data, id >= 0, code_source(), " has no token ", code_string(level, code),
                 " (an item's codes use it; was the tokenizer saved after add_tokens of every code of this index?)");
  return id;
}

bool Vocabulary::has_code_token(int level, int64_t code) const {
  if (level < 0 || level >= levels_ || code < 0 || code >= codebook_size_) return false;
  return !code_token_ || (*code_token_)[static_cast<size_t>(level * codebook_size_ + code)] >= 0;
}

std::string Vocabulary::code_source() const {
  if (tokenizer_) return "the tokenizer " + tokenizer_->files().origin;
  return code_token_ ? "a code token table" : "the tokenizer-free vocabulary";
}

std::string Vocabulary::code_string(int level, int64_t code) {
  return std::string("<") + static_cast<char>('a' + level) + "_" + std::to_string(code) + ">";
}

std::string Vocabulary::token_string(int64_t token) const {
  if (tokenizer_) {
    std::string s = tokenizer_->token_string(token);
    return s.empty() ? "<UNK:" + std::to_string(token) + ">" : s;
  }
  switch (token) {
    case kPad: return "<PAD>";
    case kBos: return "<BOS>";
    case kEos: return "<EOS>";
    case kSep: return "<SEP>";
    case kResp: return "<RESP>";
    default: break;
  }
  if (!is_code(token)) return "<UNK:" + std::to_string(token) + ">";
  return code_string(level_of(token), code_of(token));
}

std::pair<int64_t, int64_t> Vocabulary::code_token_range() const {
  if (!code_token_) return {kNumSpecial, size_};
  int64_t lo = size_, hi = 0;
  for (int64_t id : *code_token_)
    if (id >= 0) lo = std::min(lo, id), hi = std::max(hi, id + 1);
  return {lo, hi};
}

int64_t Vocabulary::num_code_tokens() const {
  if (!code_token_) return codebook_size_ * levels_;
  int64_t n = 0;
  for (int64_t id : *code_token_) n += id >= 0;
  return n;
}

std::string Vocabulary::describe() const {
  const std::string shape = "levels=" + std::to_string(levels_) + " codebook=" + std::to_string(codebook_size_);
  if (!tokenizer_) return "tokfree-v1 " + shape + " V=" + std::to_string(size());
  const auto [lo, hi] = code_token_range();
  return "text " + shape + " codes=" + std::to_string(num_code_tokens()) + " ids=[" + std::to_string(lo) + ", " +
         std::to_string(hi) + ") " + tokenizer_->describe();
}

bool Vocabulary::operator==(const Vocabulary& other) const {
  if (levels_ != other.levels_ || codebook_size_ != other.codebook_size_ || size_ != other.size_ ||
      is_text() != other.is_text() || (code_token_ == nullptr) != (other.code_token_ == nullptr))
    return false;
  if (is_text()) return tokenizer_->fingerprint() == other.tokenizer_->fingerprint();
  return code_token_ == nullptr || *code_token_ == *other.code_token_;
}

}  // namespace atspeed
