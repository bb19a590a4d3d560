// The steps of one speculative round over a batch (speculative_state.h). Conventions: `target_…` /
// `draft_…` name the two models' values; a node's `target_slot` / `draft_slot` is where its token
// sits in that model's TreeScorer (-1 = not fed).
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <numeric>

#include "core/decode/speculative_state.h"
#include "core/errors.h"

namespace atspeed::decode::detail {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Ancestors (parent chain, root excluded) of the parents of the current beams: what the KV keeps.
std::vector<int64_t> live_ancestors(const Request& r) {
  std::vector<char> mark(r.nodes.size(), 0);
  for (int64_t n : r.beam_nodes) {
    for (int64_t a = r.nodes[static_cast<size_t>(n)].parent; a > 0 && !mark[static_cast<size_t>(a)];
         a = r.nodes[static_cast<size_t>(a)].parent) {
      mark[static_cast<size_t>(a)] = 1;
    }
  }
  std::vector<int64_t> out;
  for (size_t i = 1; i < mark.size(); ++i) {
    if (mark[i]) out.push_back(static_cast<int64_t>(i));
  }
  return out;
}

}  // namespace

AllowedRows rows_of(const std::unordered_map<int64_t, AllowedRow>& rows, const std::vector<int64_t>& nodes,
                    const AllowedRow& root) {
  AllowedRows out;
  out.reserve(nodes.size());
  for (int64_t n : nodes) out.push_back(n == 0 ? root : rows.at(n));
  return out;
}

std::vector<int64_t> Request::prefix_of(int64_t node) const {
  std::vector<int64_t> out;
  for (int64_t a = node; a > 0; a = nodes[static_cast<size_t>(a)].parent) out.push_back(nodes[static_cast<size_t>(a)].token);
  std::reverse(out.begin(), out.end());
  return out;
}

Beam extend_beam(const Beam& parent, int64_t parent_index, int64_t token, float score) {
  Beam b;
  b.tokens = parent.tokens;
  b.tokens.push_back(token);
  b.score = score;
  b.parent = parent_index;
  return b;
}

SpeculativeBatch::SpeculativeBatch(TreeScorer& target, TreeScorer& draft, const Constraint& constraint,
                                   const SpeculativeOptions& options, int levels,
                                   const std::vector<std::vector<int64_t>>& prompts, const std::vector<uint64_t>& seeds)
    : target_(target), draft_(draft), constraint_(constraint), options_(options), levels_(levels),
      batch_(static_cast<int64_t>(prompts.size())), vocab_(target.vocab_size()), reqs_(prompts.size()) {
  // The target's prompt goes into the first round's verification forward with the drafted tree
  // (SPEC §3.3), so decoding takes at most one target forward per level; that needs a first round
  // that drafts (d >= 1), i.e. at least 2 levels.
  const bool fuse_target_prefill = levels_ >= 2 && options_.gamma >= 1;
  target_before_ = target_.counters();
  draft_before_ = draft_.counters();
  auto t0 = Clock::now();
  const at::Tensor draft_first = draft_.prefill(prompts);
  const double draft_prefill_s = since(t0);
  t0 = Clock::now();
  at::Tensor target_first;
  if (fuse_target_prefill)
    target_.prefill_deferred(prompts);
  else
    target_first = target_.prefill(prompts);
  const double target_prefill_s = since(t0);
  for (int64_t b = 0; b < batch_; ++b) {
    Request& r = reqs_[static_cast<size_t>(b)];
    Node root;
    root.target_slot = target_.prompt_length(b) - 1;
    root.draft_slot = draft_.prompt_length(b) - 1;
    r.nodes.push_back(root);
    r.beams = {Beam{}};
    r.beam_nodes = {0};
    r.rng.seed(seeds.empty() ? options_.seed + static_cast<uint64_t>(b) : seeds[static_cast<size_t>(b)]);
    r.result.stats.target_calls = fuse_target_prefill ? 0 : 1;
    r.result.stats.draft_calls = 1;
    r.result.stats.draft_seconds = draft_prefill_s;
    r.result.stats.verify_seconds = target_prefill_s;
  }
  read_roots(Which::Draft, draft_first);
  if (!fuse_target_prefill) read_roots(Which::Target, target_first);
}

