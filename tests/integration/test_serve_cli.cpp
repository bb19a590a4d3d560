// `atspeed serve` through the real binary on loopback (serve.port=0, the printed port parsed from
// its log), with tiny random checkpoints on a synthetic dataset: every mode answers, strict returns
// the target's items, batched answers equal one-at-a-time answers, every bad input gets its 4xx and
// the server keeps serving, a full queue gets 503 and a passed deadline 504, /metrics names its
// metrics, and SIGTERM answers in-flight requests and exits 0.
#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <regex>
#include <thread>

#include "tests/test_models.h"
#include "tests/integration/serve_process.h"
#include "tests/test_util.h"

namespace atspeed {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

using test::post;
using test::read_file;
using test::Reply;

// `atspeed serve` with this file's time limits: 60 s to start, 60 s per request.
class ServerProcess : public test::ServerProcess {
 public:
  ServerProcess(const std::string& args, const std::string& log) : test::ServerProcess("", args, log, 60, 60) {}
};

class ServeCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp = new test::TempDir();
    histories = new std::vector<json>(test::write_serve_fixture(*tmp, 12, &num_items));
    server = new ServerProcess(common_args() + " serve.max_batch=8 serve.max_wait_ms=50 serve.max_history=40" +
                                   " serve.max_body_bytes=4096",
                               tmp->str("serve.log"));
  }
  static void TearDownTestSuite() {
    delete server;
    delete histories;
    delete tmp;
  }
  static std::string common_args() {
    return "serve.target=" + tmp->str("target.h5") + " serve.draft=" + tmp->str("draft.h5") +
           " serve.port=0 data=synthetic data.source=files data.dir=" + tmp->str("syn") + " decode.device=cpu run.threads=1" +
           " serve.default_mode=strict";  // an explicit mode: auto would plan at every start
  }
  static json request(size_t user, const std::string& mode, int k = 5) {
    return json{{"history", (*histories)[user]}, {"mode", mode}, {"k", k}};
  }
  void expect_healthy() {
    auto res = server->client()->Get("/healthz");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(res->body, R"({"status":"ok"})");
  }
  // Items and codes exactly; scores to float noise (tree vs batched attention, SPEC §9.2).
  static void expect_same_items(const json& a, const json& b, const std::string& what) {
    ASSERT_EQ(a["items"].size(), b["items"].size()) << what;
    for (size_t i = 0; i < a["items"].size(); ++i) {
      EXPECT_EQ(a["items"][i]["codes"], b["items"][i]["codes"]) << what << " rank " << i + 1;
      EXPECT_EQ(a["items"][i]["item_ids"], b["items"][i]["item_ids"]) << what << " rank " << i + 1;
      EXPECT_NEAR(a["items"][i]["score"].get<double>(), b["items"][i]["score"].get<double>(), 1e-4) << what;
    }
  }

  static test::TempDir* tmp;
  static std::vector<json>* histories;
  static ServerProcess* server;
  static int64_t num_items;
};
test::TempDir* ServeCli::tmp = nullptr;
std::vector<json>* ServeCli::histories = nullptr;
ServerProcess* ServeCli::server = nullptr;
int64_t ServeCli::num_items = 0;

