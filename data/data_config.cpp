#include "data/data_config.h"

namespace atspeed {

void DataConfig::read(ConfigSection& s) {
  s.get("name", name)
      .get("dir", dir)
      .get("index_file", index_file)
      .get("source", source)
      .get("levels", levels)
      .get("codebook_size", codebook_size)
      .get("history_len", history_len)
      .get("prompt_format", prompt_format)
      .get("tokenizer", tokenizer)
      .get("sep_token", sep_token)
      .get("constraint", constraint)
      .get("train_samples", train_samples)
      .get("draft_samples", draft_samples);
  ConfigSection g = s.sub("synthetic");
  g.get("users", synthetic.users)
      .get("items", synthetic.items)
      .get("seed", synthetic.seed)
      .get("clusters", synthetic.clusters)
      .get("subclusters", synthetic.subclusters)
      .get("mean_length", synthetic.mean_length)
      .get("stay_prob", synthetic.stay_prob);
  g.finish();
}

void DataConfig::validate() const {
  config_ensure(!name.empty(), "data.name", "must not be empty");
  config_ensure(!dir.empty(), "data.dir", "must not be empty");
  config_ensure(source == "files" || source == "synthetic", "data.source", "must be files or synthetic (got '" + source + "')");
  config_ensure(levels >= 1 && levels <= 8, "data.levels", "must be in [1, 8]");
  config_ensure(codebook_size >= 2 && codebook_size <= 65536, "data.codebook_size", "must be in [2, 65536]");
  config_ensure(history_len >= 1, "data.history_len", "must be >= 1");
  config_ensure(constraint == "trie" || constraint == "level", "data.constraint",
                "must be trie or level (got '" + constraint + "')");
  const PromptLayout l = layout();  // checks prompt_format and its sep_token
  config_ensure(train_samples == "all_prefixes" || train_samples == "last" || train_samples == "one_pass",
                "data.train_samples", "must be all_prefixes, last or one_pass (got '" + train_samples + "')");
  // lcrec without data.tokenizer is fine here: a checkpoint may carry the tokenizer (make_vocabulary).
  config_ensure(tokenizer.empty() || l.is_text(), "data.tokenizer",
                "is only used with data.prompt_format=lcrec (got prompt_format " + prompt_format + ")");
  // The draft objectives read one teacher target per row.
  config_ensure(draft_samples == "all_prefixes" || draft_samples == "last", "data.draft_samples",
                "must be all_prefixes or last (got '" + draft_samples + "')");
  validate_synth_options(synthetic, "data.synthetic", codebook_size);
}

}  // namespace atspeed
