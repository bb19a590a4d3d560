#include "core/dist/world.h"

#include "core/errors.h"

namespace atspeed {

World World::make(int rank, int size, int tp) {
  World w;
  w.rank = rank;
  w.size = size;
  w.tp = tp;
  w.dp = (tp > 0 && size % tp == 0) ? size / tp : 0;
  w.validate();
  return w;
}

void World::validate() const {
  ATSPEED_ENSURE(Distributed, size >= 1, "world size must be >= 1 (got ", size, ")");
  ATSPEED_ENSURE(Distributed, rank >= 0 && rank < size, "rank ", rank, " is outside [0, ", size, ")");
  ATSPEED_ENSURE(Distributed, tp >= 1, "tensor-parallel degree (dist.tp) must be >= 1 (got ", tp, ")");
  ATSPEED_ENSURE(Distributed, size % tp == 0, "dist.tp=", tp, " does not divide the world size ", size,
                 " (launch a multiple of tp processes with mpirun -np)");
  ATSPEED_ENSURE(Distributed, dp * tp == size, "dp*tp must equal size (dp=", dp, ", tp=", tp, ", size=", size, ")");
}

std::string World::to_string() const {
  return "rank " + std::to_string(rank) + "/" + std::to_string(size) + " (tp " + std::to_string(tp_rank()) + "/" +
         std::to_string(tp) + ", dp " + std::to_string(dp_rank()) + "/" + std::to_string(dp) + ")";
}

bool operator==(const World& a, const World& b) {
  return a.rank == b.rank && a.size == b.size && a.tp == b.tp && a.dp == b.dp;
}

}  // namespace atspeed
