#include "core/decode/beam_search.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "core/config.h"
#include "core/errors.h"

namespace atspeed::decode {

void SearchOptions::validate() const {
  config_ensure(beam_width >= 1, "decode.beam_width", "must be >= 1");
  config_ensure(temperature > 0 && std::isfinite(temperature), "decode.temperature", "must be a finite number > 0");
  config_ensure(top_k >= 0, "decode.top_k", "must be >= 0 (0 = no top-k warper)");
}

namespace {

struct Scored {
  float score;
  int64_t beam;
  int64_t token;
};

// Lexicographic (prefix of beam a + token ta) < (prefix of beam b + token tb); equal-length prefixes.
bool tokens_less(const std::vector<int64_t>& a, const std::vector<int64_t>& b, const Vocabulary& vocab) {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), [&](int64_t x, int64_t y) {
    return vocab.order_key(x) < vocab.order_key(y);
  });
}

bool tuple_less(const std::vector<int64_t>& a, int64_t ta, const std::vector<int64_t>& b, int64_t tb,
                const Vocabulary& vocab) {
  if (a != b) return tokens_less(a, b, vocab);
  return vocab.order_key(ta) < vocab.order_key(tb);
}

Beam make_beam(const std::vector<Beam>& beams, const Scored& c) {
  Beam out;
  out.tokens = beams[static_cast<size_t>(c.beam)].tokens;
  out.tokens.push_back(c.token);
  out.score = c.score;
  out.parent = c.beam;
  return out;
}

}  // namespace

bool beam_before(const Beam& a, const Beam& b, const Vocabulary& vocab) {
  if (a.score != b.score) return a.score > b.score;
  return tokens_less(a.tokens, b.tokens, vocab);
}

void sort_beams(std::vector<Beam>& beams, const Vocabulary& vocab) {
  std::stable_sort(beams.begin(), beams.end(), [&](const Beam& a, const Beam& b) { return beam_before(a, b, vocab); });
}

std::vector<Beam> expand_beams(const std::vector<Beam>& beams, const AllowedRows& rows, const Constraint& constraint,
                               const SearchOptions& options, std::mt19937_64* rng, float* boundary_gap) {
  const int64_t nb = static_cast<int64_t>(beams.size());
  if (nb == 0) return {};
  ATSPEED_CHECK(static_cast<int64_t>(rows.size()) == nb, "expand_beams: ", rows.size(), " rows for ", nb, " beams");
  const int64_t k = options.beam_width;

  if (!options.sample) {
    // Reused per thread: a speculative draft level scores N beams x up to 256 children (10k
    // candidates, 240 KB), and a fresh vector per call costs a large malloc/free pair each time.
    thread_local std::vector<Scored> cands;
    cands.clear();
    for (int64_t i = 0; i < nb; ++i) {
      const Beam& beam = beams[static_cast<size_t>(i)];
      const AllowedRow& row = rows[static_cast<size_t>(i)];
      for (size_t j = 0; j < row.tokens.size(); ++j) {
        const float c = beam.score + row.logprobs[j];  // float32 sums, like the reference's tensors
        if (std::isfinite(c)) cands.push_back({c, i, row.tokens[j]});
      }
    }
    auto less = [&](const Scored& a, const Scored& b) {
      if (a.score != b.score) return a.score > b.score;
      return tuple_less(beams[static_cast<size_t>(a.beam)].tokens, a.token, beams[static_cast<size_t>(b.beam)].tokens,
                        b.token, constraint.vocab());
    };
    const size_t keep = static_cast<size_t>(std::min<int64_t>(k, static_cast<int64_t>(cands.size())));
    // One more than kept when asked for the boundary gap (the best dropped candidate).
    const size_t sorted = boundary_gap != nullptr ? std::min(keep + 1, cands.size()) : keep;
    // `less` is a total order (ties broken by the token tuples), so selecting the first `sorted`
    // and sorting them equals a partial sort, in O(n + sorted log sorted) rather than O(n log sorted).
    if (sorted > 0 && sorted < cands.size())
      std::nth_element(cands.begin(), cands.begin() + static_cast<std::ptrdiff_t>(sorted - 1), cands.end(), less);
    std::sort(cands.begin(), cands.begin() + static_cast<std::ptrdiff_t>(sorted), less);
    if (boundary_gap != nullptr)
      *boundary_gap = sorted > keep && keep > 0 ? cands[keep - 1].score - cands[keep].score
                                                : std::numeric_limits<float>::infinity();
    std::vector<Beam> out;
    out.reserve(keep);
    for (size_t j = 0; j < keep; ++j) out.push_back(make_beam(beams, cands[j]));
    return out;
  }

  // Beam sampling (SPEC §2.1): mask, warp each row (temperature, then top-k per row), add the beam
  // score, softmax over all (beam, token) pairs, draw K without replacement.
  ATSPEED_CHECK(rng != nullptr, "expand_beams: sampling needs a generator");
  const std::vector<Candidate> all = scored_candidates(beams, rows, options.temperature, options.top_k, k);
  std::vector<Beam> out;
  for (int64_t j : draw_without_replacement(warped_softmax(all), k, *rng)) {
    const Candidate& c = all[static_cast<size_t>(j)];
    out.push_back(make_beam(beams, {c.warped, c.row, c.token}));
  }
  return out;
}

