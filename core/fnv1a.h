// FNV-1a 64: the content fingerprints of checkpoints (item index, tokenizer). Not cryptographic;
// it tells files apart, it does not defend against crafted collisions.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace atspeed {

struct Fnv1a64 {
  uint64_t h = 0xcbf29ce484222325ULL;
  void byte(uint8_t b) { h = (h ^ b) * 0x100000001b3ULL; }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) byte(static_cast<uint8_t>(v >> (8 * i)));
  }
  void i32(int32_t v) {
    const auto u = static_cast<uint32_t>(v);
    for (int i = 0; i < 4; ++i) byte(static_cast<uint8_t>(u >> (8 * i)));
  }
  // Length first, so ("ab","c") and ("a","bc") differ.
  void str(std::string_view s) {
    u64(s.size());
    for (char c : s) byte(static_cast<uint8_t>(c));
  }
  // 16 lower-case hex digits.
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
  }
};

}  // namespace atspeed
