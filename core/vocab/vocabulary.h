// The tokenizer-free vocabulary (SPEC §1.6): five special tokens, then one token per (level, code).
//   PAD=0, BOS=1, EOS=2, SEP=3 (item separator), RESP=4 (start of the response),
//   code token id = 5 + codebook_size * level + code   (level 0-based, code in [0, codebook_size))
// With 4 levels of 256 codes V = 1029, and every level's codes are one contiguous id range, so a
// per-level mask is a slice.
#pragma once

#include <cstdint>
#include <string>

namespace atspeed {

class Vocabulary {
 public:
  static constexpr int64_t kPad = 0;
  static constexpr int64_t kBos = 1;
  static constexpr int64_t kEos = 2;
  static constexpr int64_t kSep = 3;
  static constexpr int64_t kResp = 4;
  static constexpr int64_t kNumSpecial = 5;
  static constexpr int kMaxLevels = 8;

  // Throws Error(Config) unless 1 <= levels <= 8, codebook_size >= 2 and codebook_size^levels fits
  // in 63 bits (code tuples are packed into one integer key).
  explicit Vocabulary(int levels = 4, int64_t codebook_size = 256);

  int levels() const { return levels_; }
  int64_t codebook_size() const { return codebook_size_; }
  int64_t size() const { return kNumSpecial + codebook_size_ * levels_; }

  // Token id of `code` at `level` (0-based). Throws Error(Internal) when out of range.
  int64_t code_token(int level, int64_t code) const;
  // First token id of a level's contiguous range [first_code_token(l), first_code_token(l) + codebook_size).
  int64_t first_code_token(int level) const { return kNumSpecial + codebook_size_ * level; }
  bool is_code(int64_t token) const { return token >= kNumSpecial && token < size(); }
  // Level (0-based) of a code token, or -1 for a special or out-of-range token.
  int level_of(int64_t token) const { return is_code(token) ? static_cast<int>((token - kNumSpecial) / codebook_size_) : -1; }
  // Code of a code token (undefined for other tokens; check is_code first).
  int64_t code_of(int64_t token) const { return (token - kNumSpecial) % codebook_size_; }

  // "<PAD>", "<BOS>", "<EOS>", "<SEP>", "<RESP>", or LC-Rec style "<a_12>" (level letter a, b, c, ...).
  std::string token_string(int64_t token) const;
  // A short identity for checkpoints: "tokfree-v1 levels=4 codebook=256 V=1029".
  std::string describe() const;

  bool operator==(const Vocabulary& other) const {
    return levels_ == other.levels_ && codebook_size_ == other.codebook_size_;
  }

 private:
  int levels_;
  int64_t codebook_size_;
};

}  // namespace atspeed
