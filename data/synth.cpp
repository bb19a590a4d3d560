#include "data/synth.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <unordered_set>

#include "core/config.h"
#include "core/errors.h"
#include "data/dataset.h"
#include "data/lcrec.h"
#include "data/preprocess.h"
#include "data/sampler.h"

namespace fs = std::filesystem;

namespace atspeed {

void validate_synth_options(const SynthOptions& o, const std::string& p, int64_t codebook_size) {
  config_ensure(o.users >= 10 && o.users <= 10'000'000, p + ".users", "must be in [10, 1e7]");
  config_ensure(o.items >= 10 && o.items <= 10'000'000, p + ".items", "must be in [10, 1e7]");
  config_ensure(o.seed >= 0, p + ".seed", "must be >= 0");
  config_ensure(o.clusters >= 1 && o.clusters <= codebook_size, p + ".clusters",
                "must be in [1, codebook_size=" + std::to_string(codebook_size) + "]");
  config_ensure(o.subclusters >= 1 && o.subclusters <= codebook_size, p + ".subclusters",
                "must be in [1, codebook_size=" + std::to_string(codebook_size) + "]");
  config_ensure(o.mean_length >= 5.0 && o.mean_length <= 1000.0, p + ".mean_length", "must be in [5, 1000]");
  config_ensure(o.stay_prob >= 0.0 && o.stay_prob <= 1.0, p + ".stay_prob", "must be in [0, 1]");
}

namespace {

// `k` distinct values from [0, n), in random order.
std::vector<int32_t> distinct_codes(std::mt19937_64& rng, int64_t n, int64_t k) {
  std::vector<int32_t> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  seeded_shuffle(all, rng);
  all.resize(static_cast<size_t>(k));
  return all;
}

std::string options_json(const SynthOptions& o, const Vocabulary& v) {
  nlohmann::json j = {{"generator", "atspeed-synth-v1"}, {"users", o.users}, {"items", o.items}, {"seed", o.seed},
                      {"clusters", o.clusters}, {"subclusters", o.subclusters}, {"mean_length", o.mean_length},
                      {"stay_prob", o.stay_prob}, {"levels", v.levels()}, {"codebook_size", v.codebook_size()}};
  return j.dump(2) + "\n";
}

}  // namespace

void generate_synthetic_dataset(const std::string& dir, const SynthOptions& o, const Vocabulary& vocab) {
  validate_synth_options(o, "synthetic", vocab.codebook_size());
  // Never overwrite a dataset this generator did not write (its marker is synth.json): a wrong
  // data.dir must not destroy real data.
  if (fs::is_directory(dir) && !fs::exists(fs::path(dir) / "synth.json")) {
    for (const auto& entry : fs::directory_iterator(dir)) {
      const std::string name = entry.path().filename().string();
      ATSPEED_ENSURE(Data, name.rfind("sequential_", 0) != 0 && name.find(".LCRec") == std::string::npos, dir,
                     " holds a dataset that `atspeed data synth` did not generate (", name,
                     ", no synth.json): refusing to write a synthetic dataset there; pick another directory");
    }
  }
  std::mt19937_64 rng(static_cast<uint64_t>(o.seed));
  const int64_t cb = vocab.codebook_size();
  const int levels = vocab.levels();
  const int64_t C = o.clusters, S = o.subclusters;

  // Codes: cluster -> level-1 code, (cluster, sub) -> level-2 code, a pool of 3 level-3 codes per
  // subcluster, random deeper codes.
  const auto c1 = distinct_codes(rng, cb, C);
  std::vector<std::vector<int32_t>> c2(static_cast<size_t>(C)), pool3(static_cast<size_t>(C * S));
  for (int64_t c = 0; c < C; ++c) c2[static_cast<size_t>(c)] = distinct_codes(rng, cb, S);
  for (auto& p : pool3) p = distinct_codes(rng, cb, std::min<int64_t>(3, cb));
  std::vector<int32_t> codes(static_cast<size_t>(o.items * levels));
  std::vector<std::vector<int64_t>> members(static_cast<size_t>(C * S));  // items of each subcluster
  for (int64_t i = 0; i < o.items; ++i) {
    const int64_t c = static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(C)));
    const int64_t s = static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(S)));
    members[static_cast<size_t>(c * S + s)].push_back(i);
    int32_t* row = codes.data() + i * levels;
    row[0] = c1[static_cast<size_t>(c)];
    if (levels > 1) row[1] = c2[static_cast<size_t>(c)][static_cast<size_t>(s)];
    if (levels > 2) row[2] = pool3[static_cast<size_t>(c * S + s)][uniform_below(rng, pool3[0].size())];
    for (int l = 3; l < levels; ++l) row[l] = static_cast<int32_t>(uniform_below(rng, static_cast<uint64_t>(cb)));
  }

  // Interactions: users walk between neighbouring clusters; day-granular times.
  auto pick_in = [&](int64_t sub) -> int64_t {
    const auto& m = members[static_cast<size_t>(sub)];
    if (m.empty()) return -1;
    // Zipf-like popularity: rank r has weight 1/(r+1), drawn by inverting the harmonic CDF.
    const double h = std::log(static_cast<double>(m.size()) + 1.0);
    const auto r = static_cast<size_t>(std::exp(uniform01(rng) * h) - 1.0);
    return m[std::min(r, m.size() - 1)];
  };
  const int64_t horizon_days = 3000;
  const int64_t t0 = 1'300'000'000;
  std::vector<RawInteraction> raw;
  for (int64_t u = 0; u < o.users; ++u) {
    const std::string uid = "U" + std::to_string(u);
    // Length: 5 + geometric with the requested mean.
    const double extra_mean = o.mean_length - 5.0;
    int64_t len = 5;
    if (extra_mean > 0) {
      const double p = 1.0 / (1.0 + extra_mean);
      while (uniform01(rng) > p && len < 2000) ++len;
    }
    int64_t cluster = static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(C)));
    int64_t sub = static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(S)));
    // Users stay active over a long stretch of the timeline, as in the Amazon data, so the global
    // time split leaves most users a training history and gives ~15-20% of them test items.
    int64_t day = static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(horizon_days * 2 / 5)));
    const double mean_gap_days = 0.6 * static_cast<double>(horizon_days) / static_cast<double>(len);
    std::unordered_set<int64_t> seen;
    for (int64_t k = 0; k < len; ++k) {
      if (k > 0) {
        if (uniform01(rng) >= o.stay_prob) {
          cluster = (cluster + (uniform01(rng) < 0.5 ? C - 1 : 1)) % C;
          sub = static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(S)));
        } else if (uniform01(rng) < 0.3) {
          sub = static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(S)));
        }
        day += static_cast<int64_t>(-std::log(1.0 - uniform01(rng)) * mean_gap_days);
      }
      int64_t item = -1;
      for (int attempt = 0; attempt < 8 && item < 0; ++attempt) {
        const int64_t s = attempt < 4 ? sub : static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(S)));
        const int64_t cand = pick_in(cluster * S + s);
        if (cand >= 0 && !seen.count(cand)) item = cand;
      }
      if (item < 0) continue;  // no unseen item nearby: the user skips this step (no repeats)
      seen.insert(item);
      raw.push_back({uid, "I" + std::to_string(item), t0 + std::min(day, horizon_days) * 86400});
    }
  }

  PreprocessOptions po;
  po.item_seed = static_cast<uint64_t>(o.seed);
  const SplitResult split = split_interactions(raw, po);
  std::vector<int32_t> kept_codes;
  for (const auto& name : split.items) {
    const int64_t old = std::stoll(name.substr(1));
    kept_codes.insert(kept_codes.end(), codes.begin() + old * levels, codes.begin() + (old + 1) * levels);
  }
  const ItemCatalog catalog(vocab, std::move(kept_codes));
  fs::create_directories(dir);
  write_split_file(split_path(dir, "train"), split.train);
  write_split_file(split_path(dir, "valid"), split.valid);
  write_split_file(split_path(dir, "test"), split.test);
  write_lcrec_index((fs::path(dir) / "synthetic.LCRec-1e-3lr.json").string(), catalog);
  // Written last: its presence marks a complete dataset.
  write_text_file_atomic((fs::path(dir) / "synth.json").string(), options_json(o, vocab));
  spdlog::info("synthetic dataset in {}: {} users, {} items, {} interactions ({} users dropped by the split)", dir,
               split.users.size(), split.items.size(), split.interactions, split.dropped_users);
}

void ensure_synthetic_dataset(const std::string& dir, const SynthOptions& o, const Vocabulary& vocab) {
  const fs::path marker = fs::path(dir) / "synth.json";
  if (fs::exists(marker)) {
    std::ifstream in(marker);
    std::stringstream buf;
    buf << in.rdbuf();
    if (buf.str() == options_json(o, vocab)) return;
    spdlog::info("{} was generated with other parameters; regenerating", dir);
  }
  generate_synthetic_dataset(dir, o, vocab);
}

}  // namespace atspeed