TEST_F(ServeCli, EveryModeAnswersAndStrictEqualsTarget) {
  ASSERT_GT(server->port(), 0);
  expect_healthy();
  for (size_t u = 0; u < 4; ++u) {
    const Reply target = post(*server, request(u, "target").dump());
    const Reply strict = post(*server, request(u, "strict").dump());
    ASSERT_EQ(target.status, 200) << target.body.dump();
    ASSERT_EQ(strict.status, 200) << strict.body.dump();
    ASSERT_EQ(target.body["items"].size(), 5u);
    for (size_t i = 0; i < 5; ++i) {
      const auto& it = target.body["items"][i];
      EXPECT_EQ(it["rank"], static_cast<int>(i) + 1);
      EXPECT_EQ(it["codes"].size(), 4u);
      ASSERT_GE(it["item_ids"].size(), 1u);
      for (const auto& id : it["item_ids"]) {
        EXPECT_GE(id.get<int64_t>(), 1);
        EXPECT_LE(id.get<int64_t>(), num_items);
      }
      if (i > 0) EXPECT_LE(it["score"].get<double>(), target.body["items"][i - 1]["score"].get<double>());
    }
    expect_same_items(strict.body, target.body, "strict vs target, user " + std::to_string(u));
    const auto& st = strict.body["stats"];
    EXPECT_GE(st["rounds"].get<int>(), 1);
    EXPECT_GE(st["draft_forwards"].get<int>(), 1);
    EXPECT_LE(st["target_forwards"].get<int>(), 5);
    EXPECT_GT(st["latency_ms"].get<double>(), 0.0);
    EXPECT_EQ(target.body["stats"]["target_forwards"], 4);  // prefill + 3 steps
    EXPECT_EQ(target.body["stats"]["draft_forwards"], 0);
  }
  // Relaxed with a seed is reproducible; without one it reports the seed it used.
  json rq = request(0, "relaxed");
  rq["seed"] = 42;
  rq["draft_width"] = 10;
  const Reply r1 = post(*server, rq.dump()), r2 = post(*server, rq.dump());
  ASSERT_EQ(r1.status, 200) << r1.body.dump();
  EXPECT_EQ(r1.body["items"], r2.body["items"]);
  EXPECT_EQ(r1.body["stats"]["seed"], 42);
  EXPECT_EQ(r1.body["stats"]["draft_width"], 10);
  const Reply r3 = post(*server, request(1, "relaxed").dump());
  ASSERT_EQ(r3.status, 200);
  EXPECT_TRUE(r3.body["stats"].contains("seed"));
  // history_codes gives the same answer as the item ids; the default mode is serve.default_mode.
  const Reply basis = post(*server, request(2, "target").dump());
  ASSERT_EQ(basis.status, 200);
  json by_codes = {{"history_codes", json::array()}}, by_ids = {{"history", json::array()}};
  for (const auto& it : basis.body["items"]) {
    by_codes["history_codes"].push_back(it["codes"]);
    by_ids["history"].push_back(it["item_ids"][0]);
  }
  const Reply c = post(*server, by_codes.dump()), i = post(*server, by_ids.dump());
  ASSERT_EQ(c.status, 200) << c.body.dump();
  EXPECT_EQ(c.body["items"], i.body["items"]);
  EXPECT_EQ(c.body["stats"]["mode"], "strict");
  EXPECT_EQ(c.body["items"].size(), 10u);  // serve.default_k
}

TEST_F(ServeCli, BatchedEqualsSequential) {
  for (const std::string mode : {"target", "strict"}) {
    std::vector<Reply> sequential, batched(histories->size());
    for (size_t u = 0; u < histories->size(); ++u) {
      sequential.push_back(post(*server, request(u, mode).dump()));
      ASSERT_EQ(sequential.back().status, 200);
      EXPECT_EQ(sequential.back().body["stats"]["batch_size"], 1);
    }
    std::vector<std::thread> threads;
    for (size_t u = 0; u < histories->size(); ++u) {
      threads.emplace_back([&, u] { batched[u] = post(*server, request(u, mode).dump()); });
    }
    for (auto& t : threads) t.join();
    int64_t largest = 0;
    for (size_t u = 0; u < histories->size(); ++u) {
      ASSERT_EQ(batched[u].status, 200) << batched[u].body.dump();
      largest = std::max(largest, batched[u].body["stats"]["batch_size"].get<int64_t>());
      expect_same_items(batched[u].body, sequential[u].body, mode + " user " + std::to_string(u));
    }
    EXPECT_GE(largest, 2) << mode << ": concurrent requests were never batched";
    EXPECT_LE(largest, 8);  // serve.max_batch
  }
}

TEST_F(ServeCli, BadInputsGet4xxAndTheServerKeepsServing) {
  const std::string h = (*histories)[0].dump();
  const std::vector<std::tuple<std::string, int, std::string>> cases = {
      {"{not json", 400, "malformed JSON"},
      {"[]", 400, "must be a JSON object"},
      {R"({"history": "1 2 3"})", 400, "history must be an array"},
      {R"({"history": []})", 400, "history is empty"},
      {R"({"history": [1, 99999]})", 400, "history[1] = 99999: unknown item id"},
      {R"({"history": [0]})", 400, "unknown item id"},
      {json{{"history", std::vector<int>(41, 1)}}.dump(), 400, "history has 41 items, more than serve.max_history = 40"},
      {"{\"history\": " + h + ", \"k\": 0}", 400, "k = 0 is out of range"},
      {"{\"history\": " + h + ", \"k\": 101}", 400, "k = 101 is out of range"},
      {"{\"history\": " + h + ", \"k\": \"5\"}", 400, "k must be an integer"},
      {"{\"history\": " + h + ", \"k\": 20, \"draft_width\": 10}", 400, "above draft_width"},
      {"{\"history\": " + h + ", \"mode\": \"greedy\"}", 400, "mode 'greedy'"},
      {"{\"history\": " + h + ", \"extra\": 1}", 400, "unknown field 'extra'"},
      {R"({"history_codes": [[1, 2]]})", 400, "array of 4 codes"},
      {std::string(5000, ' ') + "{}", 413, "serve.max_body_bytes"},
  };
  for (const auto& [body, status, message] : cases) {
    const Reply r = post(*server, body);
    EXPECT_EQ(r.status, status) << body.substr(0, 80);
    ASSERT_TRUE(r.body.is_object()) << body.substr(0, 80);
    EXPECT_NE(r.body.value("error", "").find(message), std::string::npos) << body.substr(0, 80) << " -> " << r.body.dump();
    expect_healthy();
  }
  auto c = server->client();
  auto res = c->Get("/v1/recommend");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);
  res = c->Get("/nope");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_NE(res->body.find("no such endpoint"), std::string::npos) << res->body;
  // A garbage request line from a raw socket does not hurt it either.
  httplib::Client raw("127.0.0.1", server->port());
  res = raw.Post("/v1/recommend", std::string("\xff\xfe\x00\x01", 4), "application/octet-stream");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  expect_healthy();
  EXPECT_EQ(post(*server, request(0, "target").dump()).status, 200);
}

