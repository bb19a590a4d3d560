// The strict invariant's judge (SPEC §9.2): how a list decoded by one method compares with target
// beam search's list for the same request. Used by bench decode, eval and the tests.
//
//   Identical       the same items in the same order;
//   NearTie         the score sequences agree position by position within 1e-4 (two near-equal
//                   items swapped: either order is a correct answer);
//   NearTieCascade  target beam search itself had candidates within 1e-4 at the boundary of its K
//                   kept beams at some level (`target_gap`, SearchStats::min_boundary_gap): keeping
//                   the other one changes every later level, so the lists may differ anywhere after;
//   Mismatch        anything else: a bug.
#pragma once

#include <cmath>
#include <vector>

namespace atspeed::metrics {

enum class Agreement { Identical, NearTie, NearTieCascade, Mismatch };

constexpr float kNearTie = 1e-4f;

// Beam: anything with `tokens` (comparable with ==) and a float `score`.
template <typename Beam>
Agreement compare_lists(const std::vector<Beam>& got, const std::vector<Beam>& target, float target_gap) {
  bool same = got.size() == target.size();
  for (size_t i = 0; same && i < got.size(); ++i) same = got[i].tokens == target[i].tokens;
  if (same) return Agreement::Identical;
  bool close = got.size() == target.size();
  for (size_t i = 0; close && i < got.size(); ++i) close = std::abs(got[i].score - target[i].score) < kNearTie;
  if (close) return Agreement::NearTie;
  return target_gap < kNearTie ? Agreement::NearTieCascade : Agreement::Mismatch;
}

}  // namespace atspeed::metrics
