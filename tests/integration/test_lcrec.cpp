// LC-Rec checkpoints, part 1, against tests/data/lcrec (tools/make_lcrec_fixture.py, transformers
// 4.41 + peft + sentencepiece): a SentencePiece tokenizer trained with LLaMA's settings and the
// code tokens added as LC-Rec adds them, 250+ strings with the ids LlamaTokenizer(legacy=True)
// gives them, a tiny random LLaMA with LoRA adapters (with and without modules_to_save, .safetensors
// and .bin) and the logits peft's merge_and_unload gives.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <sstream>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/decode/beam_search.h"
#include "core/errors.h"
#include "core/io/checkpoint.h"
#include "core/io/safetensors.h"
#include "core/io/text_file.h"
#include "core/model/hf_checkpoint.h"
#include "core/model/hf_import.h"
#include "core/model/model_io.h"
#include "core/vocab/constraint.h"
#include "core/vocab/prompt.h"
#include "core/vocab/tokenizer.h"
#include "data/lcrec.h"
#include "data/samples.h"
#include "core/decode/tree_scorer.h"
#include "data/data_config.h"
#include "data/dataset.h"
#include "data/teacher.h"
#include "train/draft_config.h"
#include "tests/integration/serve_process.h"
#include "tests/test_util.h"