TEST_F(ServeCli, MetricsNameRequestsLatencyBatchesQueueAndAcceptance) {
  ASSERT_EQ(post(*server, request(0, "strict").dump()).status, 200);
  EXPECT_EQ(post(*server, "{").status, 400);
  auto res = server->client()->Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  for (const char* name : {"atspeed_serve_requests_total{code=\"200\"}", "atspeed_serve_requests_total{code=\"400\"}",
                           "atspeed_serve_request_latency_seconds_bucket", "atspeed_serve_batch_size_bucket",
                           "atspeed_serve_queue_depth", "atspeed_serve_accepted_levels_bucket",
                           "atspeed_serve_decoded_requests_total{mode=\"strict\"}"}) {
    EXPECT_NE(res->body.find(name), std::string::npos) << name << "\n" << res->body;
  }
}

TEST_F(ServeCli, SigtermAnswersInFlightRequestsAndExitsZero) {
  // A long batching wait keeps the requests queued (in flight) when the signal arrives.
  ServerProcess s(common_args() + " serve.max_batch=64 serve.max_wait_ms=3000", tmp->str("drain.log"));
  ASSERT_GT(s.port(), 0);
  std::vector<Reply> replies(4);
  std::vector<std::thread> threads;
  for (size_t u = 0; u < replies.size(); ++u) {
    threads.emplace_back([&, u] { replies[u] = post(s, request(u, "strict").dump()); });
  }
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  bool queued = false;
  while (!queued && std::chrono::steady_clock::now() < deadline) {
    auto m = s.client()->Get("/metrics");
    queued = m && m->body.find("atspeed_serve_queue_depth 4") != std::string::npos;
    if (!queued) std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(queued) << s.log();
  const auto t0 = std::chrono::steady_clock::now();
  const int status = s.stop(SIGTERM);
  for (auto& t : threads) t.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2500ms) << "stop waited for the batching window";
  ASSERT_TRUE(WIFEXITED(status)) << s.log();
  EXPECT_EQ(WEXITSTATUS(status), 0) << s.log();
  for (const auto& r : replies) {
    EXPECT_EQ(r.status, 200) << r.body.dump() << "\n" << s.log();
    EXPECT_EQ(r.body["items"].size(), 5u);
  }
}

TEST_F(ServeCli, FullQueueIs503AndADeadlineIs504) {
  // A batching window far longer than the request timeout keeps two requests queued until their
  // deadline (504); a third finds the queue (serve.max_queue=2) full (503). Neither hurts the server.
  ServerProcess s(common_args() + " serve.max_batch=64 serve.max_wait_ms=20000 serve.max_queue=2" +
                      " serve.request_timeout_ms=2000",
                  tmp->str("limits.log"));
  ASSERT_GT(s.port(), 0);
  std::vector<Reply> queued(2);
  std::vector<std::thread> threads;
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t u = 0; u < queued.size(); ++u) {
    threads.emplace_back([&, u] { queued[u] = post(s, request(u, "strict").dump()); });
  }
  bool full = false;
  while (!full && std::chrono::steady_clock::now() < t0 + 1500ms) {
    auto m = s.client()->Get("/metrics");
    full = m && m->body.find("atspeed_serve_queue_depth 2") != std::string::npos;
    if (!full) std::this_thread::sleep_for(5ms);
  }
  ASSERT_TRUE(full) << s.log();
  const Reply refused = post(s, request(2, "strict").dump());
  EXPECT_EQ(refused.status, 503) << refused.body.dump();
  EXPECT_NE(refused.body.value("error", "").find("queue is full (serve.max_queue = 2)"), std::string::npos)
      << refused.body.dump();
  for (auto& t : threads) t.join();
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(waited, 1900ms);
  EXPECT_LT(waited, 15s) << "the deadline did not end the wait for the batching window";
  for (const auto& r : queued) {
    EXPECT_EQ(r.status, 504) << r.body.dump();
    EXPECT_NE(r.body.value("error", "").find("timed out (serve.request_timeout_ms)"), std::string::npos)
        << r.body.dump();
  }
  auto res = s.client()->Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  res = s.client()->Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_NE(res->body.find("atspeed_serve_requests_total{code=\"503\"} 1"), std::string::npos) << res->body;
  EXPECT_NE(res->body.find("atspeed_serve_requests_total{code=\"504\"} 2"), std::string::npos) << res->body;
  const int status = s.stop(SIGTERM);
  ASSERT_TRUE(WIFEXITED(status)) << s.log();
  EXPECT_EQ(WEXITSTATUS(status), 0) << s.log();
}

