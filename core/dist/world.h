// The process topology as a validated value: rank, size, and its split into tensor-parallel (tp)
// and data-parallel (dp) groups. Ranks [d*tp, (d+1)*tp) form the tp group of data-parallel
// replica d, so the tp peers of a rank are adjacent (on one node, sharing NVLink).
#pragma once

#include <string>

namespace atspeed {

struct World {
  int rank = 0;  // global rank, [0, size)
  int size = 1;  // number of processes
  int tp = 1;    // tensor-parallel degree; divides size
  int dp = 1;    // data-parallel degree = size / tp

  // Builds and validates; throws Error(Distributed) naming what is inconsistent.
  static World make(int rank, int size, int tp);
  void validate() const;

  int tp_rank() const { return rank % tp; }  // position inside the tp group
  int dp_rank() const { return rank / tp; }  // which data-parallel replica
  bool is_root() const { return rank == 0; }
  std::string to_string() const;
};

bool operator==(const World& a, const World& b);

}  // namespace atspeed