namespace atspeed {
namespace {

using json = nlohmann::json;
using test::run_atspeed;
using test::TempDir;

std::string fixture(const std::string& rel = "") {
  return std::string(ATSPEED_SOURCE_DIR) + "/tests/data/lcrec" + (rel.empty() ? "" : "/" + rel);
}

std::shared_ptr<const TextTokenizer> fixture_tokenizer() {
  static auto tok = TextTokenizer::load_dir(fixture("tokenizer"));
  return tok;
}

std::shared_ptr<const ItemCatalog> fixture_catalog() {
  static auto catalog = std::make_shared<const ItemCatalog>(
      read_lcrec_index(fixture("index.json"), Vocabulary::with_tokenizer(fixture_tokenizer())));
  return catalog;
}

const json& prompt_cases() {
  static const json j = json::parse(read_text_file(fixture("prompts.json")));
  return j;
}

std::string show(const std::vector<int64_t>& ids) {
  std::string s;
  for (int64_t id : ids) s += std::to_string(id) + " ";
  return s;
}

TEST(LcrecTokenizerTest, PromptsTokenizeToTransformersIds) {
  const PromptFormat format(fixture_catalog(), PromptLayout::from_config("lcrec", true));
  int prompts = 0, texts = 0, capped = 0;
  for (const json& c : prompt_cases()["cases"]) {
    const std::vector<int64_t> want = c["ids"].get<std::vector<int64_t>>();
    if (c["kind"] == "prompt") {
      const std::vector<int64_t> history = c["history"].get<std::vector<int64_t>>();
      EXPECT_EQ(lcrec_prompt_text(*fixture_catalog(), history), c["text"].get<std::string>());
      const std::vector<int64_t> got = format.prompt(history);
      EXPECT_EQ(got, want) << "history of " << history.size() << " items\n got  " << show(got) << "\n want " << show(want);
      EXPECT_EQ(format.prompt_length(history), static_cast<int64_t>(want.size()));
      ++prompts;
      capped += history.size() == 20;
    } else {
      const std::string text = c["text"].get<std::string>();
      const std::vector<int64_t> got = fixture_tokenizer()->encode(text);
      EXPECT_EQ(got, want) << "text '" << text << "'\n got  " << show(got) << "\n want " << show(want);
      ++texts;
    }
  }
  EXPECT_GE(prompts, 200);
  EXPECT_GE(texts, 30);
  EXPECT_GE(capped, 10);
}

TEST(LcrecTokenizerTest, CodeTokensAreLookedUpByString) {
  const auto tok = fixture_tokenizer();
  const Vocabulary v = Vocabulary::with_tokenizer(tok);
  EXPECT_TRUE(v.is_text());
  EXPECT_EQ(v.size(), tok->size());
  EXPECT_GT(tok->size(), tok->sentencepiece_size());
  // Every added code token maps back to its (level, code), and its id is the tokenizer's.
  int64_t codes = 0;
  for (const AddedToken& t : tok->added_tokens()) {
    if (t.special) continue;
    const int level = t.content[1] - 'a';
    const int64_t code = std::stoll(t.content.substr(3, t.content.size() - 4));
    EXPECT_EQ(v.code_token(level, code), t.id) << t.content;
    EXPECT_EQ(v.level_of(t.id), level);
    EXPECT_EQ(v.code_of(t.id), code);
    EXPECT_EQ(v.token_string(t.id), t.content);
    ++codes;
  }
  EXPECT_EQ(v.num_code_tokens(), codes);
  EXPECT_EQ(v.code_token_range(), std::make_pair(tok->sentencepiece_size(), tok->size()));
  // Ids are in string order ("<a_10>" before "<a_2>"), ties in code order: order_key follows the codes.
  EXPECT_FALSE(v.level_of(Vocabulary::kBos) >= 0);
  bool string_order_seen = false;
  for (int64_t lo = 0; lo < 256 && !string_order_seen; ++lo)
    for (int64_t hi = lo + 1; hi < 256 && !string_order_seen; ++hi) {
      if (!v.has_code_token(1, lo) || !v.has_code_token(1, hi)) continue;
      EXPECT_LT(v.order_key(v.code_token(1, lo)), v.order_key(v.code_token(1, hi)));
      string_order_seen = v.code_token(1, lo) > v.code_token(1, hi);  // e.g. <b_2> after <b_10>
    }
  EXPECT_TRUE(string_order_seen) << "the fixture should add the tokens in string order";
  // A code the tokenizer lacks is an error naming it, when used.
  int64_t missing = -1;
  for (int64_t c = 0; c < 256 && missing < 0; ++c)
    if (!v.has_code_token(0, c)) missing = c;
  ASSERT_GE(missing, 0) << "the fixture's level a should use a subset of the codes";
  try {
    ItemCatalog bad(v, {static_cast<int32_t>(missing), 0, 0, 0});
    FAIL() << "a catalogue with a code the tokenizer lacks was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_NE(e.message().find(Vocabulary::code_string(0, missing)), std::string::npos) << e.message();
  }
}

TEST(LcrecTokenizerTest, TrieMapsToCodeTokenIdsInTheLargeVocabulary) {
  const auto catalog = fixture_catalog();
  const Vocabulary& v = catalog->vocab();
  PrefixTrie trie(*catalog);
  // The first level allows exactly the first codes in use, as token ids anywhere in the vocabulary.
  std::set<int64_t> want;
  for (int64_t i = 0; i < catalog->num_items(); ++i) want.insert(v.code_token(0, catalog->codes(i)[0]));
  const auto allowed = trie.allowed(std::vector<int64_t>{});
  EXPECT_EQ(std::set<int64_t>(allowed.begin(), allowed.end()), want);
  // Walking an item's tokens reaches EOS.
  const auto item = catalog->item_tokens(7);
  for (int l = 0; l < v.levels(); ++l) {
    const auto a = trie.allowed(std::vector<int64_t>(item.begin(), item.begin() + l));
    EXPECT_NE(std::find(a.begin(), a.end(), item[static_cast<size_t>(l)]), a.end()) << "level " << l;
  }
  const auto end = trie.allowed(item);
  ASSERT_EQ(end.size(), 1u);
  EXPECT_EQ(end[0], Vocabulary::kEos);
}

TEST(LcrecTokenizerTest, EqualScoresAreRankedByCodeNotByTokenId) {
  const Vocabulary v = Vocabulary::with_tokenizer(fixture_tokenizer());
  // Two level-a codes whose ids are in the opposite order of the codes ("<a_10>" < "<a_9>").
  int64_t lo = -1, hi = -1;
  for (int64_t a = 0; a < 256 && lo < 0; ++a)
    for (int64_t b = a + 1; b < 256 && lo < 0; ++b)
      if (v.has_code_token(0, a) && v.has_code_token(0, b) && v.code_token(0, a) > v.code_token(0, b)) lo = a, hi = b;
  ASSERT_GE(lo, 0);
  // Items (lo, 0, 0, 0) and (hi, 0, 0, 0) need codes 0 at the other levels to exist; use codes that do.
  std::vector<int32_t> tail;
  for (int l = 1; l < 4; ++l) {
    int32_t c = 0;
    while (!v.has_code_token(l, c)) ++c;
    tail.push_back(c);
  }
  const ItemCatalog catalog(v, {static_cast<int32_t>(hi), tail[0], tail[1], tail[2],
                                static_cast<int32_t>(lo), tail[0], tail[1], tail[2]});
  const PrefixTrie trie(catalog);
  // Every token equally likely: both first-level candidates tie exactly.
  const at::Tensor lp = at::full({1, v.size()}, -std::log(static_cast<float>(v.size())));
  decode::SearchOptions opts;
  opts.beam_width = 2;
  std::vector<decode::Beam> beams = decode::expand_beams({decode::Beam{}}, lp, trie, opts);
  ASSERT_EQ(beams.size(), 2u);
  EXPECT_EQ(beams[0].score, beams[1].score);
  EXPECT_EQ(beams[0].tokens[0], v.code_token(0, lo)) << "the lower code first, though its id is larger";
  EXPECT_EQ(beams[1].tokens[0], v.code_token(0, hi));
  std::swap(beams[0], beams[1]);
  decode::sort_beams(beams, v);
  EXPECT_EQ(beams[0].tokens[0], v.code_token(0, lo));
}

TEST(LcrecTokenizerTest, TokenizerTravelsInsideTheCheckpoint) {
  TempDir dir;
  const std::string h5 = dir.str("t.h5");
  const TokenizerFiles files = TokenizerFiles::read_dir(fixture("tokenizer"));
  {
    CheckpointAttributes attrs;
    attrs.kind = "target";
    CheckpointWriter w(h5, attrs);
    model::write_tokenizer(w, TextTokenizer(files));
    w.commit();
  }
  CheckpointReader reader(h5);
  const auto back = model::read_tokenizer(reader);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->sentencepiece_model, files.sentencepiece_model);
  EXPECT_EQ(back->json_files, files.json_files);
  EXPECT_EQ(TextTokenizer(*back).fingerprint(), fixture_tokenizer()->fingerprint());
  EXPECT_EQ(reader.string_attribute("tokenizer", "fingerprint"), fixture_tokenizer()->fingerprint());
}

// ---- conversion ----

const std::map<std::string, at::Tensor>& expected() {
  static const auto e = load_safetensors(fixture("expected.safetensors"));
  return e;
}

at::Tensor causal_logits(model::LlamaModel& m, const at::Tensor& ids) {
  torch::NoGradGuard g;
  const int64_t n = ids.size(1);
  return m->forward(ids, torch::arange(n, torch::kLong).unsqueeze(0),
                    model::causal_mask(1, n, 0, m->options().param_dtype, at::kCPU));
}

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

TEST(LcrecConvertTest, StreamedParameterListIsTheModelsOwn) {
  // The streaming import and export write llama_parameter_shapes(); it must be the model's list.
  for (bool tied : {false, true}) {
    ModelConfig c = model::model_config_from_hf_json(fixture("base/config.json"));
    c.tie_word_embeddings = tied;
    model::LlamaModel m(model::LlamaOptions::from_config(c));
    const auto shapes = model::llama_parameter_shapes(c);
    const auto params = m->named_parameters();
    ASSERT_EQ(shapes.size(), params.size());
    for (size_t i = 0; i < shapes.size(); ++i) {
      EXPECT_EQ(shapes[i].first, params[i].key());
      EXPECT_EQ(shapes[i].second, params[i].value().sizes().vec()) << shapes[i].first;
    }
  }
}

TEST(LcrecConvertTest, LoraMergeMatchesPeft) {
  for (const std::string adapter : {"adapter_full", "adapter_full_bin"}) {
    SCOPED_TRACE(adapter);
    TempDir dir;
    const std::string h5 = dir.str("target.h5");
    const auto r = run_atspeed("convert --from '" + fixture("base") + "' --lora '" + fixture(adapter) + "' --out '" + h5 + "'");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("merged into 14 weights, 2 taken whole"), std::string::npos) << r.output;
    CheckpointReader reader(h5, "target");
    model::LlamaModel m = model::load_model(reader);
    EXPECT_EQ(m->options().vocab_size, fixture_tokenizer()->size());
    EXPECT_LE(max_diff(causal_logits(m, expected().at("input_ids")), expected().at("full_logits")), 1e-4);
    // The tokenizer came from the adapter's directory and is inside; the config says lcrec.
    const auto tok = model::read_tokenizer(reader);
    ASSERT_TRUE(tok.has_value());
    EXPECT_EQ(TextTokenizer(*tok).fingerprint(), fixture_tokenizer()->fingerprint());
    EXPECT_NE(reader.attributes().config_yaml.find("prompt_format: lcrec"), std::string::npos);
    // inspect shows the tokenizer kind and the code-token range.
    const auto ins = run_atspeed("inspect --no-norms '" + h5 + "'");
    ASSERT_EQ(ins.exit_code, 0) << ins.output;
    const Vocabulary v = Vocabulary::with_tokenizer(fixture_tokenizer());
    const std::string range = "at ids [" + std::to_string(v.code_token_range().first) + ", " +
                              std::to_string(v.code_token_range().second) + ")";
    for (const std::string want : {std::string("tokenizer:      sentencepiece (inside the checkpoint)"), range})
      EXPECT_NE(ins.output.find(want), std::string::npos) << "missing '" << want << "' in\n" << ins.output;
  }
}

