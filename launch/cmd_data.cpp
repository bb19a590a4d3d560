// `atspeed data stats|synth` and `atspeed preprocess`.
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <iostream>

#include "core/config.h"
#include "core/errors.h"
#include "data/data_config.h"
#include "data/dataset.h"
#include "data/lcrec.h"
#include "data/preprocess.h"
#include "data/semantic_ids.h"
#include "data/stats.h"
#include "data/synth.h"
#include "launch/commands.h"

namespace fs = std::filesystem;

namespace atspeed::launch {
namespace {

// Positionals of `data stats`: config overrides (contain '=') and at most one dataset directory.
void split_positionals(const std::vector<std::string>& args, std::vector<std::string>& overrides, std::string& dir) {
  for (const auto& a : args) {
    if (a.find('=') != std::string::npos) {
      overrides.push_back(a);
    } else {
      if (!dir.empty()) throw CLI::ValidationError("data stats", "more than one dataset directory given");
      dir = a;
    }
  }
}

struct StatsOptions {
  std::vector<std::string> args;
  std::string json_path;
};

void run_stats(const StatsOptions& o) {
  std::vector<std::string> overrides;
  std::string dir;
  split_positionals(o.args, overrides, dir);
  const Config config = load_config(overrides);
  const auto data = read_section<DataConfig>(config, "data");
  const auto start = std::chrono::steady_clock::now();
  const Dataset ds = dir.empty() ? load_dataset(data)
                                 : load_dataset(dir, Vocabulary(data.levels, data.codebook_size), "", "");
  const auto stats = compute_stats(ds, data.history_len);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "directory: " << ds.dir << "\nindex: " << ds.index_path << " (" << ds.catalog->fingerprint() << ")\n"
            << format_stats(stats);
  spdlog::debug("read and counted in {:.3f} s", secs);
  if (!o.json_path.empty()) {
    write_text_file_atomic(o.json_path, stats_to_json(stats));
    spdlog::info("wrote {}", o.json_path);
  }
}

struct SynthCliOptions {
  std::string out;
  SynthOptions synth;
  std::vector<std::string> overrides;
};

void run_synth(const SynthCliOptions& o) {
  const Config config = load_config(o.overrides);
  const auto data = read_section<DataConfig>(config, "data");
  validate_synth_options(o.synth, "synthetic", data.codebook_size);
  generate_synthetic_dataset(o.out, o.synth, Vocabulary(data.levels, data.codebook_size));
}

struct PreprocessCliOptions {
  std::vector<std::string> inputs;
  std::string out;
  std::string name;
  std::string codes;       // JSON {raw item id: [code tokens]} to reuse an existing index
  std::string embeddings;  // HDF5 item embeddings for semantic ids
  std::string embeddings_dataset = "embeddings";
  std::string embeddings_ids;  // text file: raw item id per embedding row
  PreprocessOptions pre;
  SemanticIdOptions sid;
  std::vector<std::string> overrides;
};

void run_preprocess(const PreprocessCliOptions& o) {
  const Config config = load_config(o.overrides);
  const auto data = read_section<DataConfig>(config, "data");
  const Vocabulary vocab(data.levels, data.codebook_size);
  std::set<std::string> seen;
  for (const auto& in : o.inputs) {
    // A file named twice would count its reviews twice.
    ATSPEED_ENSURE(Usage, seen.insert(std::filesystem::weakly_canonical(in).string()).second, "--input lists ", in, " twice");
  }
  std::vector<RawInteraction> all;
  for (const auto& in : o.inputs) {
    ReadReport r;
    auto part = read_amazon_reviews(in, o.pre.min_rating, &r);
    spdlog::info("{}: {} reviews, {} with rating >= {}", in, r.lines, r.kept, o.pre.min_rating);
    all.insert(all.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
  }
  const SplitResult split = split_interactions(all, o.pre);
  spdlog::info("{} users x {} interactions after deduplication; thresholds t2={} t1={}; dropped {} users with < {} "
               "training interactions; kept {} users, {} items",
               split.users_before_drop, split.interactions, split.t2, split.t1, split.dropped_users, o.pre.min_train,
               split.users.size(), split.items.size());
  ItemCatalog catalog;
  if (!o.codes.empty()) {
    catalog = read_codes_by_raw_id(o.codes, split.items, vocab);
  } else {
    SemanticIdReport report;
    catalog = make_semantic_ids(split, o.embeddings, o.embeddings_dataset, o.embeddings_ids, o.sid, vocab, &report);
    spdlog::info("semantic ids from {}: {} items, {} collisions before / {} after disambiguation",
                 report.source, catalog.num_items(), report.collisions_before, report.collisions_after);
  }
  write_split_result(o.out, split);
  const std::string name = o.name.empty() ? fs::path(o.out).lexically_normal().filename().string() : o.name;
  write_lcrec_index((fs::path(o.out) / (name + ".LCRec-1e-3lr.json")).string(), catalog);
  spdlog::info("wrote {}", o.out);
}

const RegisterCommand register_data([](CLI::App& app) {
  // Others may add `data <tool>` subcommands too (e.g. teacher data files).
  auto* data = find_or_add_subcommand(app, "data", "dataset tools: stats, synth");
  data->require_subcommand(1);

  auto stats_opts = std::make_shared<StatsOptions>();
  auto* stats = data->add_subcommand("stats", "print the counts of SPEC §1.2/§1.3 for a dataset directory");
  stats->add_option("args", stats_opts->args,
                    "dataset directory (default: data.dir of the config) and config overrides (a.b=value)");
  stats->add_option("--json", stats_opts->json_path, "also write the statistics as JSON to this file");
  stats->callback([stats_opts]() { run_stats(*stats_opts); });

  auto synth_opts = std::make_shared<SynthCliOptions>();
  auto* synth = data->add_subcommand("synth", "write a seeded synthetic dataset in the LC-Rec layout");
  synth->add_option("--out", synth_opts->out, "output directory")->required();
  synth->add_option("--users", synth_opts->synth.users, "users before the split")->capture_default_str();
  synth->add_option("--items", synth_opts->synth.items, "items (at most; unused ones are dropped)")->capture_default_str();
  synth->add_option("--seed", synth_opts->synth.seed, "generator seed")->capture_default_str();
  synth->add_option("--clusters", synth_opts->synth.clusters, "item clusters (first-level codes)")->capture_default_str();
  synth->add_option("--subclusters", synth_opts->synth.subclusters, "subclusters per cluster")->capture_default_str();
  synth->add_option("--mean-length", synth_opts->synth.mean_length, "mean interactions per user")->capture_default_str();
  synth->add_option("--stay-prob", synth_opts->synth.stay_prob, "probability of staying in a cluster")->capture_default_str();
  synth->add_option("overrides", synth_opts->overrides, "config overrides (data.codebook_size=..., ...)");
  synth->callback([synth_opts]() { run_synth(*synth_opts); });
});

const RegisterCommand register_preprocess([](CLI::App& app) {
  auto o = std::make_shared<PreprocessCliOptions>();
  auto* cmd = app.add_subcommand("preprocess", "raw Amazon reviews (.json/.json.gz) -> splits + semantic-ID index (SPEC §1.4)");
  cmd->add_option("--input", o->inputs, "review files (JSON lines, optionally gzipped)")->required();
  cmd->add_option("--out", o->out, "output dataset directory")->required();
  cmd->add_option("--name", o->name, "dataset name for <name>.LCRec-1e-3lr.json (default: the out dir's name)");
  cmd->add_option("--min-rating", o->pre.min_rating, "keep reviews with int(overall) >= this")->capture_default_str();
  cmd->add_option("--test-fraction", o->pre.test_fraction, "share of interactions for test (valid gets as many)")
      ->capture_default_str();
  cmd->add_option("--min-train", o->pre.min_train, "drop users with fewer training interactions")->capture_default_str();
  cmd->add_option("--seed", o->pre.item_seed, "seed of the item-id shuffle")->capture_default_str();
  cmd->add_option("--codes", o->codes, "reuse codes: JSON {raw item id: [\"<a_1>\", ...]} covering every kept item");
  cmd->add_option("--embeddings", o->embeddings, "HDF5 file with an item embedding matrix [items, dim]");
  cmd->add_option("--embeddings-dataset", o->embeddings_dataset, "dataset name inside the HDF5 file")->capture_default_str();
  cmd->add_option("--embeddings-ids", o->embeddings_ids, "text file: the raw item id of each embedding row");
  cmd->add_option("--svd-dim", o->sid.svd_dim, "item vector size when derived from interactions")->capture_default_str();
  cmd->add_option("--kmeans-iters", o->sid.kmeans_iters, "k-means iterations per level")->capture_default_str();
  cmd->add_option("overrides", o->overrides, "config overrides (data.codebook_size=..., data.levels=...)");
  cmd->callback([o]() { run_preprocess(*o); });
});

}  // namespace
}  // namespace atspeed::launch
