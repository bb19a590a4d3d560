// The `data` config section (configs/data/<name>.yaml).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/config.h"
#include "core/vocab/prompt.h"
#include "data/synth.h"

namespace atspeed {

class TextTokenizer;

struct DataConfig {
  std::string name = "beauty";
  // Dataset directory. A relative path is relative to the current working directory (not to the
  // config file): the shipped configs assume atspeed runs from the repository root, where the data
  // lives at ../shared/data/amazon/<ds>. An absolute path works from anywhere.
  std::string dir = "../shared/data/amazon/beauty";
  // Index file inside dir; "" = the single *.LCRec*.json file there.
  std::string index_file;
  std::string source = "files";      // files: read dir; synthetic: generate into dir when absent/stale
  int levels = 4;                    // code levels per item
  int64_t codebook_size = 256;       // codes per level
  int history_len = 20;              // history cut to its last history_len items (SPEC §1.5)
  // Prompt layout (core/vocab/prompt.h): resp (BOS, items [SEP], RESP; every checkpoint written
  // before this key existed) or stream (BOS, items each ending in EOS; allows train_samples one_pass).
  // lcrec: the LC-Rec text prompt (SPEC §1.6) through `tokenizer`, for converted LC-Rec checkpoints.
  std::string prompt_format = "resp";
  // An HF tokenizer directory (tokenizer.model + tokenizer_config.json/added_tokens.json, as
  // LlamaTokenizer.save_pretrained writes it, with the code tokens added): makes the vocabulary a
  // text vocabulary (core/vocab/vocabulary.h). "" = tokenizer-free. Needs prompt_format lcrec.
  // Relative to the current working directory, like dir.
  std::string tokenizer;
  bool sep_token = true;             // resp: SEP after every history item in the prompt; stream: must be true
  std::string constraint = "trie";   // trie (real items only, SPEC §9.1) or level (the reference's timing setup)
  // Target training: every prefix as its own row (§9.7), last (one per user), or one_pass (every prefix,
  // scored in one causal pass over windows of history_len + 1 items; needs prompt_format stream).
  std::string train_samples = "all_prefixes";
  std::string draft_samples = "last";          // teacher data / draft training: last (§1.5) or all_prefixes
  SynthOptions synthetic;            // generator parameters, used when source = synthetic
  // Not a config key: the tokenizer a converted LC-Rec checkpoint carries, set by the commands that
  // load one (launch/model_loading.h, apply_prompt_settings) so that data.tokenizer is optional there.
  std::shared_ptr<const TextTokenizer> checkpoint_tokenizer;

  PromptLayout layout() const { return PromptLayout::from_config(prompt_format, sep_token); }

  void read(ConfigSection& s);
  void validate() const;
};

}  // namespace atspeed
