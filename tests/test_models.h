// Tiny random LLaMA checkpoints for tests that run the real binary (eval, bench decode, serve).
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/config_types.h"
#include "core/io/checkpoint.h"
#include "core/model/llama.h"
#include "core/model/model_io.h"
#include "core/vocab/item_catalog.h"
#include "core/vocab/vocabulary.h"
#include "data/dataset.h"
#include "tests/test_util.h"

namespace atspeed::test {

// `layers` layers, hidden 16 (or `hidden`), 4 heads, 2 KV heads; weights N(0, 0.3) so logits vary.
inline model::LlamaModel random_model(int64_t vocab, uint64_t seed = 3, int64_t hidden = 16, int64_t layers = 2) {
  ModelConfig c;
  c.name = "tiny";
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = 2 * hidden;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  torch::manual_seed(seed);
  model::LlamaModel m(model::LlamaOptions::from_config(c));
  torch::NoGradGuard g;
  for (auto& p : m->named_parameters()) {
    if (p.key().find("norm") == std::string::npos) p.value().normal_(0.0, 0.3);
  }
  m->eval();
  return m;
}

// Writes `m` as a checkpoint of `kind` for the item index with `fingerprint`. Its stored config names
// data.prompt_format = `prompt_format`, or has no such key when it is "" (a checkpoint from before
// the key existed, which loads as resp).
inline void write_model_checkpoint(const std::string& path, model::LlamaModel& m, const std::string& fingerprint,
                                   const std::string& kind = "target", const std::string& prompt_format = "") {
  const auto& o = m->options();
  CheckpointAttributes attrs;
  attrs.kind = kind;
  attrs.fingerprint = fingerprint;
  attrs.config_yaml = "model:\n  name: tiny\n  vocab_size: " + std::to_string(o.vocab_size) +
                      "\n  hidden_size: " + std::to_string(o.hidden_size) +
                      "\n  intermediate_size: " + std::to_string(o.intermediate_size) +
                      "\n  num_hidden_layers: " + std::to_string(o.num_hidden_layers) + "\n  num_attention_heads: 4\n  num_key_value_heads: 2\n"
                      "data:\n  sep_token: true\n  history_len: 20\n" +
                      (prompt_format.empty() ? std::string() : "  prompt_format: " + prompt_format + "\n");
  CheckpointWriter w(path, attrs);
  model::write_parameters(w, *m);
  w.commit();
}

// The decode fixture of the CLI tests: a synthetic dataset in dir/syn (200 users, 150 items, seed
// 4), random target (seed 3, hidden 16) and draft (seed 5, hidden 8) checkpoints with its fingerprint
// in dir/target.h5 and dir/draft.h5 (4 heads, 2 KV heads, intermediate 2 * hidden: all divide by tp
// = 2). Returns false (after an ADD_FAILURE naming the output) when `data synth` fails.
inline bool write_model_fixture(const TempDir& dir) {
  auto r = run_atspeed("data synth --out " + dir.str("syn") + " --users 200 --items 150 --seed 4");
  if (r.exit_code != 0) {
    ADD_FAILURE() << "data synth failed:\n" << r.output;
    return false;
  }
  const Dataset ds = load_dataset(dir.str("syn"));
  const int64_t vocab = ds.catalog->vocab().size();
  model::LlamaModel target = random_model(vocab, 3, 16);
  model::LlamaModel draft = random_model(vocab, 5, 8);
  write_model_checkpoint(dir.str("target.h5"), target, ds.catalog->fingerprint(), "target");
  write_model_checkpoint(dir.str("draft.h5"), draft, ds.catalog->fingerprint(), "draft");
  return true;
}

// 4 levels x 256 codes (V = 1029). Items share prefixes (8 first codes, 5 second, 3 third), so the
// trie has real fan-out at every level.
inline ItemCatalog random_catalog(int64_t items = 600, uint64_t seed = 11) {
  std::mt19937_64 g(seed);
  std::set<std::vector<int32_t>> seen;
  std::vector<int32_t> codes;
  while (static_cast<int64_t>(seen.size()) < items) {
    std::vector<int32_t> t = {static_cast<int32_t>(g() % 8), static_cast<int32_t>(g() % 5), static_cast<int32_t>(g() % 3),
                              static_cast<int32_t>(g() % 256)};
    if (seen.insert(t).second) codes.insert(codes.end(), t.begin(), t.end());
  }
  return ItemCatalog(Vocabulary(4, 256), codes);
}

// n prompts BOS, 1-6 random history tokens, RESP (token ids valid in a random_catalog vocabulary).
inline std::vector<std::vector<int64_t>> prompts_for(int64_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<std::vector<int64_t>> out;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<int64_t> p = {Vocabulary::kBos};
    const int64_t len = 1 + static_cast<int64_t>(g() % 6);
    for (int64_t j = 0; j < len; ++j) p.push_back(5 + static_cast<int64_t>(g() % 1024));
    p.push_back(Vocabulary::kResp);
    out.push_back(p);
  }
  return out;
}

}  // namespace atspeed::test