namespace {
AllowedRows rows_after(const std::vector<Beam>& beams, const at::Tensor& log_probs, const Constraint& constraint) {
  ATSPEED_CHECK(log_probs.dim() == 2 && log_probs.size(0) == static_cast<int64_t>(beams.size()),
                "log_probs must be [", beams.size(), ", V], got ", log_probs.sizes());
  std::vector<std::vector<int64_t>> prefixes;
  prefixes.reserve(beams.size());
  for (const Beam& b : beams) prefixes.push_back(b.tokens);
  return allowed_rows(log_probs, prefixes, constraint);
}
}  // namespace

std::vector<Beam> expand_beams(const std::vector<Beam>& beams, const at::Tensor& log_probs, const Constraint& constraint,
                               const SearchOptions& options, std::mt19937_64* rng, float* boundary_gap) {
  if (beams.empty()) return {};
  return expand_beams(beams, rows_after(beams, log_probs, constraint), constraint, options, rng, boundary_gap);
}

std::vector<Candidate> scored_candidates(const std::vector<Beam>& beams, const at::Tensor& log_probs,
                                         const Constraint& constraint, double temperature, int64_t top_k, int64_t k) {
  return scored_candidates(beams, rows_after(beams, log_probs, constraint), temperature, top_k, k);
}

std::vector<Candidate> scored_candidates(const std::vector<Beam>& beams, const AllowedRows& rows, double temperature,
                                         int64_t top_k, int64_t k) {
  ATSPEED_CHECK(rows.size() == beams.size(), "scored_candidates: ", rows.size(), " rows for ", beams.size(), " beams");
  const int64_t row_keep = top_k > 0 ? std::max<int64_t>(top_k, k > 1 ? 2 : 1) : 0;
  std::vector<Candidate> out;
  std::vector<float> row;
  for (size_t i = 0; i < beams.size(); ++i) {
    const AllowedRow& allowed = rows[i];
    row.clear();
    for (float lp : allowed.logprobs) row.push_back(temperature != 1.0 ? static_cast<float>(lp / temperature) : lp);
    // HF's TopKLogitsWarper: drop entries below the row_keep-th largest (ties at the threshold stay).
    float threshold = -std::numeric_limits<float>::infinity();
    if (row_keep > 0 && static_cast<int64_t>(row.size()) > row_keep) {
      std::vector<float> sorted = row;
      std::nth_element(sorted.begin(), sorted.begin() + (row_keep - 1), sorted.end(), std::greater<float>());
      threshold = sorted[static_cast<size_t>(row_keep - 1)];
    }
    for (size_t j = 0; j < allowed.tokens.size(); ++j) {
      const float raw = beams[i].score + allowed.logprobs[j];
      const float warped = row[j] < threshold ? -std::numeric_limits<float>::infinity() : beams[i].score + row[j];
      out.push_back({static_cast<int64_t>(i), allowed.tokens[j], raw, warped});
    }
  }
  return out;
}

std::vector<double> warped_softmax(const std::vector<Candidate>& cands) {
  float mx = -std::numeric_limits<float>::infinity();
  for (const auto& c : cands) {
    if (!std::isnan(c.warped)) mx = std::max(mx, c.warped);
  }
  std::vector<double> p(cands.size(), 0.0);
  if (!std::isfinite(mx)) return p;
  double z = 0;
  for (size_t j = 0; j < cands.size(); ++j) {
    if (std::isfinite(cands[j].warped)) z += (p[j] = std::exp(static_cast<double>(cands[j].warped - mx)));
  }
  for (double& x : p) x /= z;
  return p;
}

