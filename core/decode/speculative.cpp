#include "core/decode/speculative.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>

#include "core/config.h"
#include "core/errors.h"

namespace atspeed::decode {

Verification Verification::parse(const std::string& text) {
  if (text == "strict") return Strict;
  if (text == "relaxed") return Relaxed;
  ATSPEED_THROW(Config, "verification must be strict or relaxed (got '", text, "')");
}

void SpeculativeOptions::validate() const {
  config_ensure(beam_width >= 1, "speculative.beam_width", "must be >= 1");
  config_ensure(draft_width >= beam_width, "speculative.draft_width",
                "must be >= the beam width K (" + std::to_string(beam_width) + ")");
  config_ensure(gamma >= 1, "speculative.gamma", "must be >= 1");
  config_ensure(temperature > 0 && std::isfinite(temperature), "speculative.temperature", "must be a finite number > 0");
  config_ensure(top_k >= 0, "speculative.top_k", "must be >= 0 (0 = no top-k warper)");
}

double SpeculativeStats::mean_accepted_levels() const {
  if (accepted_levels.empty()) return 0.0;
  return static_cast<double>(std::accumulate(accepted_levels.begin(), accepted_levels.end(), int64_t{0})) /
         static_cast<double>(accepted_levels.size());
}

bool relaxed_accept(double p, double q, double u) {
  ATSPEED_CHECK(q > 0, "relaxed_accept: q must be > 0 for a drafted candidate (got ", q, ")");
  return u < p / q;
}

namespace {
// Uniform in [0, n) without modulo bias (rejection sampling).
size_t uniform_below(std::mt19937_64& rng, size_t n) {
  const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
  uint64_t x = rng();
  while (x >= limit) x = rng();
  return static_cast<size_t>(x % n);
}
}  // namespace

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// One token of a request's decoding tree. Node 0 is the root: the prompt's last token.
struct Node {
  int64_t parent = -1;       // node id; -1 for the root
  int64_t token = -1;        // code token; -1 for the root
  int64_t target_slot = -1;  // slot in the target scorer; -1 = not fed (or dropped)
  int64_t draft_slot = -1;   // slot in the draft scorer; -1 = not fed (or dropped)
};

Beam extend_beam(const Beam& parent, int64_t parent_index, int64_t token, float score) {
  Beam b;
  b.tokens = parent.tokens;
  b.tokens.push_back(token);
  b.score = score;
  b.parent = parent_index;
  return b;
}

struct Request {
  std::vector<Node> nodes;           // node 0 = root
  std::vector<Beam> beams;           // the K target beams of level `done` (target scores)
  std::vector<int64_t> beam_nodes;   // node of each beam (its last token); {0} before the first level
  int done = 0;                      // levels decided so far
  bool finished = false;
  std::mt19937_64 rng;
  at::Tensor target_root;            // float32 [V]: target log-probs after the prompt (prefill)
  at::Tensor draft_root;             // float32 [V]: draft log-probs after the prompt (prefill)

