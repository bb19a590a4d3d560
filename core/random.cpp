#include "core/random.h"

#include <cstdint>

#include "core/errors.h"

namespace atspeed {

uint64_t uniform_below(std::mt19937_64& rng, uint64_t n) {
  ATSPEED_CHECK(n >= 1, "uniform_below(0)");
  // Reject the top partial block of 2^64 so every residue is equally likely.
  const uint64_t limit = UINT64_MAX - (UINT64_MAX % n + 1) % n;
  uint64_t x;
  do x = rng();
  while (x > limit);
  return x % n;
}

double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

}  // namespace atspeed
