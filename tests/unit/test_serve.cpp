// serve/ without models: request parsing and validation (every bad input names its problem), the
// dynamic-batching engine over a fake decoder (batches fill, keys never mix, timeouts, a full
// queue, draining at stop), and the tensor-parallel wire format.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "core/config.h"
#include "core/dist/communicator.h"
#include "core/vocab/item_catalog.h"
#include "core/vocab/prompt.h"
#include "serve/decoder.h"
#include "serve/engine.h"
#include "serve/metrics.h"
#include "serve/request.h"
#include "serve/serve_config.h"
#include "serve/worker.h"

namespace atspeed::serve {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// Items 0..4 (API ids 1..5); items 3 and 4 collide.
ItemCatalog catalog() {
  return ItemCatalog(Vocabulary(4, 8), {0, 1, 2, 3,   //
                                        0, 1, 2, 4,   //
                                        1, 0, 0, 0,   //
                                        7, 7, 7, 7,   //
                                        7, 7, 7, 7});
}

RequestLimits limits() {
  RequestLimits l;
  l.max_history = 6;
  l.history_len = 3;
  l.prompt = PromptLayout{};
  l.max_k = 5;
  l.max_draft_width = 10;
  l.default_k = 2;
  l.default_mode = Mode::Strict;
  l.default_draft_width = 4;
  l.has_draft = true;
  return l;
}

TEST(ServeConfigTest, DefaultsValidateAndBadValuesNameTheKey) {
  const std::string dir = find_config_dir("");
  const auto ok = read_section<ServeConfig>(Config::compose(dir, "config", {"serve.target=t.h5", "serve.draft=d.h5"}), "serve");
  EXPECT_EQ(ok.host, "127.0.0.1");
  EXPECT_EQ(ok.port, 8080);
  EXPECT_EQ(ok.default_mode, decode::DecodeMode::Auto);  // auto works with or without a draft
  for (const auto& [override, key] : std::vector<std::pair<std::string, std::string>>{
           {"serve.port=70000", "serve.port"}, {"serve.max_batch=0", "serve.max_batch"},
           {"serve.default_mode=fast", "serve.default_mode"}, {"serve.default_k=500", "serve.default_k"}}) {
    try {
      (void)read_section<ServeConfig>(Config::compose(dir, "config", {"serve.target=t.h5", "serve.draft=d.h5", override}), "serve");
      ADD_FAILURE() << override << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Config);
      EXPECT_NE(e.message().find(key), std::string::npos) << e.message();
    }
  }
}

TEST(ServeConfigTest, SpeculativeDefaultModesNeedADraft) {
  const std::string dir = find_config_dir("");
  for (const char* mode : {"strict", "relaxed"}) {
    try {
      (void)read_section<ServeConfig>(
          Config::compose(dir, "config", {"serve.target=t.h5", "serve.draft=", std::string("serve.default_mode=") + mode}),
          "serve");
      ADD_FAILURE() << mode << " without a draft was accepted";
    } catch (const Error& e) {
      EXPECT_NE(e.message().find("serve.default_mode"), std::string::npos) << e.message();
    }
  }
  // auto and target serve without a draft.
  for (const char* mode : {"auto", "target"}) {
    EXPECT_NO_THROW((void)read_section<ServeConfig>(
        Config::compose(dir, "config", {"serve.target=t.h5", "serve.draft=", std::string("serve.default_mode=") + mode}),
        "serve"));
  }
}

TEST(ServeRequest, ValidHistoryBuildsTheTrainingPromptOfTheLastItems) {
  const auto cat = catalog();
  const auto r = parse_recommend_request(R"({"history": [1, 2, 3, 4, 2], "k": 3, "mode": "target"})", cat, limits(), 7);
  ASSERT_TRUE(r.job) << r.error;
  std::vector<int64_t> expected;
  const std::vector<int64_t> last3{2, 3, 1};  // 0-based ids of the last three API ids 3, 4, 2
  append_prompt_tokens(cat, last3, PromptLayout{}, expected);
  EXPECT_EQ(r.job->prompt, expected);
  EXPECT_EQ(r.job->history_used, 3);
  EXPECT_EQ(r.job->key, (BatchKey{Mode::Target, 3, 0}));
  EXPECT_EQ(r.job->seed, 0u);  // deterministic modes carry no seed, so they batch together
}