TEST(LcrecConvertTest, AdapterWithoutResizedRowsIsRefusedAndTheMergeScriptOutputConverts) {
  TempDir dir;
  const std::string h5 = dir.str("target.h5");
  auto r = run_atspeed("convert --from '" + fixture("base") + "' --lora '" + fixture("adapter_lora_only") + "' --out '" + h5 + "'");
  EXPECT_EQ(r.exit_code, 5) << r.output;
  const int64_t base_v = model::model_config_from_hf_json(fixture("base/config.json")).vocab_size;
  const std::string rows = "rows " + std::to_string(base_v) + ".." + std::to_string(fixture_tokenizer()->size() - 1);
  for (const std::string want : {rows, std::string("model.embed_tokens.weight and lm_head.weight"),
                                 std::string("tools/merge_lcrec_lora.py")})
    EXPECT_NE(r.output.find(want), std::string::npos) << "missing '" << want << "' in\n" << r.output;
  EXPECT_FALSE(std::filesystem::exists(h5));

  r = run_atspeed("convert --from '" + fixture("merged_lora_only") + "' --out '" + h5 + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  CheckpointReader reader(h5, "target");
  model::LlamaModel m = model::load_model(reader);
  EXPECT_LE(max_diff(causal_logits(m, expected().at("input_ids")), expected().at("lora_only_logits")), 1e-4);
}

TEST(LcrecConvertTest, ExportWritesShardsIndexAndTokenizerThatReimportIdentically) {
  TempDir dir;
  const std::string a = dir.str("a.h5"), b = dir.str("b.h5"), hf = dir.str("hf");
  ASSERT_EQ(run_atspeed("convert --from '" + fixture("base") + "' --lora '" + fixture("adapter_full") + "' --out '" + a + "'").exit_code, 0);
  // Shards of at most 100 kB: several files and an index, as transformers writes them.
  auto r = run_atspeed("convert --from '" + a + "' --to-hf '" + hf + "' --max-shard-size 100KB");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json index = json::parse(read_text_file(hf + "/model.safetensors.index.json"));
  std::set<std::string> shards;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) shards.insert(it.value().get<std::string>());
  EXPECT_GE(shards.size(), 3u);
  for (const auto& s : shards) {
    // At most 100 kB of tensors (+ the header), unless one tensor alone is larger.
    SafetensorsReader shard(hf + "/" + s);
    if (shard.list().size() > 1) EXPECT_LE(std::filesystem::file_size(hf + "/" + s), 100000u + 8u * 1024u) << s;
  }
  // The tokenizer files come back byte for byte.
  const TokenizerFiles want = TokenizerFiles::read_dir(fixture("adapter_full"));
  const TokenizerFiles got = TokenizerFiles::read_dir(hf);
  EXPECT_EQ(got.sentencepiece_model, want.sentencepiece_model);
  EXPECT_EQ(got.json_files, want.json_files);
  // Re-importing the export gives the same tensors and the same logits.
  r = run_atspeed("convert --from '" + hf + "' --out '" + b + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  CheckpointReader x(a), y(b);
  for (const auto& t : x.list()) {
    ASSERT_TRUE(y.contains(t.name)) << t.name;
    EXPECT_TRUE(torch::equal(x.read(t.name), y.read(t.name))) << t.name;
  }
  model::LlamaModel m = model::load_model(y);
  EXPECT_LE(max_diff(causal_logits(m, expected().at("input_ids")), expected().at("full_logits")), 1e-4);
}

// ---- every command on a converted LC-Rec target and draft (tests/data/lcrec/{target,draft,data}) ----

// expected_search.json (tools/make_lcrec_search_fixture.py): "searches", each a test user's history
// and prompt ids, K, and the beams of a cache-free trie beam search over transformers' fp32 logits
// (full-vocabulary log-softmax, no length normalisation).
const std::vector<json>& expected_searches() {
  static const std::vector<json> searches =
      json::parse(read_text_file(fixture("expected_search.json")))["searches"].get<std::vector<json>>();
  return searches;
}

// A converted target and draft, once per process.
struct ConvertedPair {
  TempDir dir;
  std::string target = dir.str("target.h5"), draft = dir.str("draft.h5");
  ConvertedPair() {
    model::HfImportOptions t;
    t.from = fixture("target");
    model::import_hf_checkpoint(t, target);
    model::HfImportOptions d = t;
    d.from = fixture("draft");
    d.kind = "draft";
    model::import_hf_checkpoint(d, draft);
  }
};
const ConvertedPair& converted() {
  static const ConvertedPair* pair = new ConvertedPair();
  return *pair;
}

// Tuples identical; scores to 1e-4 (SPEC §9.2: the fixture's smallest gap is 5.9e-4, so no flips).
void expect_beams(const json& got_items, const json& want, const std::string& what) {
  ASSERT_EQ(got_items.size(), want["beams"].size()) << what;
  for (size_t i = 0; i < got_items.size(); ++i) {
    EXPECT_EQ(got_items[i]["codes"], want["beams"][i]["codes"]) << what << " rank " << i + 1;
    EXPECT_NEAR(got_items[i]["score"].get<double>(), want["beams"][i]["score"].get<double>(), 1e-4) << what << " rank " << i + 1;
  }
}

TEST(LcrecEndToEndTest, EvalSearchEqualsTransformersTrieSearch) {
  CheckpointReader reader(converted().target);
  DataConfig data;
  data.dir = fixture("data");
  data.prompt_format = "lcrec";
  data.checkpoint_tokenizer = std::make_shared<const TextTokenizer>(*model::read_tokenizer(reader));
  const Dataset ds = load_dataset(data);
  const PromptFormat format(ds.catalog, data.layout());
  const auto samples = make_test_samples(ds, data.history_len);
  model::LlamaModel m = model::load_model(reader);
  decode::LlamaTreeScorer scorer(m);
  const PrefixTrie trie(*ds.catalog);
  int checked = 0;
  for (int64_t k : {1, 5, 20}) {
    std::vector<const json*> want;
    std::vector<std::vector<int64_t>> prompts;
    for (const json& e : expected_searches()) {
      if (e["k"] != k) continue;
      const Sample& s = samples.at(static_cast<size_t>(std::find_if(samples.begin(), samples.end(), [&](const Sample& x) {
                                                          return x.user == e["user"].get<int64_t>();
                                                        }) - samples.begin()));
      EXPECT_EQ(s.history, e["history"].get<std::vector<int64_t>>()) << "user " << e["user"];
      prompts.push_back(format.prompt(s.history));
      EXPECT_EQ(prompts.back(), e["prompt_ids"].get<std::vector<int64_t>>()) << "user " << e["user"];
      want.push_back(&e);
    }
    decode::SearchOptions opts;
    opts.beam_width = k;
    decode::TargetBeamSearch search(scorer, trie, opts);
    const auto results = search.run(prompts);
    for (size_t i = 0; i < results.size(); ++i) {
      json got = json::array();
      for (const auto& b : results[i].beams) {
        std::vector<int64_t> codes;
        for (int64_t t : b.tokens) codes.push_back(ds.catalog->vocab().code_of(t));
        got.push_back({{"codes", codes}, {"score", b.score}});
      }
      expect_beams(got, *want[i], "eval user " + (*want[i])["user"].dump() + " K " + std::to_string(k));
      ++checked;
    }
  }
  EXPECT_EQ(checked, static_cast<int>(expected_searches().size()));
  EXPECT_GE(checked, 80);
}

TEST(LcrecEndToEndTest, ServeAnswersEqualTransformersTrieSearchAndStrictEqualsTarget) {
  TempDir dir;
  const std::string args = "serve.target=" + converted().target + " serve.draft=" + converted().draft +
                           " serve.port=0 data.dir=" + fixture("data") + " decode.device=cpu run.threads=1" +
                           " serve.default_mode=strict serve.max_k=20";
  test::ServerProcess server("", args, dir.str("serve.log"), 60, 60);
  ASSERT_GT(server.port(), 0) << test::read_file(dir.str("serve.log"));
  int checked = 0;
  for (const json& e : expected_searches()) {
    json history = json::array();
    for (const auto& item : e["history"]) history.push_back(item.get<int64_t>() + 1);  // the API's ids are 1-based
    for (const char* mode : {"target", "strict"}) {
      const test::Reply r = test::post(server, json{{"history", history}, {"k", e["k"]}, {"mode", mode}}.dump());
      ASSERT_EQ(r.status, 200) << r.body.dump();
      expect_beams(r.body["items"], e, std::string(mode) + " user " + e["user"].dump() + " K " + e["k"].dump());
      // The item ids are those of the codes (1-based).
      for (size_t i = 0; i < r.body["items"].size(); ++i) {
        std::vector<int64_t> ids;
        for (const auto& id : e["beams"][i]["items"]) ids.push_back(id.get<int64_t>() + 1);
        EXPECT_EQ(r.body["items"][i]["item_ids"].get<std::vector<int64_t>>(), ids);
      }
    }
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(expected_searches().size()));
}

TEST(LcrecEndToEndTest, BenchDecodeStrictIsIdenticalToTargetBeamSearch) {
  TempDir dir;
  const auto r = run_atspeed("bench decode --target '" + converted().target + "' --draft '" + converted().draft +
                             "' data.dir=" + fixture("data") + " run.out_dir=" + dir.str("out") +
                             " --plot none --users 0 --batch-sizes 1 8 --ks 1 5 20 --methods strict relaxed");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json j = json::parse(read_text_file(dir.str("out") + "/bench_decode.json"));
  int strict_rows = 0, baseline_rows = 0;
  for (const auto& row : j["results"]) {
    // The baselines left out of --methods are decoded anyway: every speedup has its own.
    if (row["kind"] == "target" || row["kind"] == "sampling") ++baseline_rows;
    if (row["kind"] == "relaxed") EXPECT_EQ(row["baseline"], "sampling") << row.dump();
    if (row["kind"] != "strict") continue;
    EXPECT_EQ(row["identical_fraction"].get<double>(), 1.0) << row.dump();
    EXPECT_EQ(row["requests"], 36) << row.dump();
    ++strict_rows;
  }
  EXPECT_EQ(strict_rows, 6) << r.output;  // K 1, 5, 20 x batch 1, 8
  EXPECT_EQ(baseline_rows, 12) << r.output;
}

TEST(LcrecEndToEndTest, TeacherAndTrainDraftFromTheConvertedDraftThenStrictStaysIdentical) {
  TempDir dir;
  const std::string data = "data.dir=" + fixture("data") + " run.threads=1";
  // Teacher files from the converted target: the text layout and V = 1,461 (full logits below 2,048).
  auto r = run_atspeed("teacher teacher.target=" + converted().target + " " + data + " teacher.beams=5 teacher.max_valid=8" +
                       " teacher.chunk_size=16 teacher.out=" + dir.str("teacher") + " run.out_dir=" + dir.str("t"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const TeacherReader teacher(dir.str("teacher"), "train");
  EXPECT_EQ(teacher.meta().prompt_format, "lcrec");
  EXPECT_EQ(teacher.meta().vocab_size, fixture_tokenizer()->size());
  EXPECT_EQ(teacher.meta().top_k, 0);
  // A few alignment steps from the converted draft (its shape comes from align.init); the tokenizer
  // comes from the target, and the draft's checkpoint carries it.
  r = run_atspeed("train-draft " + data + " data.prompt_format=lcrec align.objective=atspeed_r align.teacher=" +
                  dir.str("teacher") + " align.target=" + converted().target + " align.init=" + converted().draft +
                  " train.global_batch=8 train.micro_batch=8 train.max_steps=3 train.warmup_steps=1" +
                  " train.max_valid_samples=8 train.eval_batch=8 run.out_dir=" + dir.str("d"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  CheckpointReader trained(dir.str("d/last.h5"), "draft");
  ASSERT_TRUE(model::read_tokenizer(trained).has_value());
  EXPECT_EQ(model::model_config_from_checkpoint(trained).hidden_size, 16);
  // The trained draft decodes strictly identically to target beam search.
  r = run_atspeed("bench decode --target '" + converted().target + "' --draft '" + dir.str("d/last.h5") + "' " + data +
                  " run.out_dir=" + dir.str("b") + " --plot none --users 0 --batch-sizes 1 --ks 1 5 --methods target strict");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json j = json::parse(read_text_file(dir.str("b") + "/bench_decode.json"));
  int strict_rows = 0;
  for (const auto& row : j["results"]) {
    if (row["kind"] != "strict") continue;
    EXPECT_EQ(row["identical_fraction"].get<double>(), 1.0) << row.dump();
    ++strict_rows;
  }
  EXPECT_EQ(strict_rows, 2);
}

TEST(LcrecTeacherTest, LargeVocabulariesStoreTheTopLogitsByDefault) {
  TeacherConfig tc;
  EXPECT_EQ(tc.stored_top_k(1029), 0);
  EXPECT_EQ(tc.stored_top_k(2048), 0);
  EXPECT_EQ(tc.stored_top_k(33024), 512);
  tc.top_k = -1;
  EXPECT_EQ(tc.stored_top_k(33024), 0);
  tc.top_k = 64;
  EXPECT_EQ(tc.stored_top_k(33024), 64);
  EXPECT_EQ(tc.stored_top_k(1029), 64);
}

}  // namespace
}  // namespace atspeed