std::vector<int64_t> draw_without_replacement(const std::vector<double>& w_in, int64_t n, std::mt19937_64& rng) {
  std::vector<double> w = w_in;
  double total = 0;
  for (double x : w) {
    ATSPEED_CHECK(x >= 0 && std::isfinite(x), "draw_without_replacement: weights must be finite and >= 0");
    total += x;
  }
  std::vector<int64_t> out;
  while (static_cast<int64_t>(out.size()) < n && total > 0) {
    const double u = uniform01(rng) * total;
    double acc = 0;
    int64_t pick = -1, last_positive = -1;
    for (size_t j = 0; j < w.size(); ++j) {
      if (w[j] <= 0) continue;
      last_positive = static_cast<int64_t>(j);
      acc += w[j];
      if (u < acc) {
        pick = static_cast<int64_t>(j);
        break;
      }
    }
    if (pick < 0) pick = last_positive;  // rounding at the top end
    if (pick < 0) break;
    out.push_back(pick);
    w[static_cast<size_t>(pick)] = 0;
    // Recomputed rather than subtracted, so rounding never leaves a phantom positive total.
    total = 0;
    for (double x : w) total += x;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

namespace {
int resolve_levels(int levels, const Constraint& constraint) {
  const int out = levels > 0 ? levels : constraint.vocab().levels();
  ATSPEED_CHECK(out >= 1 && out <= constraint.vocab().levels(), "beam search: levels ", out, " outside [1, ",
                constraint.vocab().levels(), "]");
  return out;
}

uint64_t seed_of(const SearchOptions& o, const std::vector<uint64_t>& seeds, size_t i, size_t n) {
  if (seeds.empty()) return o.seed + i;
  ATSPEED_CHECK(seeds.size() == n, "beam search: ", seeds.size(), " seeds for ", n, " prompts");
  return seeds[i];
}
}  // namespace

TargetBeamSearch::TargetBeamSearch(TreeScorer& scorer, const Constraint& constraint, SearchOptions options, int levels)
    : scorer_(scorer), constraint_(constraint), options_(options), levels_(resolve_levels(levels, constraint)) {
  options_.validate();
}

std::vector<SearchResult> TargetBeamSearch::run(const std::vector<std::vector<int64_t>>& prompts,
                                                const std::vector<uint64_t>& seeds) {
  const auto start = std::chrono::steady_clock::now();
  const ScorerCounters counters_before = scorer_.counters();
  const size_t b = prompts.size();
  struct State {
    std::vector<Beam> beams;
    std::vector<int64_t> slots;  // scorer slot of each beam's last token (the prompt's last slot at the root)
    AllowedRows rows;            // the allowed log-probs after each beam
    int depth = 0;
    bool done = false;
    std::mt19937_64 rng;
  };
  std::vector<State> states(b);
  std::vector<SearchResult> results(b);
  TransferStats to_host;
  // One gather per forward: the allowed log-probs of every live beam (rows of out [B, width, V]).
  auto read_rows = [&](const at::Tensor& out) {
    const int64_t width = out.size(1);
    std::vector<std::span<const int64_t>> allowed(b * static_cast<size_t>(width));
    for (size_t r = 0; r < b; ++r) {
      if (states[r].done) continue;
      for (size_t j = 0; j < states[r].beams.size(); ++j)
        allowed[r * static_cast<size_t>(width) + j] = constraint_.allowed(states[r].beams[j].tokens);
    }
    AllowedRows all = gather_allowed(out.reshape({-1, out.size(2)}), allowed, &to_host);
    for (size_t r = 0; r < b; ++r) {
      State& s = states[r];
      if (s.done) continue;
      s.rows.assign(std::make_move_iterator(all.begin() + static_cast<std::ptrdiff_t>(r * static_cast<size_t>(width))),
                    std::make_move_iterator(all.begin() + static_cast<std::ptrdiff_t>(r * static_cast<size_t>(width) +
                                                                                      s.beams.size())));
    }
  };
  const at::Tensor first = scorer_.prefill(prompts);  // [B, V]
  for (size_t r = 0; r < b; ++r) {
    State& s = states[r];
    s.beams = {Beam{}};
    s.slots = {scorer_.prompt_length(static_cast<int64_t>(r)) - 1};
    s.rng.seed(seed_of(options_, seeds, r, b));
    results[r].stats.forward_calls = 1;
  }
  read_rows(first.unsqueeze(1));  // [B, 1, V]
  while (true) {
    int64_t width = 0;
    for (auto& s : states) {
      if (s.done) continue;
      float gap = std::numeric_limits<float>::infinity();
      s.beams = expand_beams(s.beams, s.rows, constraint_, options_, options_.sample ? &s.rng : nullptr,
                             options_.sample ? nullptr : &gap);
      auto& st = results[static_cast<size_t>(&s - states.data())].stats;
      st.min_boundary_gap = std::min(st.min_boundary_gap, gap);
      ++s.depth;
      if (s.depth >= levels_ || s.beams.empty()) {
        s.done = true;
      } else {
        width = std::max<int64_t>(width, static_cast<int64_t>(s.beams.size()));
      }
    }
    if (width == 0) break;
    // One forward over every live request's new level; finished or narrower requests pad (-1).
    at::Tensor tokens = at::full({static_cast<int64_t>(b), width}, Vocabulary::kPad, at::kLong);
    at::Tensor parents = at::full({static_cast<int64_t>(b), width}, -1, at::kLong);
    int64_t* tok = tokens.data_ptr<int64_t>();
    int64_t* par = parents.data_ptr<int64_t>();
    const int64_t base = scorer_.length();
    for (size_t r = 0; r < b; ++r) {
      State& s = states[r];
      if (s.done) continue;
      std::vector<int64_t> slots;
      for (size_t j = 0; j < s.beams.size(); ++j) {
        tok[r * static_cast<size_t>(width) + j] = s.beams[j].tokens.back();
        par[r * static_cast<size_t>(width) + j] = s.slots[static_cast<size_t>(s.beams[j].parent)];
        slots.push_back(base + static_cast<int64_t>(j));
      }
      s.slots = std::move(slots);
      results[r].stats.forward_calls += 1;
      results[r].stats.nodes += static_cast<int64_t>(s.beams.size());
    }
    read_rows(scorer_.extend(tokens, parents));  // [B, width, V]
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double forward_seconds = scorer_.counters().forward_seconds - counters_before.forward_seconds;
  for (size_t r = 0; r < b; ++r) {
    results[r].beams = std::move(states[r].beams);
    sort_beams(results[r].beams, constraint_.vocab());
    results[r].stats.seconds = seconds;
    results[r].stats.forward_seconds = forward_seconds;
    results[r].stats.to_host = to_host;
  }
  return results;
}

// ---------------------------------------------------------------------------------------------

NaiveBeamSearch::NaiveBeamSearch(model::LlamaModel model, const Constraint& constraint, SearchOptions options, int levels)
    : model_(std::move(model)), constraint_(constraint), options_(options), levels_(resolve_levels(levels, constraint)) {
  options_.validate();
}

std::vector<SearchResult> NaiveBeamSearch::run(const std::vector<std::vector<int64_t>>& prompts,
                                               const std::vector<uint64_t>& seeds) {
  std::vector<SearchResult> out;
  for (size_t i = 0; i < prompts.size(); ++i) out.push_back(run_one(prompts[i], seed_of(options_, seeds, i, prompts.size())));
  return out;
}

SearchResult NaiveBeamSearch::run_one(const std::vector<int64_t>& prompt, uint64_t seed) {
  ATSPEED_CHECK(!prompt.empty(), "NaiveBeamSearch: empty prompt");
  c10::InferenceMode guard;
  const auto start = std::chrono::steady_clock::now();
  const at::Device device = model_->parameters().front().device();
  const auto long_opts = torch::TensorOptions().dtype(torch::kLong).device(device);
  const int64_t len = static_cast<int64_t>(prompt.size()), k = options_.beam_width;
  std::mt19937_64 rng(seed);
  SearchResult result;

  // K identical prompt rows, as HF expands input_ids before beam search.
  model::KvCache cache;
  at::Tensor tokens = torch::tensor(prompt, torch::kLong).to(device).unsqueeze(0).expand({k, len}).contiguous();
  at::Tensor positions = torch::arange(len, long_opts).unsqueeze(0).expand({k, len}).contiguous();
  at::Tensor hidden = model_->hidden_states(tokens, positions, model::causal_mask(k, len, 0, at::kFloat, device), &cache);
  at::Tensor rows = torch::log_softmax(model_->logits(hidden.select(1, len - 1).narrow(0, 0, 1)).to(at::kFloat), -1);
  result.stats.forward_calls = 1;

  std::vector<Beam> beams = {Beam{}};
  for (int depth = 0; depth < levels_; ++depth) {
    beams = expand_beams(beams, rows, constraint_, options_, options_.sample ? &rng : nullptr);
    if (depth + 1 == levels_ || beams.empty()) break;
    const int64_t nb = static_cast<int64_t>(beams.size());
    std::vector<int64_t> parent(beams.size()), next(beams.size());
    for (size_t j = 0; j < beams.size(); ++j) {
      parent[j] = beams[j].parent;
      next[j] = beams[j].tokens.back();
    }
    // HF's _reorder_cache: every row's cache becomes its parent's.
    const at::Tensor idx = torch::tensor(parent, torch::kLong).to(device);
    for (size_t l = 0; l < cache.k.size(); ++l) {
      cache.k[l] = cache.k[l].index_select(0, idx);
      cache.v[l] = cache.v[l].index_select(0, idx);
    }
    const int64_t past = cache.length();
    at::Tensor step = torch::tensor(next, torch::kLong).to(device).unsqueeze(1);
    at::Tensor pos = torch::full({nb, 1}, len + depth, long_opts);
    at::Tensor logits = model_->forward(step, pos, torch::zeros({nb, 1, past + 1}, torch::TensorOptions().device(device)), &cache);
    rows = torch::log_softmax(logits.select(1, 0).to(at::kFloat), -1);
    result.stats.forward_calls += 1;
    result.stats.nodes += nb;
  }
  sort_beams(beams, constraint_.vocab());
  result.beams = std::move(beams);
  result.stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace atspeed::decode