// serve.default_mode=auto plans at startup (here on 4 validation users, K 1 and 5), answers requests
// without a mode with the plan's choice (an exact method: the target's own items), says what it
// chose in the answer and in /metrics, and reads the plan from the cache at the next start. A draft
// path swapped with the target's gets a warning.
TEST_F(ServeCli, AutoPlansAtStartupAndSaysWhatItChose) {
  const std::string auto_args = common_args() + " serve.default_mode=auto decode.auto.calib_users=4" +
                                " decode.auto.ks=[1,5] decode.auto.gammas=[1] decode.auto.draft_widths=[0,10]" +
                                " decode.auto.cache_dir=" + tmp->str("plans");
  for (int start = 0; start < 2; ++start) {
    ServerProcess s(auto_args, tmp->str("auto" + std::to_string(start) + ".log"));
    ASSERT_GT(s.port(), 0);
    EXPECT_NE(s.log().find(start == 0 ? "auto: planned 2 K" : "auto: plan from the cache"), std::string::npos) << s.log();
    for (int k : {1, 5, 3}) {  // 3 is not planned: the nearest planned K below decides
      const auto a = post(s, json{{"history", (*histories)[0]}, {"k", k}}.dump());
      const auto t = post(s, json{{"history", (*histories)[0]}, {"k", k}, {"mode", "target"}}.dump());
      ASSERT_EQ(a.status, 200) << a.body.dump();
      ASSERT_EQ(t.status, 200) << t.body.dump();
      EXPECT_EQ(a.body["stats"]["mode"], "auto");
      const std::string choice = a.body["stats"]["auto_choice"].get<std::string>();
      EXPECT_TRUE(choice == "target" || choice == "strict") << choice;
      ASSERT_EQ(a.body["items"].size(), t.body["items"].size());
      for (size_t i = 0; i < t.body["items"].size(); ++i) EXPECT_EQ(a.body["items"][i]["codes"], t.body["items"][i]["codes"]);
    }
    auto m = s.client()->Get("/metrics");
    ASSERT_TRUE(m);
    EXPECT_NE(m->body.find("mode=\"auto:"), std::string::npos) << m->body;
    EXPECT_EQ(s.stop(SIGTERM), 0);
  }
  ServerProcess swapped("serve.target=" + tmp->str("draft.h5") + " serve.draft=" + tmp->str("target.h5") +
                            " serve.port=0 data=synthetic data.source=files data.dir=" + tmp->str("syn") +
                            " decode.device=cpu run.threads=1 serve.default_mode=strict",
                        tmp->str("swapped.log"));
  ASSERT_GT(swapped.port(), 0);
  EXPECT_NE(swapped.log().find("more parameters"), std::string::npos) << swapped.log();
  EXPECT_EQ(swapped.stop(SIGTERM), 0);
}

TEST_F(ServeCli, StartupErrorsNameTheProblem) {
  // A checkpoint trained on another item index.
  model::LlamaModel other = test::random_model(1029, 3, 16);
  test::write_model_checkpoint(tmp->str("other.h5"), other, "fnv1a64:0000000000000000:items=1:levels=4:codebook=256");
  auto r = test::run_atspeed("serve " + common_args() + " serve.target=" + tmp->str("other.h5"));
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_NE(r.output.find("fingerprint"), std::string::npos) << r.output;
  r = test::run_atspeed("serve serve.port=0 data=synthetic data.source=files data.dir=" + tmp->str("syn"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("serve.target"), std::string::npos) << r.output;
  r = test::run_atspeed("serve " + common_args() + " serve.draft= serve.default_mode=strict");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("serve.draft"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace atspeed