TEST(ServeRequest, DefaultsCodesAndSeeds) {
  const auto cat = catalog();
  const auto by_items = parse_recommend_request(R"({"history": [4, 1]})", cat, limits(), 7);
  ASSERT_TRUE(by_items.job) << by_items.error;
  EXPECT_EQ(by_items.job->key, (BatchKey{Mode::Strict, 2, 4}));
  const auto by_codes = parse_recommend_request(R"({"history_codes": [[7,7,7,7], [0,1,2,3]]})", cat, limits(), 7);
  ASSERT_TRUE(by_codes.job) << by_codes.error;
  EXPECT_EQ(by_codes.job->prompt, by_items.job->prompt);
  // The draft width defaults to decode.draft_width raised to k.
  const auto wide = parse_recommend_request(R"({"history": [1], "k": 5})", cat, limits(), 7);
  ASSERT_TRUE(wide.job);
  EXPECT_EQ(wide.job->key.draft_width, 5);
  const auto relaxed = parse_recommend_request(R"({"history": [1], "mode": "relaxed"})", cat, limits(), 7);
  ASSERT_TRUE(relaxed.job);
  EXPECT_EQ(relaxed.job->seed, 7u);
  const auto seeded = parse_recommend_request(R"({"history": [1], "mode": "relaxed", "seed": 99})", cat, limits(), 7);
  ASSERT_TRUE(seeded.job);
  EXPECT_EQ(seeded.job->seed, 99u);
}

TEST(ServeRequest, EveryBadInputIsA400NamingTheProblem) {
  const auto cat = catalog();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "malformed JSON"},
      {"{\"history\": [1,", "malformed JSON"},
      {"[1, 2]", "must be a JSON object"},
      {"{\"history\": [1], \"foo\": 1}", "unknown field 'foo'"},
      {"{}", "missing history"},
      {"{\"history\": [1], \"history_codes\": [[0,1,2,3]]}", "not both"},
      {"{\"history\": 5}", "history must be an array"},
      {"{\"history\": []}", "history is empty"},
      {"{\"history\": [1,1,1,1,1,1,1]}", "more than serve.max_history"},
      {"{\"history\": [0]}", "history[0] = 0: unknown item id"},
      {"{\"history\": [1, 6]}", "history[1] = 6: unknown item id"},
      {"{\"history\": [-3]}", "unknown item id"},
      {"{\"history\": [\"1\"]}", "history[0] must be an integer"},
      {"{\"history\": [1.5]}", "history[0] must be an integer"},
      {"{\"history\": [18446744073709551615]}", "out of range"},
      {"{\"history\": [null]}", "history[0] must be an integer"},
      {"{\"history_codes\": [[0,1,2]]}", "history_codes[0] must be an array of 4 codes"},
      {"{\"history_codes\": [5]}", "history_codes[0] must be an array of 4 codes"},
      {"{\"history_codes\": [[0,1,2,9]]}", "history_codes[0][3] = 9 is out of range [0, 7]"},
      {"{\"history_codes\": [[1,1,1,1]]}", "no item has these codes"},
      {"{\"history\": [1], \"k\": 0}", "k = 0 is out of range [1, 5]"},
      {"{\"history\": [1], \"k\": 6}", "k = 6 is out of range [1, 5]"},
      {"{\"history\": [1], \"k\": 2.0}", "k must be an integer"},
      {"{\"history\": [1], \"k\": \"3\"}", "k must be an integer"},
      {"{\"history\": [1], \"k\": true}", "k must be an integer"},
      {"{\"history\": [1], \"k\": 4, \"draft_width\": 3}", "k = 4 is above draft_width = 3"},
      {"{\"history\": [1], \"draft_width\": 11}", "draft_width = 11 is out of range"},
      {"{\"history\": [1], \"draft_width\": 0, \"mode\": \"target\"}", "draft_width = 0 is out of range"},
      {"{\"history\": [1], \"mode\": \"fast\"}", "mode 'fast' is not one of"},
      {"{\"history\": [1], \"mode\": 1}", "mode must be a string"},
      {"{\"history\": [1], \"mode\": \"relaxed\", \"seed\": -1}", "seed = -1 is out of range"},
  };
  for (const auto& [body, message] : cases) {
    const auto r = parse_recommend_request(body, cat, limits(), 0);
    EXPECT_FALSE(r.job) << body;
    EXPECT_EQ(r.status, 400) << body;
    EXPECT_NE(r.error.find(message), std::string::npos) << body << " -> " << r.error;
  }
  RequestLimits no_draft = limits();
  no_draft.has_draft = false;
  const auto r = parse_recommend_request(R"({"history": [1], "mode": "strict"})", cat, no_draft, 0);
  EXPECT_NE(r.error.find("needs a draft model"), std::string::npos) << r.error;
  // Deep nesting and invalid UTF-8 neither crash the parser nor break the error body.
  const auto deep = parse_recommend_request(std::string(20000, '[') + std::string(20000, ']'), cat, limits(), 0);
  EXPECT_EQ(deep.status, 400);
  const auto body = error_body("bad \xff\xfe bytes");
  EXPECT_TRUE(json::accept(body)) << body;
}

