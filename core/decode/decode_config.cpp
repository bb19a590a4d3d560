#include "core/decode/decode_config.h"

#include <algorithm>
#include <cmath>
#include <set>

namespace atspeed {

decode::DecodeMode read_mode(ConfigSection& s, const std::string& key, decode::DecodeMode mode) {
  std::string name = mode.name();
  s.get(key, name);
  const auto parsed = decode::DecodeMode::from_name(name);
  if (!parsed) s.fail(key, "must be target, strict, relaxed or auto (got '" + name + "')");
  return *parsed;
}

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
      .get("gamma", gamma);
  // Typed at the boundary: a bad name is an error naming the key and its file.
  verification = read_mode(s, "verification", verification);
  if (!verification.is_speculative()) {
    s.fail("verification", std::string("must be strict or relaxed (got '") + verification.name() + "')");
  }
  ConfigSection a = s.sub("auto");
  a.get("ks", auto_plan.planner.ks)
      .get("draft_widths", auto_plan.planner.draft_widths)
      .get("gammas", auto_plan.planner.gammas)
      .get("min_speedup", auto_plan.planner.min_speedup)
      .get("calib_users", auto_plan.calib_users)
      .get("cache_dir", auto_plan.cache_dir)
      .get("cache", auto_plan.cache);
  a.finish();
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
  auto_plan.planner.validate();
  config_ensure(auto_plan.calib_users >= 1, "decode.auto.calib_users", "must be >= 1");
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
  o.draft_width = decode::effective_draft_width(draft_width, o.beam_width);
  o.gamma = gamma;
  o.verification = verification;
  o.temperature = temperature;
  o.top_k = top_k;
  o.seed = static_cast<uint64_t>(seed);
  return o;
}

decode::RunSettings DecodeConfig::run_settings(decode::DecodeMode mode, int64_t k) const {
  decode::RunSettings r;
  r.mode = mode;
  r.k = k > 0 ? k : beam_width;
  r.sample = sample;
  r.draft_width = draft_width;
  r.gamma = gamma;
  r.temperature = temperature;
  r.top_k = top_k;
  return r;
}

void EvalConfig::read(ConfigSection& s) {
  s.get("split", split)
      .get("ks", ks)
      .get("max_users", max_users)
      .get("batch_size", batch_size)
      .get("out", out)
      .get("log_every_s", log_every_s)
      .get("draft", draft);
  mode = read_mode(s, "mode", mode);
}

void EvalConfig::validate() const {
  config_ensure(split == "test" || split == "valid", "eval.split", "must be test or valid (got '" + split + "')");
  config_ensure(!ks.empty(), "eval.ks", "must list at least one cutoff");
  config_ensure(std::all_of(ks.begin(), ks.end(), [](int64_t k) { return k >= 1; }), "eval.ks", "cutoffs must be >= 1");
  config_ensure(std::set<int64_t>(ks.begin(), ks.end()).size() == ks.size(), "eval.ks",
                "lists a cutoff twice (results are keyed by K)");
  config_ensure(max_users >= 0, "eval.max_users", "must be >= 0 (0 = all)");
  config_ensure(batch_size >= 1, "eval.batch_size", "must be >= 1");
  config_ensure(log_every_s > 0, "eval.log_every_s", "must be > 0");
  config_ensure(!mode.needs_draft() || !draft.empty(), "eval.draft",
                std::string("eval.mode = ") + mode.name() + " needs a draft checkpoint (eval.draft=PATH)");
}

}  // namespace atspeed
