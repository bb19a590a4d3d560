// A seeded synthetic dataset in the LC-Rec layout, so the quickstart and the tests run anywhere.
//
// Items fall into `clusters` clusters (one first-level code each) of `subclusters` subclusters
// (one second-level code each); the third code comes from a small per-subcluster pool and the
// fourth is random, so the trie looks like the real ones (wide at level 2, nearly determined
// after two codes) and a few code tuples collide. Users walk through clusters: each next item
// stays in the current cluster with probability stay_prob (often in the same subcluster, with
// Zipf-like item popularity) and otherwise moves to a neighbouring cluster (k +- 1), so the next
// item is predictable from the history's leading codes. Interactions get day-granular times and
// go through the same global-time split as `atspeed preprocess` (SPEC §1.4 steps 6-8), which
// gives shares and empty valid/test lists like the real data. Items never used are dropped, so
// the item count is at most `items`.
#pragma once

#include <cstdint>
#include <string>

#include "core/vocab/vocabulary.h"

namespace atspeed {

struct SynthOptions {
  int64_t users = 2000;
  int64_t items = 1000;
  int64_t seed = 2023;
  int64_t clusters = 16;
  int64_t subclusters = 8;
  double mean_length = 9.0;   // mean interactions per user before the split (minimum 5, as 5-core)
  double stay_prob = 0.8;     // probability that the next item stays in the current cluster
};

// Throws Error(Config) naming `<prefix>.<key>`.
void validate_synth_options(const SynthOptions& options, const std::string& prefix, int64_t codebook_size);

// Writes <dir>/synthetic.LCRec-1e-3lr.json, sequential_{train,valid,test}.txt and synth.json (the
// parameters). Deterministic for given options.
void generate_synthetic_dataset(const std::string& dir, const SynthOptions& options, const Vocabulary& vocab = Vocabulary());
// Generates into dir unless synth.json there already records the same options and vocabulary.
void ensure_synthetic_dataset(const std::string& dir, const SynthOptions& options, const Vocabulary& vocab = Vocabulary());

}  // namespace atspeed