TEST(ServeRequest, OutOfRangeNumbersAre400sNamingTheField) {
  const auto cat = catalog();
  for (const char* body : {R"({"history": [1], "k": 1e999})", R"({"history": [1], "k": -1e999})"}) {
    const auto r = parse_recommend_request(body, cat, limits(), 7);
    EXPECT_FALSE(r.job);
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(r.error.find("k = "), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("out of range"), std::string::npos) << r.error;
  }
}

TEST(ServeRequest, AutoTakesThePlansChoiceAndSaysSo) {
  const auto cat = catalog();
  RequestLimits l = limits();
  // Without a plan (a server not started with serve.default_mode=auto): 400.
  auto r = parse_recommend_request(R"({"history": [1], "k": 3, "mode": "auto"})", cat, l, 7);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.error.find("serve.default_mode=auto"), std::string::npos) << r.error;
  auto plan = std::make_shared<decode::Plan>();
  decode::PlanChoice strict;
  strict.k = 3;
  strict.mode = decode::DecodeMode::Strict;
  strict.draft_width = 6;
  strict.gamma = 2;
  decode::PlanChoice target;
  target.k = 5;
  plan->choices = {strict, target};
  l.plan = plan;
  l.default_mode = Mode::Auto;
  r = parse_recommend_request(R"({"history": [1], "k": 3})", cat, l, 7);
  ASSERT_TRUE(r.job) << r.error;
  EXPECT_EQ(r.job->key, (BatchKey{Mode::Strict, 3, 6, 2}));
  EXPECT_TRUE(r.job->requested_mode.is_auto());
  DecodeResult res;
  res.tuples.push_back({{5, 13, 21, 29}, -1.0f});  // the first item's code tokens (4 levels x 8 codes)
  const auto body = json::parse(render_recommend_response(*r.job, res, cat, 1.0, 0.5, 1));
  EXPECT_EQ(body["stats"]["mode"], "auto");
  EXPECT_EQ(body["stats"]["auto_choice"], "strict");
  EXPECT_EQ(body["stats"]["draft_width"], 6);
  EXPECT_EQ(body["stats"]["gamma"], 2);
  r = parse_recommend_request(R"({"history": [1], "k": 5, "mode": "auto"})", cat, l, 7);
  ASSERT_TRUE(r.job) << r.error;
  EXPECT_EQ(r.job->key, (BatchKey{Mode::Target, 5, 0, 0}));
  // The plan chooses N: a client's draft_width is refused.
  r = parse_recommend_request(R"({"history": [1], "k": 3, "mode": "auto", "draft_width": 8})", cat, l, 7);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.error.find("draft_width"), std::string::npos) << r.error;
}

