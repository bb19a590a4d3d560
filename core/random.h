// Portable random draws. std::mt19937_64's output sequence is fixed by the C++ standard, but
// std::uniform_*_distribution differ between standard libraries: these draws give the same values for
// a seed on every platform and compiler (shuffles, synthetic data, beam sampling, AtSpeed-R).
#pragma once

#include <cstdint>
#include <random>

namespace atspeed {

// Uniform integer in [0, n) by rejection sampling (n >= 1).
uint64_t uniform_below(std::mt19937_64& rng, uint64_t n);

// Uniform in [0, 1) with 53 random bits.
double uniform01(std::mt19937_64& rng);

}  // namespace atspeed
