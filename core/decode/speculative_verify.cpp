// The two verifiers of a speculative round (speculative_state.h): given the target's log-probs of
// every drafted node, how many drafted levels to accept and which K beams follow.
//
// Both walk the levels from the accepted frontier A (the K beams of level `done`): at each level the
// target's candidates after A are compared with the draft's N beams of that level; an accepted level
// makes its beams the new A, a rejected one (or level d + 1, the bonus step) ends the round with the
// target's own choice of K beams. Row numbering: `accepted_rows[i]` is beam i's row in the previous
// level's draft list D, so (D row, token) names a drafted candidate, as the draft's q does.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/decode/speculative_state.h"
#include "core/random.h"

namespace atspeed::decode::detail {

// AtSpeed-S (SPEC §3.4): a level is accepted when the target's top-K after A are all among the draft's
// N beams of that level.
LevelDecision verify_strict(Request& r, const VerifyContext& ctx) {
  SearchOptions target_opts;
  target_opts.beam_width = ctx.options.beam_width;
  std::vector<Beam> accepted = r.beams;  // A with target scores
  std::vector<int64_t> accepted_nodes = r.beam_nodes;
  LevelDecision out;
  for (int64_t level = 1; level <= r.d + 1; ++level) {
    const AllowedRows rows = rows_of(r.target_rows, accepted_nodes, r.target_root);
    const bool bonus = level == r.d + 1;
    std::vector<Beam> top = expand_beams(accepted, rows, ctx.constraint, target_opts);
    bool all_drafted = !bonus && !top.empty();
    std::vector<int64_t> matched;
    if (all_drafted) {
      std::unordered_map<int64_t, int64_t> drafted;  // parent node * V + token -> node
      for (int64_t n : r.draft_nodes[static_cast<size_t>(level)]) {
        const Node& node = r.nodes[static_cast<size_t>(n)];
        drafted[node.parent * ctx.vocab + node.token] = n;
      }
      for (const Beam& beam : top) {
        auto it = drafted.find(accepted_nodes[static_cast<size_t>(beam.parent)] * ctx.vocab + beam.tokens.back());
        if (it == drafted.end()) {
          all_drafted = false;
          break;
        }
        matched.push_back(it->second);
      }
    }
    if (all_drafted) {
      ++out.accepted_levels;
      accepted = std::move(top);
      accepted_nodes = std::move(matched);
      continue;
    }
    for (const Beam& beam : top) out.parent_nodes.push_back(accepted_nodes[static_cast<size_t>(beam.parent)]);
    out.beams = std::move(top);
    break;
  }
  return out;
}

namespace {

// A rejected level of AtSpeed-R (SPEC §9.4): the accepted candidates (acc_cand, indices into cands)
// plus K - |acc| draws without replacement from the residual r = max(0, p - q) over the valid,
// not-yet-chosen candidates, then, if still short, the rest of p in score order. Returns indices
// into cands. `accepted_rows[row]` maps a candidate's row to its row in the level's draft list
// (q's numbering: D row * V + token).
std::vector<size_t> rejection_picks(const std::vector<Candidate>& cands, const std::vector<double>& p,
                                    const std::unordered_map<int64_t, double>& q,
                                    const std::vector<int64_t>& accepted_rows, const std::vector<size_t>& acc_cand,
                                    int64_t k, int64_t vocab, std::mt19937_64& rng) {
  std::vector<char> chosen(cands.size(), 0);
  for (size_t j : acc_cand) chosen[j] = 1;
  std::vector<double> resid(cands.size(), 0.0);
  for (size_t j = 0; j < cands.size(); ++j) {
    if (chosen[j] || p[j] <= 0) continue;
    auto it = q.find(accepted_rows[static_cast<size_t>(cands[j].row)] * vocab + cands[j].token);
    resid[j] = std::max(0.0, p[j] - (it == q.end() ? 0.0 : it->second));
  }
  std::vector<size_t> picks(acc_cand.begin(), acc_cand.end());
  for (int64_t j : draw_without_replacement(resid, k - static_cast<int64_t>(picks.size()), rng)) {
    picks.push_back(static_cast<size_t>(j));
    chosen[static_cast<size_t>(j)] = 1;
  }
  if (static_cast<int64_t>(picks.size()) < k) {
    std::vector<size_t> rest;
    for (size_t j = 0; j < cands.size(); ++j) {
      if (!chosen[j] && std::isfinite(cands[j].raw)) rest.push_back(j);
    }
    std::sort(rest.begin(), rest.end(), [&](size_t a, size_t c) {
      if (cands[a].warped != cands[c].warped) return cands[a].warped > cands[c].warped;
      if (cands[a].raw != cands[c].raw) return cands[a].raw > cands[c].raw;
      return a < c;  // candidates are in (row, token) order
    });
    for (size_t j : rest) {
      if (static_cast<int64_t>(picks.size()) >= k) break;
      picks.push_back(j);
    }
  }
  return picks;
}

}  // namespace

// AtSpeed-R (SPEC §3.5 with the fixes of §9.4): drafted candidate c passes with probability
// min(1, p(c) / q(c)); K passing ones accept the level, else the accepted ones plus draws from the
// residual max(0, p - q) (then p in score order) end the round.
LevelDecision verify_relaxed(Request& r, const VerifyContext& ctx) {
  const int64_t k = ctx.options.beam_width, vocab = ctx.vocab;
  std::vector<Beam> accepted = r.beams;  // A with target scores
  std::vector<int64_t> accepted_nodes = r.beam_nodes;
  std::vector<int64_t> accepted_rows(r.beams.size());  // A's rows in the level's draft list D
  std::iota(accepted_rows.begin(), accepted_rows.end(), 0);
  LevelDecision out;
  for (int64_t level = 1; level <= r.d + 1; ++level) {
    const AllowedRows rows = rows_of(r.target_rows, accepted_nodes, r.target_root);
    const bool bonus = level == r.d + 1;
    // p over A x V in D's row numbering; q = the draft's q_level.
    const auto cands = scored_candidates(accepted, rows, ctx.options.temperature, ctx.options.top_k, k);
    const auto p = warped_softmax(cands);
    auto finish_with = [&](const std::vector<size_t>& picks) {
      for (size_t j : picks) {
        const Candidate& c = cands[j];
        // A fill pick outside the top-k warper has warped = -inf; report its unwarped score.
        const float score = std::isfinite(c.warped) ? c.warped : c.raw;
        out.beams.push_back(extend_beam(accepted[static_cast<size_t>(c.row)], c.row, c.token, score));
        out.parent_nodes.push_back(accepted_nodes[static_cast<size_t>(c.row)]);
      }
    };
    if (bonus) {
      std::vector<size_t> picks;
      for (int64_t j : draw_without_replacement(p, k, r.rng)) picks.push_back(static_cast<size_t>(j));
      finish_with(picks);
      break;
    }
    std::unordered_map<int64_t, size_t> cand_of;  // flat (D row * V + token) -> index into cands
    for (size_t j = 0; j < cands.size(); ++j) {
      cand_of[accepted_rows[static_cast<size_t>(cands[j].row)] * vocab + cands[j].token] = j;
    }
    const auto& q = r.q[static_cast<size_t>(level)];
    const auto& level_nodes = r.draft_nodes[static_cast<size_t>(level)];
    const auto& level_beams = r.draft_beams[static_cast<size_t>(level)];
    std::vector<size_t> acc;       // indices into level_nodes (draft order)
    std::vector<size_t> acc_cand;  // their index into cands
    for (size_t j = 0; j < level_nodes.size(); ++j) {
      const int64_t flat = level_beams[j].parent * vocab + level_beams[j].tokens.back();
      const double u = uniform01(r.rng);
      auto it = cand_of.find(flat);
      const double pc = it == cand_of.end() ? 0.0 : p[it->second];
      if (relaxed_accept(pc, q.at(flat), u)) {
        acc.push_back(j);
        acc_cand.push_back(it->second);
      }
    }
    if (static_cast<int64_t>(acc.size()) >= k) {
      // K of the accepted, uniformly at random, then in flat-index order.
      std::vector<size_t> perm(acc.size());
      std::iota(perm.begin(), perm.end(), 0);
      for (size_t i = perm.size(); i > 1; --i) std::swap(perm[i - 1], perm[uniform_below(r.rng, i)]);
      perm.resize(static_cast<size_t>(k));
      auto flat_of = [&](size_t i) {
        const Beam& beam = level_beams[acc[i]];
        return beam.parent * vocab + beam.tokens.back();
      };
      std::sort(perm.begin(), perm.end(), [&](size_t a, size_t c) { return flat_of(a) < flat_of(c); });
      std::vector<Beam> next;
      std::vector<int64_t> next_nodes, next_rows;
      for (size_t i : perm) {
        const size_t j = acc[i];
        const Candidate& c = cands[acc_cand[i]];
        next.push_back(extend_beam(accepted[static_cast<size_t>(c.row)], static_cast<int64_t>(next.size()), c.token, c.warped));
        next_nodes.push_back(level_nodes[j]);
        next_rows.push_back(static_cast<int64_t>(j));
      }
      ++out.accepted_levels;
      accepted = std::move(next);
      accepted_nodes = std::move(next_nodes);
      accepted_rows = std::move(next_rows);
      continue;
    }
    std::vector<size_t> picks = rejection_picks(cands, p, q, accepted_rows, acc_cand, k, vocab, r.rng);
    // New beams in flat-index order (row, token), like the reference.
    std::sort(picks.begin(), picks.end(), [&](size_t a, size_t c) {
      return std::pair(accepted_rows[static_cast<size_t>(cands[a].row)], cands[a].token) <
             std::pair(accepted_rows[static_cast<size_t>(cands[c].row)], cands[c].token);
    });
    finish_with(picks);
    break;
  }
  return out;
}

}  // namespace atspeed::decode::detail