TEST(ServeRequest, ResponseListsEveryItemOfACollidingTuple) {
  const auto cat = catalog();
  const auto r = parse_recommend_request(R"({"history": [1], "k": 2, "mode": "strict"})", cat, limits(), 0);
  ASSERT_TRUE(r.job);
  DecodeResult res;
  const Vocabulary& v = cat.vocab();
  res.tuples.push_back({{v.code_token(0, 7), v.code_token(1, 7), v.code_token(2, 7), v.code_token(3, 7)}, -0.5f});
  res.tuples.push_back({{v.code_token(0, 1), v.code_token(1, 0), v.code_token(2, 0), v.code_token(3, 0)}, -1.5f});
  res.stats.rounds = 2;
  res.stats.accepted_levels = {2, 1};
  const auto j = json::parse(render_recommend_response(*r.job, res, cat, 3.0, 1.0, 4));
  ASSERT_EQ(j["items"].size(), 2u);
  EXPECT_EQ(j["items"][0]["rank"], 1);
  EXPECT_EQ(j["items"][0]["item_ids"], json({4, 5}));  // 1-based ids of items 3 and 4
  EXPECT_EQ(j["items"][0]["codes"], json({7, 7, 7, 7}));
  EXPECT_FLOAT_EQ(j["items"][0]["score"].get<float>(), -0.5f);
  EXPECT_EQ(j["items"][1]["item_ids"], json({3}));
  EXPECT_EQ(j["stats"]["accepted_levels"], 3);
  EXPECT_EQ(j["stats"]["rounds"], 2);
  EXPECT_EQ(j["stats"]["batch_size"], 4);
  EXPECT_EQ(j["stats"]["draft_width"], 4);
}

// Answers each job with one tuple whose score is its prompt length; records batch sizes.
class FakeDecoder : public Decoder {
 public:
  std::vector<DecodeResult> decode(const BatchKey& key, const std::vector<const DecodeJob*>& jobs) override {
    std::this_thread::sleep_for(delay);
    std::lock_guard lock(mutex);
    batches.push_back(static_cast<int64_t>(jobs.size()));
    keys.push_back(key);
    std::vector<DecodeResult> out;
    for (const auto* j : jobs) {
      EXPECT_EQ(j->key, key);
      DecodeResult r;
      r.tuples.push_back({{5, 6}, static_cast<float>(j->prompt.size())});
      out.push_back(r);
    }
    return out;
  }
  std::chrono::milliseconds delay{0};
  std::mutex mutex;
  std::vector<int64_t> batches;
  std::vector<BatchKey> keys;
};

DecodeJob job(BatchKey key, int64_t prompt_len) {
  DecodeJob j;
  j.key = key;
  j.prompt.assign(static_cast<size_t>(prompt_len), 1);
  return j;
}

