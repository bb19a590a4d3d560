// `atspeed bench select`: the constrained selection step the decoder runs after every target
// forward (SPEC §2.1): full-vocabulary log-softmax of the K beams' logits, the trie constraint,
// the flat top-K over beams x allowed tokens. Measured at the tokenizer-free V = 1,029 and at an
// LC-Rec LLaMA vocabulary (32,000 pieces + the 1,024 code tokens after them, in the string order
// add_tokens gives them), with the dataset's real item trie, on random logits. Prints a table of
// milliseconds per step (median and interquartile range over repetitions, averaged over the
// levels) and writes JSON. The model forward is `bench forward` (its --vocab prices the lm_head).
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>
#include <set>

#include "core/config.h"
#include "core/config_types.h"
#include "core/decode/beam_search.h"
#include "core/errors.h"
#include "core/io/text_file.h"
#include "core/vocab/constraint.h"
#include "data/data_config.h"
#include "data/dataset.h"
#include "launch/commands.h"

namespace fs = std::filesystem;

namespace atspeed::launch {
namespace {

struct BenchSelectOptions {
  std::vector<int64_t> vocabs{0, 33024};  // 0 = tokenizer-free (levels x codebook + 5)
  std::vector<int64_t> ks{1, 5, 20};
  int reps = 30;
  std::string json;
  std::vector<std::string> overrides;

  void validate() const {
    ATSPEED_ENSURE(Usage, !vocabs.empty() && !ks.empty(), "--vocabs and --ks need at least one value");
    for (int64_t k : ks) ATSPEED_ENSURE(Usage, k >= 1 && k <= 1000, "--ks: ", k, " is not a beam width in [1, 1000]");
    ATSPEED_ENSURE(Usage, reps >= 3 && reps <= 10000, "--reps must be in [3, 10000]");
  }
};

// LC-Rec's layout at V: the text pieces first, then every (level, code) token in string order.
Vocabulary llama_like_vocabulary(int levels, int64_t codebook, int64_t size) {
  std::vector<std::pair<std::string, int64_t>> strings;
  for (int l = 0; l < levels; ++l)
    for (int64_t c = 0; c < codebook; ++c) strings.emplace_back(Vocabulary::code_string(l, c), l * codebook + c);
  std::sort(strings.begin(), strings.end());
  const int64_t first = size - static_cast<int64_t>(strings.size());
  ATSPEED_ENSURE(Usage, first > Vocabulary::kEos, "--vocabs: ", size, " is too small for ", strings.size(),
                 " code tokens after the special ids");
  std::vector<int64_t> ids(strings.size());
  for (size_t i = 0; i < strings.size(); ++i) ids[static_cast<size_t>(strings[i].second)] = first + static_cast<int64_t>(i);
  return Vocabulary::with_code_token_ids(levels, codebook, size, std::move(ids));
}

struct Timing {
  double median_ms = 0, q1_ms = 0, q3_ms = 0;
};

Timing quartiles(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5)] * 1e3; };
  return {at(0.5), at(0.25), at(0.75)};
}

