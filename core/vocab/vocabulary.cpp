#include "core/vocab/vocabulary.h"

#include <cmath>

#include "core/errors.h"

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
}

int64_t Vocabulary::code_token(int level, int64_t code) const {
  ATSPEED_CHECK(level >= 0 && level < levels_ && code >= 0 && code < codebook_size_, "level ", level, " code ", code);
  return kNumSpecial + codebook_size_ * level + code;
}

std::string Vocabulary::token_string(int64_t token) const {
  switch (token) {
    case kPad: return "<PAD>";
    case kBos: return "<BOS>";
    case kEos: return "<EOS>";
    case kSep: return "<SEP>";
    case kResp: return "<RESP>";
    default: break;
  }
  if (!is_code(token)) return "<UNK:" + std::to_string(token) + ">";
  return std::string("<") + static_cast<char>('a' + level_of(token)) + "_" + std::to_string(code_of(token)) + ">";
}

std::string Vocabulary::describe() const {
  return "tokfree-v1 levels=" + std::to_string(levels_) + " codebook=" + std::to_string(codebook_size_) +
         " V=" + std::to_string(size());
}

}  // namespace atspeed
