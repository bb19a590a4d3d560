#include "data/sampler.h"

#include <numeric>

#include "core/errors.h"

namespace atspeed {

uint64_t epoch_seed(uint64_t seed, int64_t epoch) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (static_cast<uint64_t>(epoch) + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::vector<int64_t> shard_indices(int64_t n, uint64_t seed, int64_t epoch, bool shuffle, int rank, int world,
                                   ShardTail tail) {
  ATSPEED_CHECK(world >= 1 && rank >= 0 && rank < world && n >= 0, "rank ", rank, " world ", world, " n ", n);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  if (shuffle) {
    std::mt19937_64 rng(epoch_seed(seed, epoch));
    seeded_shuffle(order, rng);
  }
  int64_t used = n;
  if (tail == ShardTail::Drop) used = n - n % world;
  if (tail == ShardTail::Pad && n > 0 && n % world != 0) {
    used = n + (world - n % world);
    for (int64_t i = 0; static_cast<int64_t>(order.size()) < used; ++i) order.push_back(order[static_cast<size_t>(i % n)]);
  }
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(used / world + 1));
  for (int64_t i = rank; i < used; i += world) out.push_back(order[static_cast<size_t>(i)]);
  return out;
}

}  // namespace atspeed