void SpeculativeBatch::read_roots(Which which, const at::Tensor& prompt_logprobs) {
  const std::vector<std::span<const int64_t>> allowed(static_cast<size_t>(batch_), constraint_.allowed({}));
  AllowedRows rows = gather_allowed(prompt_logprobs, allowed, &to_host_);
  for (int64_t b = 0; b < batch_; ++b) {
    Request& r = reqs_[static_cast<size_t>(b)];
    (which == Which::Target ? r.target_root : r.draft_root) = std::move(rows[static_cast<size_t>(b)]);
    if (which == Which::Target) r.has_target_root = true;
  }
}

template <typename Pred>
void SpeculativeBatch::charge(std::vector<double>& acc, double seconds, Pred pred) {
  for (int64_t b = 0; b < batch_; ++b) {
    if (pred(reqs_[static_cast<size_t>(b)])) acc[static_cast<size_t>(b)] += seconds;
  }
}

bool SpeculativeBatch::start_round() {
  bool any_active = false;
  for (auto& r : reqs_) {
    if (r.finished) continue;
    any_active = true;
    r.d = std::min<int64_t>(options_.gamma, levels_ - r.done - 1);
    r.draft_beams.assign(1, r.beams);
    r.draft_nodes.assign(1, r.beam_nodes);
    r.q.assign(1, {});
  }
  draft_s_.assign(static_cast<size_t>(batch_), 0.0);
  verify_s_.assign(static_cast<size_t>(batch_), 0.0);
  book_s_.assign(static_cast<size_t>(batch_), 0.0);
  return any_active;
}

bool SpeculativeBatch::feed(Which which, const std::vector<std::vector<int64_t>>& per_request) {
  const bool is_target = which == Which::Target;
  TreeScorer& scorer = is_target ? target_ : draft_;
  int64_t width = 0;
  for (const auto& v : per_request) width = std::max<int64_t>(width, static_cast<int64_t>(v.size()));
  if (width == 0) return false;
  at::Tensor tokens = at::full({batch_, width}, Vocabulary::kPad, at::kLong);  // [B, width]
  at::Tensor parents = at::full({batch_, width}, -1, at::kLong);               // [B, width] parent slots
  auto tok = tokens.accessor<int64_t, 2>();
  auto par = parents.accessor<int64_t, 2>();
  const int64_t base = scorer.length();
  for (int64_t b = 0; b < batch_; ++b) {
    Request& r = reqs_[static_cast<size_t>(b)];
    const auto& list = per_request[static_cast<size_t>(b)];
    for (size_t j = 0; j < list.size(); ++j) {
      Node& node = r.nodes[static_cast<size_t>(list[j])];
      const Node& parent = r.nodes[static_cast<size_t>(node.parent)];
      const int64_t parent_slot = is_target ? parent.target_slot : parent.draft_slot;
      ATSPEED_CHECK(parent_slot >= 0, "speculative search: node fed before its parent");
      tok[b][static_cast<int64_t>(j)] = node.token;
      par[b][static_cast<int64_t>(j)] = parent_slot;
      (is_target ? node.target_slot : node.draft_slot) = base + static_cast<int64_t>(j);
    }
  }
  const at::Tensor out = scorer.extend(tokens, parents);  // [B, width, V]
  // One copy to the host: every fed node's allowed log-probs, plus the prompt rows when the target's
  // prefill went into this forward (rows [B * width, V] then [B, V]).
  const bool with_roots = is_target && !reqs_.front().has_target_root;
  std::vector<at::Tensor> parts{out.reshape({batch_ * width, out.size(2)})};
  std::vector<std::span<const int64_t>> allowed(static_cast<size_t>(batch_ * width));
  for (int64_t b = 0; b < batch_; ++b) {
    const Request& r = reqs_[static_cast<size_t>(b)];
    const auto& list = per_request[static_cast<size_t>(b)];
    for (size_t j = 0; j < list.size(); ++j)
      allowed[static_cast<size_t>(b * width) + j] = constraint_.allowed(r.prefix_of(list[j]));
  }
  if (with_roots) {
    parts.push_back(target_.prompt_logprobs());
    allowed.resize(allowed.size() + static_cast<size_t>(batch_), constraint_.allowed({}));
  }
  AllowedRows rows = gather_allowed(parts, allowed, &to_host_);
  for (int64_t b = 0; b < batch_; ++b) {
    Request& r = reqs_[static_cast<size_t>(b)];
    if (with_roots) {
      r.target_root = std::move(rows[static_cast<size_t>(batch_ * width + b)]);
      r.has_target_root = true;
    }
    const auto& list = per_request[static_cast<size_t>(b)];
    if (list.empty()) continue;
    (is_target ? r.result.stats.target_calls : r.result.stats.draft_calls) += 1;
    if (is_target) r.result.stats.target_nodes += static_cast<int64_t>(list.size());
    auto& node_rows = is_target ? r.target_rows : r.draft_rows;
    for (size_t j = 0; j < list.size(); ++j) node_rows[list[j]] = std::move(rows[static_cast<size_t>(b * width) + j]);
  }
  return true;
}