  // This round.
  int64_t d = 0;                                   // drafted levels
  std::vector<std::vector<Beam>> draft_beams;      // [l]: level-l draft beams (draft cumulative scores); [0] = frontier
  std::vector<std::vector<int64_t>> draft_nodes;   // [l]: their nodes
  std::vector<std::unordered_map<int64_t, double>> q;  // [l]: relaxed: q_l over (row of level l-1) * V + token
  std::unordered_map<int64_t, at::Tensor> draft_rows;   // node -> draft log-probs [V]
  std::unordered_map<int64_t, at::Tensor> target_rows;  // node -> target log-probs [V]
  SpeculativeResult result;
};

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

SpeculativeBeamSearch::SpeculativeBeamSearch(TreeScorer& target, TreeScorer& draft, const Constraint& constraint,
                                             SpeculativeOptions options, int levels)
    : target_(target), draft_(draft), constraint_(constraint), options_(options),
      levels_(levels > 0 ? levels : constraint.vocab().levels()) {
  options_.validate();
  ATSPEED_CHECK(levels_ >= 1 && levels_ <= constraint.vocab().levels(), "speculative search: levels ", levels_,
                " outside [1, ", constraint.vocab().levels(), "]");
}

std::vector<SpeculativeResult> SpeculativeBeamSearch::run(const std::vector<std::vector<int64_t>>& prompts,
                                                          const std::vector<uint64_t>& seeds) {
  const auto start = Clock::now();
  const int64_t batch = static_cast<int64_t>(prompts.size());
  ATSPEED_CHECK(seeds.empty() || static_cast<int64_t>(seeds.size()) == batch, "speculative search: ", seeds.size(),
                " seeds for ", batch, " prompts");
  const bool relaxed = options_.verification.is_relaxed();
  const int64_t k = options_.beam_width, n_draft = options_.draft_width;
  const int64_t vocab = target_.vocab_size();
  ATSPEED_CHECK(draft_.vocab_size() == vocab, "speculative search: draft vocabulary ", draft_.vocab_size(),
                " != target vocabulary ", vocab);
  SearchOptions target_opts;
  target_opts.beam_width = k;
  SearchOptions draft_opts;
  draft_opts.beam_width = n_draft;

  std::vector<Request> reqs(static_cast<size_t>(batch));
  if (batch == 0) return {};

  // Prefill both models. The target's prompt goes into the first round's verification forward
  // with the drafted tree (SPEC §3.3), so decoding takes at most one target forward per level; that
  // needs a first round that drafts (d >= 1), i.e. at least 2 levels.
  const bool fuse_target_prefill = levels_ >= 2 && options_.gamma >= 1;
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
  for (int64_t b = 0; b < batch; ++b) {
    Request& r = reqs[static_cast<size_t>(b)];
    Node root;
    root.target_slot = target_.prompt_length(b) - 1;
    root.draft_slot = draft_.prompt_length(b) - 1;
    r.nodes.push_back(root);
    r.beams = {Beam{}};
    r.beam_nodes = {0};
    r.rng.seed(seeds.empty() ? options_.seed + static_cast<uint64_t>(b) : seeds[static_cast<size_t>(b)]);
    if (!fuse_target_prefill) r.target_root = target_first[b];
    r.draft_root = draft_first[b];
    r.result.stats.target_calls = fuse_target_prefill ? 0 : 1;
    r.result.stats.draft_calls = 1;
    r.result.stats.draft_seconds = draft_prefill_s;
    r.result.stats.verify_seconds = target_prefill_s;
  }

  // Feeds one call's nodes to a scorer. per_request[b]: nodes in feed order (parents before children).
  auto feed = [&](TreeScorer& scorer, bool is_target, const std::vector<std::vector<int64_t>>& per_request) {
    int64_t width = 0;
    for (const auto& v : per_request) width = std::max<int64_t>(width, static_cast<int64_t>(v.size()));
    if (width == 0) return false;
    at::Tensor tokens = at::full({batch, width}, Vocabulary::kPad, at::kLong);
    at::Tensor parents = at::full({batch, width}, -1, at::kLong);
    auto tok = tokens.accessor<int64_t, 2>();
    auto par = parents.accessor<int64_t, 2>();
    const int64_t base = scorer.length();
    for (int64_t b = 0; b < batch; ++b) {
      Request& r = reqs[static_cast<size_t>(b)];
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
    for (int64_t b = 0; b < batch; ++b) {
      Request& r = reqs[static_cast<size_t>(b)];
      const auto& list = per_request[static_cast<size_t>(b)];
      if (list.empty()) continue;
      (is_target ? r.result.stats.target_calls : r.result.stats.draft_calls) += 1;
      if (is_target) r.result.stats.target_nodes += static_cast<int64_t>(list.size());
      auto& rows = is_target ? r.target_rows : r.draft_rows;
      for (size_t j = 0; j < list.size(); ++j) rows[list[j]] = out[b][static_cast<int64_t>(j)];
    }
    return true;
  };
  auto rows_of = [](const std::unordered_map<int64_t, at::Tensor>& rows, const std::vector<int64_t>& nodes,
                    const at::Tensor& root) {
    std::vector<at::Tensor> list;
    list.reserve(nodes.size());
    for (int64_t n : nodes) list.push_back(n == 0 ? root : rows.at(n));
    return at::stack(list);
  };

  while (true) {
    bool any_active = false;
    for (auto& r : reqs) {
      if (r.finished) continue;
      any_active = true;
      r.d = std::min<int64_t>(options_.gamma, levels_ - r.done - 1);
      r.draft_beams.assign(1, r.beams);
      r.draft_nodes.assign(1, r.beam_nodes);
      r.q.assign(1, {});
    }
    if (!any_active) break;
    std::vector<double> draft_s(static_cast<size_t>(batch), 0), verify_s(static_cast<size_t>(batch), 0),
        book_s(static_cast<size_t>(batch), 0);
    auto charge = [&](std::vector<double>& acc, double s, auto pred) {
      for (int64_t b = 0; b < batch; ++b) {
        if (pred(reqs[static_cast<size_t>(b)])) acc[static_cast<size_t>(b)] += s;
      }
    };

    // ---- Draft phase. First the frontier: accepted nodes the draft never fed (level d of the last
    // round when all d levels were accepted), then the beams' own tokens.
    auto t = Clock::now();
    std::vector<std::vector<int64_t>> to_feed(static_cast<size_t>(batch));
    int64_t max_d = 0;
    for (int64_t b = 0; b < batch; ++b) {
      Request& r = reqs[static_cast<size_t>(b)];
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
    feed(draft_, false, to_feed);
    // Then d levels of width N; levels 1..d-1 are fed to the draft.
    for (int64_t level = 1; level <= max_d; ++level) {
      std::vector<std::vector<int64_t>> next_feed(static_cast<size_t>(batch));
      for (int64_t b = 0; b < batch; ++b) {
        Request& r = reqs[static_cast<size_t>(b)];
        if (r.finished || r.d < level) continue;
        const auto& parents = r.draft_beams.back();
        const auto& parent_nodes = r.draft_nodes.back();
        const at::Tensor rows = rows_of(r.draft_rows, parent_nodes, r.draft_root);
        std::vector<Beam> chosen;
        std::unordered_map<int64_t, double> q;
        if (!relaxed) {
          chosen = expand_beams(parents, rows, constraint_, draft_opts);
        } else {
          const auto cands = scored_candidates(parents, rows, constraint_, options_.temperature, options_.top_k, n_draft);
          const auto probs = warped_softmax(cands);
          for (size_t j = 0; j < cands.size(); ++j) {
            if (probs[j] > 0) q[cands[j].row * vocab + cands[j].token] = probs[j];
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
      if (level < max_d) feed(draft_, false, next_feed);
    }
    charge(draft_s, since(t), [](const Request& r) { return !r.finished && r.d > 0; });

    // ---- Verify phase: one target forward over [frontier][level 1]..[level d] of every request.
    t = Clock::now();
    std::vector<std::vector<int64_t>> verify_feed(static_cast<size_t>(batch));
    for (int64_t b = 0; b < batch; ++b) {
      Request& r = reqs[static_cast<size_t>(b)];
      if (r.finished) continue;
      auto& list = verify_feed[static_cast<size_t>(b)];
      for (int64_t n : r.beam_nodes) {
        if (n != 0) list.push_back(n);
      }
      for (size_t level = 1; level < r.draft_nodes.size(); ++level) {
        list.insert(list.end(), r.draft_nodes[level].begin(), r.draft_nodes[level].end());
      }
    }
    feed(target_, true, verify_feed);
    if (!reqs.front().target_root.defined()) {  // first round, prefill fused into this forward
      const at::Tensor first = target_.prompt_logprobs();
      for (int64_t b = 0; b < batch; ++b) reqs[static_cast<size_t>(b)].target_root = first[b];
    }
    charge(verify_s, since(t), [](const Request& r) { return !r.finished; });

    // ---- Verification.
    t = Clock::now();
    for (int64_t b = 0; b < batch; ++b) {
      Request& r = reqs[static_cast<size_t>(b)];
      if (r.finished) continue;
      std::vector<Beam> accepted = r.beams;             // A with target scores
      std::vector<int64_t> accepted_nodes = r.beam_nodes;
      std::vector<int64_t> accepted_rows(r.beams.size());  // A's rows in the level's draft list D
      std::iota(accepted_rows.begin(), accepted_rows.end(), 0);
      std::vector<Beam> new_beams;
      std::vector<int64_t> new_parent_nodes;
      int64_t m = 0;
      for (int64_t level = 1; level <= r.d + 1; ++level) {
        const at::Tensor rows = rows_of(r.target_rows, accepted_nodes, r.target_root);
        const bool bonus = level == r.d + 1;
        if (!relaxed) {
          std::vector<Beam> top = expand_beams(accepted, rows, constraint_, target_opts);
          bool all_drafted = !bonus && !top.empty();
          std::vector<int64_t> matched;
          if (all_drafted) {
            std::unordered_map<int64_t, int64_t> drafted;  // parent node * V + token -> node
            for (int64_t n : r.draft_nodes[static_cast<size_t>(level)]) {
              const Node& node = r.nodes[static_cast<size_t>(n)];
              drafted[node.parent * vocab + node.token] = n;
            }
            for (const Beam& beam : top) {
              auto it = drafted.find(accepted_nodes[static_cast<size_t>(beam.parent)] * vocab + beam.tokens.back());
              if (it == drafted.end()) {
                all_drafted = false;
                break;
              }
              matched.push_back(it->second);
            }
          }
          if (all_drafted) {  // accept level `level`: the target's top-K are all among the draft's N
            ++m;
            accepted = std::move(top);
            accepted_nodes = std::move(matched);
            continue;
          }
          for (const Beam& beam : top) new_parent_nodes.push_back(accepted_nodes[static_cast<size_t>(beam.parent)]);
          new_beams = std::move(top);
          break;
        }
        // Relaxed (SPEC §3.5, §9.4). p over A x V in D's row numbering; q = the draft's q_level.
        const auto cands = scored_candidates(accepted, rows, constraint_, options_.temperature, options_.top_k, k);
        const auto p = warped_softmax(cands);
        auto finish_with = [&](const std::vector<size_t>& picks) {
          for (size_t j : picks) {
            const Candidate& c = cands[j];
            // A fill pick outside the top-k warper has warped = -inf; report its unwarped score.
            const float score = std::isfinite(c.warped) ? c.warped : c.raw;
            new_beams.push_back(extend_beam(accepted[static_cast<size_t>(c.row)], c.row, c.token, score));
            new_parent_nodes.push_back(accepted_nodes[static_cast<size_t>(c.row)]);
          }
        };
        if (bonus) {
          std::vector<size_t> picks;
          for (int64_t j : draw_without_replacement(p, k, r.rng)) picks.push_back(static_cast<size_t>(j));
          finish_with(picks);
          break;
        }
        // flat index in D x V of each candidate, and its p
        std::unordered_map<int64_t, size_t> cand_of;  // flat (D row * V + token) -> index into cands
        for (size_t j = 0; j < cands.size(); ++j) {
          cand_of[accepted_rows[static_cast<size_t>(cands[j].row)] * vocab + cands[j].token] = j;
        }
        const auto& q = r.q[static_cast<size_t>(level)];
        const auto& level_nodes = r.draft_nodes[static_cast<size_t>(level)];
        const auto& level_beams = r.draft_beams[static_cast<size_t>(level)];
        std::vector<size_t> acc;           // indices into level_nodes (draft order)
        std::vector<size_t> acc_cand;      // their index into cands
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
          ++m;
          accepted = std::move(next);
          accepted_nodes = std::move(next_nodes);
          accepted_rows = std::move(next_rows);
          continue;
        }
        // Rejection: the accepted ones plus K - |acc| draws from r = max(0, p - q) over valid,
        // not-yet-chosen entries; then fill from p in score order (SPEC §9.4).
        std::vector<char> chosen(cands.size(), 0);
        for (size_t j : acc_cand) chosen[j] = 1;
        std::vector<double> resid(cands.size(), 0.0);
        for (size_t j = 0; j < cands.size(); ++j) {
          if (chosen[j] || p[j] <= 0) continue;
          auto it = q.find(accepted_rows[static_cast<size_t>(cands[j].row)] * vocab + cands[j].token);
          resid[j] = std::max(0.0, p[j] - (it == q.end() ? 0.0 : it->second));
        }
        std::vector<size_t> picks(acc_cand.begin(), acc_cand.end());
        for (int64_t j : draw_without_replacement(resid, k - static_cast<int64_t>(picks.size()), r.rng)) {
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
        // New beams in flat-index order (row, token), like the reference.
        std::sort(picks.begin(), picks.end(), [&](size_t a, size_t c) {
          return std::pair(accepted_rows[static_cast<size_t>(cands[a].row)], cands[a].token) <
                 std::pair(accepted_rows[static_cast<size_t>(cands[c].row)], cands[c].token);
        });
        finish_with(picks);
        break;
      }
      if (r.d > 0) {
        r.result.stats.rounds += 1;
        r.result.stats.accepted_levels.push_back(m);
        r.result.stats.drafted_levels.push_back(r.d);
      }
      r.done += static_cast<int>(m + 1);
      r.beams.clear();
      r.beam_nodes.clear();
      for (size_t j = 0; j < new_beams.size(); ++j) {
        Node node;
        node.parent = new_parent_nodes[j];
        node.token = new_beams[j].tokens.back();
        r.beam_nodes.push_back(static_cast<int64_t>(r.nodes.size()));
        r.nodes.push_back(node);
        new_beams[j].parent = -1;
        r.beams.push_back(new_beams[j]);
      }
      if (r.done >= levels_ || r.beams.empty()) {
        r.finished = true;
        r.result.beams = r.beams;
        sort_beams(r.result.beams);
      }
      r.draft_rows.clear();
      for (auto it = r.target_rows.begin(); it != r.target_rows.end();) it = it->first == 0 ? std::next(it) : r.target_rows.erase(it);
    }

    // ---- KV: keep the prompt and the ancestors of the live beams (SPEC §9.3), for both models.
    bool any_left = false;
    for (const auto& r : reqs) any_left = any_left || !r.finished;
    if (any_left) {
      for (int which = 0; which < 2; ++which) {
        TreeScorer& scorer = which == 0 ? target_ : draft_;
        const int64_t length = scorer.length();
        int64_t prompt_region = 0;
        for (int64_t b = 0; b < batch; ++b) prompt_region = std::max(prompt_region, scorer.prompt_length(b));
        std::vector<std::vector<int64_t>> keep(static_cast<size_t>(batch));
        int64_t width = 0;
        for (int64_t b = 0; b < batch; ++b) {
          Request& r = reqs[static_cast<size_t>(b)];
          auto& list = keep[static_cast<size_t>(b)];
          for (int64_t s = 0; s < prompt_region; ++s) list.push_back(s);
          if (!r.finished) {
            for (int64_t n : live_ancestors(r)) {
              const int64_t slot = which == 0 ? r.nodes[static_cast<size_t>(n)].target_slot : r.nodes[static_cast<size_t>(n)].draft_slot;
              if (slot >= 0) list.push_back(slot);
            }
          }
          std::sort(list.begin() + prompt_region, list.end());
          width = std::max<int64_t>(width, static_cast<int64_t>(list.size()));
        }
        at::Tensor keep_t = at::empty({batch, width}, at::kLong);
        auto kp = keep_t.accessor<int64_t, 2>();
        for (int64_t b = 0; b < batch; ++b) {
          Request& r = reqs[static_cast<size_t>(b)];
          auto& list = keep[static_cast<size_t>(b)];
          // Remap the kept nodes' slots; every other node's slot is gone.
          std::unordered_map<int64_t, int64_t> new_slot;
          for (size_t j = 0; j < list.size(); ++j) new_slot[list[j]] = static_cast<int64_t>(j);
          for (size_t i = 1; i < r.nodes.size(); ++i) {
            int64_t& slot = which == 0 ? r.nodes[i].target_slot : r.nodes[i].draft_slot;
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
    }
    charge(book_s, since(t), [](const Request&) { return true; });
    for (int64_t b = 0; b < batch; ++b) {
      auto& st = reqs[static_cast<size_t>(b)].result.stats;
      st.draft_seconds += draft_s[static_cast<size_t>(b)];
      st.verify_seconds += verify_s[static_cast<size_t>(b)];
      st.bookkeeping_seconds += book_s[static_cast<size_t>(b)];
    }
  }

  const double seconds = since(start);
  std::vector<SpeculativeResult> out;
  out.reserve(reqs.size());
  for (auto& r : reqs) {
    r.result.stats.seconds = seconds;
    out.push_back(std::move(r.result));
  }
  return out;
}

}  // namespace atspeed::decode