void run_bench_select(const BenchSelectOptions& o) {
  o.validate();
  const Config config = load_config(o.overrides);
  const auto data = read_section<DataConfig>(config, "data");
  const auto run = read_section<RunConfig>(config, "run");
  // The item codes of the dataset; each vocabulary re-maps them to its own ids.
  DataConfig codes_only = data;
  codes_only.tokenizer.clear();
  codes_only.prompt_format = "stream";
  const Dataset ds = load_dataset(codes_only);
  const ItemCatalog& base = *ds.catalog;
  torch::NoGradGuard no_grad;
  torch::manual_seed(static_cast<uint64_t>(run.seed));
  nlohmann::json out = {{"benchmark", "select"}, {"dataset", data.name}, {"items", base.num_items()},
                        {"threads", at::get_num_threads()}, {"reps", o.reps}, {"rows", nlohmann::json::array()}};
  std::cout << fmt::format("bench select: {} items of {}, trie constraint, CPU, {} threads; ms per step (log-softmax "
                           "over V + constraint + top-K), mean over the {} levels, median [IQR] of {} repetitions\n",
                           base.num_items(), data.name, at::get_num_threads(), base.levels(), o.reps);
  std::cout << fmt::format("{:>8} {:>5} {:>12} {:>18} {:>14}\n", "V", "K", "median ms", "IQR ms", "log-softmax ms");
  for (int64_t v_opt : o.vocabs) {
    const Vocabulary vocab = v_opt == 0 ? Vocabulary(base.levels(), base.vocab().codebook_size())
                                        : llama_like_vocabulary(base.levels(), base.vocab().codebook_size(), v_opt);
    const ItemCatalog catalog(vocab, base.all_codes());
    const PrefixTrie trie(catalog);
    const int64_t V = vocab.size();
    for (int64_t k : o.ks) {
      decode::SearchOptions opts;
      opts.beam_width = k;
      std::vector<double> step_s, softmax_s;
      for (int rep = 0; rep < o.reps + 1; ++rep) {  // the first is a warm-up
        std::vector<decode::Beam> beams = {decode::Beam{}};
        double total = 0, sm = 0;
        for (int level = 0; level < catalog.levels(); ++level) {
          const at::Tensor logits = at::randn({static_cast<int64_t>(beams.size()), V});
          const auto t0 = std::chrono::steady_clock::now();
          const at::Tensor lp = at::log_softmax(logits, -1);
          const auto t1 = std::chrono::steady_clock::now();
          beams = decode::expand_beams(beams, lp, trie, opts);
          const auto t2 = std::chrono::steady_clock::now();
          total += std::chrono::duration<double>(t2 - t0).count();
          sm += std::chrono::duration<double>(t1 - t0).count();
        }
        if (rep > 0) {
          step_s.push_back(total / catalog.levels());
          softmax_s.push_back(sm / catalog.levels());
        }
      }
      const Timing t = quartiles(step_s), s = quartiles(softmax_s);
      std::cout << fmt::format("{:>8} {:>5} {:>12.4f} {:>18} {:>14.4f}\n", V, k, t.median_ms,
                               fmt::format("{:.4f}-{:.4f}", t.q1_ms, t.q3_ms), s.median_ms);
      out["rows"].push_back({{"vocab", V}, {"k", k}, {"median_ms", t.median_ms}, {"q1_ms", t.q1_ms}, {"q3_ms", t.q3_ms},
                             {"log_softmax_median_ms", s.median_ms}});
    }
  }
  const std::string path = o.json.empty() ? (fs::path(run.out_dir) / "bench_select.json").string() : o.json;
  write_text_file_atomic(path, out.dump(2) + "\n");
  std::cout << "wrote " << path << "\n";
}

const RegisterCommand register_bench_select([](CLI::App& app) {
  auto* bench = find_or_add_subcommand(app, "bench", "benchmarks: print a table and write JSON");
  auto o = std::make_shared<BenchSelectOptions>();
  auto* cmd = bench->add_subcommand(
      "select", "the decoder's constrained top-K selection step at V = 1,029 and at a LLaMA + LC-Rec vocabulary");
  cmd->add_option("--vocabs", o->vocabs, "vocabulary sizes (0 = tokenizer-free; 33,024 = LLaMA's 32,000 + 1,024 codes)")
      ->capture_default_str();
  cmd->add_option("--ks", o->ks, "beam widths K")->capture_default_str();
  cmd->add_option("--reps", o->reps, "timed repetitions")->capture_default_str();
  cmd->add_option("--json", o->json, "JSON output (default <run.out_dir>/bench_select.json)");
  cmd->add_option("overrides", o->overrides, "config overrides (data=games run.threads=2 ...)");
  cmd->callback([o]() { run_bench_select(*o); });
});

}  // namespace
}  // namespace atspeed::launch