void SpeculativeBatch::draft_phase() {
  const auto t = Clock::now();
  const bool relaxed = options_.verification.is_relaxed();
  const int64_t n_draft = options_.draft_width;
  SearchOptions draft_opts;
  draft_opts.beam_width = n_draft;
  // First the frontier: accepted nodes the draft never fed (level d of the last round when all d
  // levels were accepted), then the beams' own tokens.
  std::vector<std::vector<int64_t>> to_feed(static_cast<size_t>(batch_));
  int64_t max_d = 0;
  for (int64_t b = 0; b < batch_; ++b) {
    Request& r = reqs_[static_cast<size_t>(b)];
    if (r.finished || r.d == 0) continue;
    max_d = std::max(max_d, r.d);
    std::vector<int64_t> missing;
    for (int64_t n : r.beam_nodes) {
      for (int64_t a = r.nodes[static_cast<size_t>(n)].parent; a > 0 && r.nodes[static_cast<size_t>(a)].draft_slot < 0;
           a = r.nodes[static_cast<size_t>(a)].parent) {
        if (std::find(missing.begin(), missing.end(), a) == missing.end()) missing.push_back(a);
      }
    }
    std::sort(missing.begin(), missing.end());  // node ids grow with depth: parents first
    auto& list = to_feed[static_cast<size_t>(b)];
    list = missing;
    for (int64_t n : r.beam_nodes) {
      if (n != 0) list.push_back(n);
    }
  }
  feed(Which::Draft, to_feed);
  // Then d levels of width N; levels 1..d-1 are fed to the draft.
  for (int64_t level = 1; level <= max_d; ++level) {
    std::vector<std::vector<int64_t>> next_feed(static_cast<size_t>(batch_));
    for (int64_t b = 0; b < batch_; ++b) {
      Request& r = reqs_[static_cast<size_t>(b)];
      if (r.finished || r.d < level) continue;
      const auto& parents = r.draft_beams.back();
      const auto& parent_nodes = r.draft_nodes.back();
      const AllowedRows rows = rows_of(r.draft_rows, parent_nodes, r.draft_root);
      std::vector<Beam> chosen;
      std::unordered_map<int64_t, double> q;
      if (!relaxed) {
        chosen = expand_beams(parents, rows, constraint_, draft_opts);
      } else {
        const auto cands = scored_candidates(parents, rows, options_.temperature, options_.top_k, n_draft);
        const auto probs = warped_softmax(cands);
        for (size_t j = 0; j < cands.size(); ++j) {
          if (probs[j] > 0) q[cands[j].row * vocab_ + cands[j].token] = probs[j];
        }
        for (int64_t j : draw_without_replacement(probs, n_draft, r.rng)) {
          const Candidate& c = cands[static_cast<size_t>(j)];
          chosen.push_back(extend_beam(parents[static_cast<size_t>(c.row)], c.row, c.token, c.warped));
        }
      }
      std::vector<int64_t> nodes;
      for (const Beam& beam : chosen) {
        Node node;
        node.parent = parent_nodes[static_cast<size_t>(beam.parent)];
        node.token = beam.tokens.back();
        nodes.push_back(static_cast<int64_t>(r.nodes.size()));
        r.nodes.push_back(node);
      }
      if (level < r.d) next_feed[static_cast<size_t>(b)] = nodes;
      r.draft_beams.push_back(std::move(chosen));
      r.draft_nodes.push_back(std::move(nodes));
      r.q.push_back(std::move(q));
    }
    if (level < max_d) feed(Which::Draft, next_feed);
  }
  charge(draft_s_, since(t), [](const Request& r) { return !r.finished && r.d > 0; });
}

