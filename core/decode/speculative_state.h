// Private to core/decode: the per-request state of SpeculativeBeamSearch and the named steps of one
// round (speculative_round.cpp). speculative.h is the public face; nothing outside core/decode
// includes this header except the decoder's own tests.
//
// One round of a batch (SPEC §3.1):
//   start_round()     d = min(gamma, levels - done - 1) per request; false when all finished
//   draft_phase()     feed the frontier to the draft, then draft d levels of width N
//   verify_forward()  ONE target forward over [frontier][level 1]..[level d] of every request
//   verify(r)         strict (AtSpeed-S) or relaxed (AtSpeed-R): a LevelDecision per request
//   advance(r, dec)   the new beams become the frontier; finished requests keep their result
//   compact(which)    each scorer keeps the prompt plus the ancestors of the live beams (SPEC §9.3)
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <random>
#include <unordered_map>
#include <vector>

#include "core/decode/speculative.h"

namespace atspeed::decode::detail {

// One token of a request's decoding tree. Node 0 is the root: the prompt's last token.
struct Node {
  int64_t parent = -1;       // node id; -1 for the root
  int64_t token = -1;        // code token; -1 for the root
  int64_t target_slot = -1;  // slot in the target scorer; -1 = not fed (or dropped)
  int64_t draft_slot = -1;   // slot in the draft scorer; -1 = not fed (or dropped)
};

struct Request {
  std::vector<Node> nodes;           // node 0 = root
  std::vector<Beam> beams;           // the K target beams of level `done` (target scores)
  std::vector<int64_t> beam_nodes;   // node of each beam (its last token); {0} before the first level
  int done = 0;                      // levels decided so far
  bool finished = false;
  std::mt19937_64 rng;               // relaxed: the draft's draws, then the verification's, in level order
  AllowedRow target_root;            // the target's allowed log-probs after the prompt (empty .logprobs until read)
  AllowedRow draft_root;             // the draft's
  bool has_target_root = false;

  // This round.
  int64_t d = 0;                                   // drafted levels
  std::vector<std::vector<Beam>> draft_beams;      // [l]: level-l draft beams (draft cumulative scores); [0] = frontier
  std::vector<std::vector<int64_t>> draft_nodes;   // [l]: their nodes
  std::vector<std::unordered_map<int64_t, double>> q;  // [l]: relaxed: q_l over (row of level l-1) * V + token
  std::unordered_map<int64_t, AllowedRow> draft_rows;   // node -> the draft's allowed log-probs after it
  std::unordered_map<int64_t, AllowedRow> target_rows;  // node -> the target's
  SpeculativeResult result;

  // The code tokens from the root to `node` (its prefix for the constraint).
  std::vector<int64_t> prefix_of(int64_t node) const;
};

// What verification decided for one request this round: m accepted drafted levels, then the K beams
// of level done + m + 1 (target scores; parent = index into the accepted list) and the node each
// extends.
struct LevelDecision {
  int64_t accepted_levels = 0;
  std::vector<Beam> beams;
  std::vector<int64_t> parent_nodes;
};

// What a verifier reads besides the request.
struct VerifyContext {
  const Constraint& constraint;
  const SpeculativeOptions& options;
  int64_t vocab;
};

// The two verifiers behind one signature (speculative_verify.cpp).
using Verifier = LevelDecision (*)(Request& r, const VerifyContext& ctx);
LevelDecision verify_strict(Request& r, const VerifyContext& ctx);
LevelDecision verify_relaxed(Request& r, const VerifyContext& ctx);

// The allowed log-prob rows of `nodes` (node 0 = the root row), one per node.
AllowedRows rows_of(const std::unordered_map<int64_t, AllowedRow>& rows, const std::vector<int64_t>& nodes,
                    const AllowedRow& root);
// `parent` extended by `token` with cumulative `score`; parent index `parent_index`.
Beam extend_beam(const Beam& parent, int64_t parent_index, int64_t token, float score);

// A batch of requests decoding in lockstep: the state and the steps of a round.
class SpeculativeBatch {
 public:
  // Prefills both models (the target's prompt deferred into the first verification when it drafts).
  SpeculativeBatch(TreeScorer& target, TreeScorer& draft, const Constraint& constraint, const SpeculativeOptions& options,
                   int levels, const std::vector<std::vector<int64_t>>& prompts, const std::vector<uint64_t>& seeds);

  bool start_round();
  void draft_phase();
  void verify_forward();
  // Verification of every active request, then advance().
  void verify_all();
  // Both scorers keep the prompt and the live ancestors (no-op when every request finished).
  void compact_both();
  // Adds this round's phase times to each request's stats.
  void charge_round();
  std::vector<SpeculativeResult> results(double seconds);

 private:
  enum class Which { Target, Draft };
  // Feeds per_request[b] (nodes, parents before children) to one scorer in one extend(); stores
  // each node's slot and allowed log-prob row, read in one copy to the host (with the target's
  // prompt rows when its prefill was fused into this forward). False when there was nothing to feed.
  bool feed(Which which, const std::vector<std::vector<int64_t>>& per_request);
  void advance(Request& r, LevelDecision decision);
  // The root rows of every request from prompt log-probs [B, V] (prefill's), in one copy.
  void read_roots(Which which, const at::Tensor& prompt_logprobs);
  void compact(Which which);
  // Adds `seconds` to the phase time of every request for which pred holds.
  template <typename Pred>
  void charge(std::vector<double>& acc, double seconds, Pred pred);

  TreeScorer& target_;
  TreeScorer& draft_;
  const Constraint& constraint_;
  const SpeculativeOptions& options_;
  int levels_;
  int64_t batch_;
  int64_t vocab_;
  std::vector<Request> reqs_;
  std::vector<double> draft_s_, verify_s_, book_s_;  // this round's phase time per request
  TransferStats to_host_;                            // the batch's device-to-host copies
  ScorerCounters target_before_, draft_before_;      // the scorers' counters when the batch started
};

}  // namespace atspeed::decode::detail
