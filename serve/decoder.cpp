#include "serve/decoder.h"

#include <ATen/Parallel.h>

#include <chrono>

#include "core/decode/runner.h"
#include "core/decode/tree_scorer.h"
#include "core/errors.h"
#include "core/vocab/constraint.h"

namespace atspeed::serve {

ModelDecoder::ModelDecoder(std::unique_ptr<decode::TreeScorer> target, std::unique_ptr<decode::TreeScorer> draft,
                           std::shared_ptr<const Constraint> constraint, SpeculativeSettings settings)
    : target_(std::move(target)), draft_(std::move(draft)), constraint_(std::move(constraint)), settings_(settings) {
  ATSPEED_CHECK(target_ != nullptr && constraint_ != nullptr, "ModelDecoder needs a target scorer and a constraint");
}

ModelDecoder::~ModelDecoder() = default;

// OpenMP's thread count is per thread: a new std::thread would use the default (all cores), not
// run.threads; libtorch's init_num_threads() applies the process setting to this thread.
void ModelDecoder::prepare_thread() { at::init_num_threads(); }

std::vector<DecodeResult> ModelDecoder::decode(const BatchKey& key, const std::vector<const DecodeJob*>& jobs) {
  ATSPEED_CHECK(!jobs.empty(), "empty batch");
  std::vector<std::vector<int64_t>> prompts;
  std::vector<uint64_t> seeds;
  prompts.reserve(jobs.size());
  for (const DecodeJob* j : jobs) {
    ATSPEED_CHECK(j->key == key, "a batch mixes keys");
    prompts.push_back(j->prompt);
    seeds.push_back(j->seed);
  }
  const auto start = std::chrono::steady_clock::now();
  std::vector<DecodeResult> out(jobs.size());
  auto to_tuples = [](const std::vector<decode::Beam>& beams) {
    std::vector<RankedTuple> t;
    t.reserve(beams.size());
    for (const auto& b : beams) t.push_back({b.tokens, b.score});
    return t;
  };
  decode::RunSettings settings;
  settings.mode = key.mode;
  settings.k = key.k;
  settings.draft_width = key.draft_width;
  settings.gamma = key.gamma > 0 ? key.gamma : settings_.gamma;
  settings.temperature = settings_.temperature;
  settings.top_k = settings_.top_k;
  // Deterministic modes draw nothing; relaxed draws from each job's seed.
  const auto results = decode::run_batch(*target_, draft_.get(), *constraint_, settings, prompts,
                                         key.mode.is_relaxed() ? seeds : std::vector<uint64_t>{});
  for (size_t i = 0; i < results.size(); ++i) {
    const auto& r = results[i];
    out[i].tuples = to_tuples(r.beams);
    out[i].stats.rounds = r.rounds;
    out[i].stats.accepted_levels = r.accepted_levels;
    out[i].stats.target_forwards = r.target_forwards;
    out[i].stats.draft_forwards = r.draft_forwards;
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  for (auto& r : out) r.stats.decode_ms = ms;
  return out;
}

}  // namespace atspeed::serve