void SpeculativeBatch::verify_forward() {
  const auto t = Clock::now();
  std::vector<std::vector<int64_t>> verify_feed(static_cast<size_t>(batch_));
  for (int64_t b = 0; b < batch_; ++b) {
    Request& r = reqs_[static_cast<size_t>(b)];
    if (r.finished) continue;
    auto& list = verify_feed[static_cast<size_t>(b)];
    for (int64_t n : r.beam_nodes) {
      if (n != 0) list.push_back(n);
    }
    for (size_t level = 1; level < r.draft_nodes.size(); ++level) {
      list.insert(list.end(), r.draft_nodes[level].begin(), r.draft_nodes[level].end());
    }
  }
  feed(Which::Target, verify_feed);  // reads the prompt rows too when the prefill was fused into it
  charge(verify_s_, since(t), [](const Request& r) { return !r.finished; });
}

void SpeculativeBatch::verify_all() {
  const auto t = Clock::now();
  const VerifyContext ctx{constraint_, options_, vocab_};
  const Verifier verify = options_.verification.is_strict() ? verify_strict : verify_relaxed;
  for (auto& r : reqs_) {
    if (!r.finished) advance(r, verify(r, ctx));
  }
  charge(book_s_, since(t), [](const Request&) { return true; });
}

void SpeculativeBatch::advance(Request& r, LevelDecision decision) {
  if (r.d > 0) {
    r.result.stats.rounds += 1;
    r.result.stats.accepted_levels.push_back(decision.accepted_levels);
    r.result.stats.drafted_levels.push_back(r.d);
  }
  r.done += static_cast<int>(decision.accepted_levels + 1);
  r.beams.clear();
  r.beam_nodes.clear();
  for (size_t j = 0; j < decision.beams.size(); ++j) {
    Node node;
    node.parent = decision.parent_nodes[j];
    node.token = decision.beams[j].tokens.back();
    r.beam_nodes.push_back(static_cast<int64_t>(r.nodes.size()));
    r.nodes.push_back(node);
    decision.beams[j].parent = -1;
    r.beams.push_back(std::move(decision.beams[j]));
  }
  if (r.done >= levels_ || r.beams.empty()) {
    r.finished = true;
    r.result.beams = r.beams;
    sort_beams(r.result.beams, constraint_.vocab());
  }
  r.draft_rows.clear();
  for (auto it = r.target_rows.begin(); it != r.target_rows.end();) it = it->first == 0 ? std::next(it) : r.target_rows.erase(it);
}

void SpeculativeBatch::compact_both() {
  const auto t = Clock::now();
  const bool any_left = std::any_of(reqs_.begin(), reqs_.end(), [](const Request& r) { return !r.finished; });
  if (any_left) {
    compact(Which::Target);
    compact(Which::Draft);
  }
  charge(book_s_, since(t), [](const Request&) { return true; });
}