TEST(ServeEngine, ConcurrentRequestsShareBatchesOfOneKey) {
  FakeDecoder dec;
  ServeMetrics metrics;
  Engine engine(dec, EngineOptions{4, 200, 64}, &metrics);
  const BatchKey a{Mode::Strict, 5, 40}, b{Mode::Target, 5, 0};
  std::vector<Outcome> out(10);
  std::vector<std::thread> threads;
  for (int i = 0; i < 10; ++i) {
    threads.emplace_back([&, i] { out[static_cast<size_t>(i)] = engine.submit(job(i % 2 ? b : a, i + 1), Engine::Clock::now() + 10s); });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 10; ++i) {
    const auto& o = out[static_cast<size_t>(i)];
    ASSERT_EQ(o.status, 200) << o.error;
    EXPECT_FLOAT_EQ(o.result.tuples.at(0).score, static_cast<float>(i + 1));  // its own answer
    EXPECT_GE(o.batch_size, 1);
    EXPECT_LE(o.batch_size, 4);
  }
  int64_t total = 0, largest = 0;
  for (auto n : dec.batches) {
    total += n;
    largest = std::max(largest, n);
  }
  EXPECT_EQ(total, 10);
  EXPECT_GE(largest, 2);  // 5 same-key requests within 200 ms batch up
  EXPECT_NE(metrics.render().find("atspeed_serve_batch_size_count"), std::string::npos);
}

TEST(ServeEngine, DeadlinesFullQueueAndDrainingStop) {
  FakeDecoder dec;
  dec.delay = 300ms;
  {
    Engine engine(dec, EngineOptions{1, 0, 1});
    const BatchKey k{Mode::Target, 1, 0};
    // The first occupies the decoder for 300 ms; the second waits in the queue past its deadline.
    std::thread first([&] { EXPECT_EQ(engine.submit(job(k, 1), Engine::Clock::now() + 5s).status, 200); });
    std::this_thread::sleep_for(50ms);
    const auto late = engine.submit(job(k, 2), Engine::Clock::now() + 50ms);
    EXPECT_EQ(late.status, 504);
    EXPECT_NE(late.error.find("timed out"), std::string::npos);
    first.join();
  }
  dec.delay = 0ms;
  {
    // A long batching wait: stop() must answer the queued requests at once, not drop them.
    Engine engine(dec, EngineOptions{8, 60000, 2});
    const BatchKey k{Mode::Target, 1, 0};
    std::vector<Outcome> out(3);
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i) threads.emplace_back([&, i] { out[static_cast<size_t>(i)] = engine.submit(job(k, 1), Engine::Clock::now() + 30s); });
    while (engine.queue_depth() < 2) std::this_thread::sleep_for(1ms);
    out[2] = engine.submit(job(k, 1), Engine::Clock::now() + 30s);  // queue full
    EXPECT_EQ(out[2].status, 503);
    const auto t0 = Engine::Clock::now();
    engine.stop();
    for (auto& t : threads) t.join();
    EXPECT_LT(Engine::Clock::now() - t0, 5s);
    EXPECT_EQ(out[0].status, 200);
    EXPECT_EQ(out[1].status, 200);
    EXPECT_EQ(engine.submit(job(k, 1), Engine::Clock::now() + 1s).status, 503);  // stopped
  }
}

TEST(ServeWorker, WireFormatRoundTripsAndBroadcastDecoderDecodesLocally) {
  DecodeJob j1 = job({Mode::Relaxed, 3, 40}, 5), j2 = job({Mode::Relaxed, 3, 40}, 2);
  j1.seed = ~0ull;
  j2.seed = 12;
  j2.history_used = 1;
  const std::vector<const DecodeJob*> jobs{&j1, &j2};
  const auto payload = encode_batch(j1.key, jobs);
  BatchKey key;
  std::vector<DecodeJob> back;
  decode_batch(payload, 2, key, back);
  EXPECT_EQ(key, j1.key);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].prompt, j1.prompt);
  EXPECT_EQ(back[0].seed, j1.seed);
  EXPECT_EQ(back[1].prompt, j2.prompt);
  EXPECT_EQ(back[1].history_used, 1);
  auto comm = make_local_communicator();
  FakeDecoder local;
  BroadcastDecoder bd(*comm, local);
  const auto res = bd.decode(j1.key, jobs);
  ASSERT_EQ(res.size(), 2u);
  EXPECT_FLOAT_EQ(res[1].tuples[0].score, 2.0f);
}

}  // namespace
}  // namespace atspeed::serve
