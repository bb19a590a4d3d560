// Tiny random LLaMA checkpoints for tests that run the real binary (eval, bench decode, serve).
#pragma once

#include <torch/torch.h>

#include <string>

#include "core/config_types.h"
#include "core/io/checkpoint.h"
#include "core/model/llama.h"
#include "core/model/model_io.h"

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

// Writes `m` as a checkpoint of `kind` for the item index with `fingerprint`.
inline void write_model_checkpoint(const std::string& path, model::LlamaModel& m, const std::string& fingerprint,
                                   const std::string& kind = "target") {
  const auto& o = m->options();
  CheckpointAttributes attrs;
  attrs.kind = kind;
  attrs.fingerprint = fingerprint;
  attrs.config_yaml = "model:\n  name: tiny\n  vocab_size: " + std::to_string(o.vocab_size) +
                      "\n  hidden_size: " + std::to_string(o.hidden_size) +
                      "\n  intermediate_size: " + std::to_string(o.intermediate_size) +
                      "\n  num_hidden_layers: " + std::to_string(o.num_hidden_layers) + "\n  num_attention_heads: 4\n  num_key_value_heads: 2\n"
                      "data:\n  sep_token: true\n  history_len: 20\n";
  CheckpointWriter w(path, attrs);
  model::write_parameters(w, *m);
  w.commit();
}

}  // namespace atspeed::test