// One scorer keeps, per request, its prompt region and the live beams' ancestors (SPEC §9.3); the
// kept slots are renumbered 0.. in that order, and every request is padded to the same width with
// filler slots that no live node attends to.
void SpeculativeBatch::compact(Which which) {
  const bool is_target = which == Which::Target;
  TreeScorer& scorer = is_target ? target_ : draft_;
  const int64_t length = scorer.length();
  int64_t prompt_region = 0;
  for (int64_t b = 0; b < batch_; ++b) prompt_region = std::max(prompt_region, scorer.prompt_length(b));
  std::vector<std::vector<int64_t>> keep(static_cast<size_t>(batch_));
  int64_t width = 0;
  for (int64_t b = 0; b < batch_; ++b) {
    Request& r = reqs_[static_cast<size_t>(b)];
    auto& list = keep[static_cast<size_t>(b)];
    for (int64_t s = 0; s < prompt_region; ++s) list.push_back(s);
    if (!r.finished) {
      for (int64_t n : live_ancestors(r)) {
        const Node& node = r.nodes[static_cast<size_t>(n)];
        const int64_t slot = is_target ? node.target_slot : node.draft_slot;
        if (slot >= 0) list.push_back(slot);
      }
    }
    std::sort(list.begin() + prompt_region, list.end());
    width = std::max<int64_t>(width, static_cast<int64_t>(list.size()));
  }
  at::Tensor keep_t = at::empty({batch_, width}, at::kLong);  // [B, width] kept slots
  auto kp = keep_t.accessor<int64_t, 2>();
  for (int64_t b = 0; b < batch_; ++b) {
    Request& r = reqs_[static_cast<size_t>(b)];
    auto& list = keep[static_cast<size_t>(b)];
    // Remap the kept nodes' slots; every other node's slot is gone.
    std::unordered_map<int64_t, int64_t> new_slot;
    for (size_t j = 0; j < list.size(); ++j) new_slot[list[j]] = static_cast<int64_t>(j);
    for (size_t i = 1; i < r.nodes.size(); ++i) {
      int64_t& slot = is_target ? r.nodes[i].target_slot : r.nodes[i].draft_slot;
      if (slot < 0) continue;
      auto it = new_slot.find(slot);
      slot = it == new_slot.end() || r.finished ? -1 : it->second;
    }
    // Fillers: slots that are no live node's ancestor, so nothing kept ever attends to them.
    std::vector<char> used(static_cast<size_t>(length), 0);
    for (int64_t s : list) used[static_cast<size_t>(s)] = 1;
    for (int64_t s = length - 1; static_cast<int64_t>(list.size()) < width && s >= 0; --s) {
      if (!used[static_cast<size_t>(s)]) list.push_back(s);
    }
    ATSPEED_CHECK(static_cast<int64_t>(list.size()) == width, "speculative search: not enough filler slots");
    for (int64_t j = 0; j < width; ++j) kp[b][j] = list[static_cast<size_t>(j)];
  }
  scorer.compact(keep_t);
}

void SpeculativeBatch::charge_round() {
  for (int64_t b = 0; b < batch_; ++b) {
    auto& st = reqs_[static_cast<size_t>(b)].result.stats;
    st.draft_seconds += draft_s_[static_cast<size_t>(b)];
    st.verify_seconds += verify_s_[static_cast<size_t>(b)];
    st.bookkeeping_seconds += book_s_[static_cast<size_t>(b)];
  }
}

std::vector<SpeculativeResult> SpeculativeBatch::results(double seconds) {
  std::vector<SpeculativeResult> out;
  out.reserve(reqs_.size());
  const double target_fwd = target_.counters().forward_seconds - target_before_.forward_seconds;
  const double draft_fwd = draft_.counters().forward_seconds - draft_before_.forward_seconds;
  for (auto& r : reqs_) {
    r.result.stats.seconds = seconds;
    r.result.stats.target_forward_seconds = target_fwd;
    r.result.stats.draft_forward_seconds = draft_fwd;
    r.result.stats.to_host = to_host_;
    out.push_back(std::move(r.result));
  }
  return out;
}

}  // namespace atspeed::decode::detail
