// Deterministic shuffling and data-parallel sharding.
//
// Everything is driven by std::mt19937_64, whose output sequence the C++ standard fixes, and by
// our own unbiased bounded draw (std::uniform_int_distribution differs between standard
// libraries), so a seed gives the same order on every platform and compiler.
#pragma once

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "core/random.h"  // uniform_below

namespace atspeed {

// Fisher–Yates in the order of Python's random.shuffle: for i = n-1 down to 1 swap v[i] with
// v[uniform_below(i + 1)].
template <typename T>
void seeded_shuffle(std::vector<T>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(uniform_below(rng, i));
    std::swap(v[i - 1], v[j]);
  }
}

// A seed for one epoch derived from the run seed (splitmix64 mixing), so epochs differ.
uint64_t epoch_seed(uint64_t seed, int64_t epoch);

// How a shard handles n % world leftover samples so that every rank gets the same count:
//   Drop    the last n % world samples of the (shuffled) order are skipped this epoch (training
//           default: ranks must run the same number of steps; a reshuffle next epoch uses them);
//   Pad     the order is extended by repeating its first samples (every sample is seen, a few twice);
//   Uneven  nothing is dropped or repeated; ranks differ by at most one (evaluation).
enum class ShardTail { Drop, Pad, Uneven };

// The sample indices of `rank` (of `world`) for one epoch: the order 0..n-1, shuffled with
// epoch_seed(seed, epoch) when `shuffle`, then rank r takes positions r, r + world, r + 2*world, ...
std::vector<int64_t> shard_indices(int64_t n, uint64_t seed, int64_t epoch, bool shuffle, int rank, int world,
                                   ShardTail tail = ShardTail::Drop);

}  // namespace atspeed
