#include "core/decode/decode_config.h"

#include <algorithm>
#include <cmath>

namespace atspeed {

void DecodeConfig::read(ConfigSection& s) {
  s.get("name", name)
      .get("beam_width", beam_width)
      .get("sample", sample)
      .get("temperature", temperature)
      .get("top_k", top_k)
      .get("seed", seed)
      .get("device", device)
      .get("dtype", dtype)
      .get("draft_width", draft_width)
      .get("gamma", gamma)
      .get("verification", verification);
}

void DecodeConfig::validate() const {
  config_ensure(beam_width >= 1, "decode.beam_width", "must be >= 1");
  config_ensure(temperature > 0 && std::isfinite(temperature), "decode.temperature", "must be a finite number > 0");
  config_ensure(top_k >= 0, "decode.top_k", "must be >= 0 (0 = off)");
  config_ensure(seed >= 0, "decode.seed", "must be >= 0");
  config_ensure(device == "auto" || device == "cpu" || device.rfind("cuda", 0) == 0, "decode.device",
                "must be auto, cpu, cuda or cuda:N (got '" + device + "')");
  config_ensure(dtype == "checkpoint" || dtype == "float32" || dtype == "bfloat16", "decode.dtype",
                "must be checkpoint, float32 or bfloat16 (got '" + dtype + "')");
  config_ensure(draft_width >= 1, "decode.draft_width", "must be >= 1");
  config_ensure(gamma >= 1, "decode.gamma", "must be >= 1");
  config_ensure(verification == "strict" || verification == "relaxed", "decode.verification",
                "must be strict or relaxed (got '" + verification + "')");
}

decode::SearchOptions DecodeConfig::search_options(int64_t k) const {
  decode::SearchOptions o;
  o.beam_width = k > 0 ? k : beam_width;
  o.sample = sample;
  o.temperature = temperature;
  o.top_k = top_k;
  o.seed = static_cast<uint64_t>(seed);
  return o;
}

decode::SpeculativeOptions DecodeConfig::speculative_options(int64_t k) const {
  decode::SpeculativeOptions o;
  o.beam_width = k > 0 ? k : beam_width;
  o.draft_width = std::max(draft_width, o.beam_width);
  o.gamma = gamma;
  o.verification = decode::Verification::parse(verification);
  o.temperature = temperature;
  o.top_k = top_k;
  o.seed = static_cast<uint64_t>(seed);
  return o;
}

void EvalConfig::read(ConfigSection& s) {
  s.get("split", split)
      .get("ks", ks)
      .get("max_users", max_users)
      .get("batch_size", batch_size)
      .get("out", out)
      .get("log_every_s", log_every_s);
}

void EvalConfig::validate() const {
  config_ensure(split == "test" || split == "valid", "eval.split", "must be test or valid (got '" + split + "')");
  config_ensure(!ks.empty(), "eval.ks", "must list at least one cutoff");
  config_ensure(std::all_of(ks.begin(), ks.end(), [](int64_t k) { return k >= 1; }), "eval.ks", "cutoffs must be >= 1");
  config_ensure(max_users >= 0, "eval.max_users", "must be >= 0 (0 = all)");
  config_ensure(batch_size >= 1, "eval.batch_size", "must be >= 1");
  config_ensure(log_every_s > 0, "eval.log_every_s", "must be > 0");
}

}  // namespace atspeed
