// Tensor-parallel `atspeed serve` through the real binary: `mpirun -np 2 atspeed serve dist.tp=2`
// on tiny random checkpoints (4 heads, 2 KV heads: both split by 2) answers every mode as the
// tp=1 server does (items identical but for near-ties, scores within 1e-4, SPEC §9.2), each rank
// holds and reads 1/tp of each split weight (its startup log line; TpMpi checks the shard contents),
// SIGTERM to rank 0 (or to mpirun) answers in-flight requests and ends every rank with exit 0, and
// wrong rank/tp combinations are refused with a message.
#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <thread>

#include "tests/integration/serve_process.h"
#include "tests/test_util.h"

namespace atspeed {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// OpenMPI as root and with more ranks than cores, as tests/CMakeLists.txt runs the MPI tests.
const std::string kMpiEnv =
    "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 "
    "OMPI_MCA_btl_vader_single_copy_mechanism=none ";

std::string mpirun(int np) { return kMpiEnv + test::mpiexec(ATSPEED_MPIEXEC) + " -np " + std::to_string(np) + " "; }

using test::post;
using test::read_file;
using test::Reply;

// `atspeed serve` with this file's time limits: 90 s to start, 120 s per request.
class ServerProcess : public test::ServerProcess {
 public:
  ServerProcess(const std::string& launcher, const std::string& args, const std::string& log)
      : test::ServerProcess(launcher, args, log, 90, 120) {}
};

// One rank's startup line for one model (cmd_serve.cpp).
struct RankLoad {
  int64_t split = 0, replicated = 0, bytes_read = 0;
  int pid = 0;
};

// (rank, role) -> what the rank reported; `tp` must match the line's.
std::map<std::pair<int, std::string>, RankLoad> parse_loads(const std::string& log, int tp) {
  std::map<std::pair<int, std::string>, RankLoad> out;
  const std::regex line(
      R"(tp rank (\d+)/(\d+) pid (\d+): (target|draft) split_elements=(\d+) replicated_elements=(\d+) bytes_read=(\d+))");
  for (std::sregex_iterator it(log.begin(), log.end(), line), end; it != end; ++it) {
    const auto& m = *it;
    if (std::stoi(m[2]) != tp) continue;
    out[{std::stoi(m[1]), m[4]}] = RankLoad{std::stoll(m[5]), std::stoll(m[6]), std::stoll(m[7]), std::stoi(m[3])};
  }
  return out;
}

// SPEC §9.2: the same items in the same order, except that two items whose scores differ by less
// than 1e-4 may swap (also across the K-th place); every rank's score within 1e-4. Returns the
// number of near-tie flips.
int expect_same_but_near_ties(const json& a, const json& b, const std::string& what) {
  int flips = 0;
  const auto& ia = a["items"];
  const auto& ib = b["items"];
  EXPECT_EQ(ia.size(), ib.size()) << what;
  if (ia.size() != ib.size()) return 0;
  for (size_t i = 0; i < ia.size(); ++i) {
    const double sa = ia[i]["score"].get<double>();
    EXPECT_NEAR(sa, ib[i]["score"].get<double>(), 1e-4) << what << " rank " << i + 1;
    if (ia[i]["codes"] == ib[i]["codes"]) {
      EXPECT_EQ(ia[i]["item_ids"], ib[i]["item_ids"]) << what;
      continue;
    }
    ++flips;
    // The swapped item is in the other list with a score within 1e-4, or (swapped across the
    // K-th place) the other list's last score is within 1e-4 of it.
    double other = ib[ib.size() - 1]["score"].get<double>();
    for (const auto& it : ib) {
      if (it["codes"] == ia[i]["codes"]) other = it["score"].get<double>();
    }
    EXPECT_LT(std::abs(sa - other), 1e-4) << what << " rank " << i + 1 << ": a flip that is not a near-tie\n"
                                          << a.dump() << "\n" << b.dump();
  }
  return flips;
}

class ServeTpCli : public ::testing::Test {
 public:  // drain_with_sigterm() builds requests too
  static void SetUpTestSuite() {
    tmp = new test::TempDir();
    histories = new std::vector<json>(test::write_serve_fixture(*tmp, 6));
  }
  static void TearDownTestSuite() {
    delete histories;
    delete tmp;
  }
  static std::string common_args() {
    return "serve.target=" + tmp->str("target.h5") + " serve.draft=" + tmp->str("draft.h5") +
           " serve.port=0 data=synthetic data.source=files data.dir=" + tmp->str("syn") +
           " decode.device=cpu run.threads=1 serve.default_mode=strict";
  }
  static json request(size_t user, const std::string& mode, int k = 5) {
    json r{{"history", (*histories)[user]}, {"mode", mode}, {"k", k}};
    if (mode == "relaxed") r["seed"] = 1000 + static_cast<int>(user);
    return r;
  }

  static test::TempDir* tmp;
  static std::vector<json>* histories;
};
test::TempDir* ServeTpCli::tmp = nullptr;
std::vector<json>* ServeTpCli::histories = nullptr;

TEST_F(ServeTpCli, Tp2AnswersAsTp1AndEachRankHoldsHalfOfEverySplitWeight) {
  ServerProcess tp1("", common_args() + " serve.max_wait_ms=1", tmp->str("tp1.log"));
  ServerProcess tp2(mpirun(2), common_args() + " dist.tp=2 serve.max_wait_ms=1", tmp->str("tp2.log"));
  ASSERT_GT(tp1.port(), 0);
  ASSERT_GT(tp2.port(), 0);
  int flips = 0;
  for (size_t u = 0; u < histories->size(); ++u) {
    for (const std::string mode : {"target", "strict", "relaxed"}) {
      const std::string what = mode + ", user " + std::to_string(u);
      const Reply a = post(tp1, request(u, mode).dump());
      const Reply b = post(tp2, request(u, mode).dump());
      ASSERT_EQ(a.status, 200) << what << " " << a.body.dump() << "\n" << tp1.log();
      ASSERT_EQ(b.status, 200) << what << " " << b.body.dump() << "\n" << tp2.log();
      ASSERT_EQ(a.body["items"].size(), 5u) << what;
      flips += expect_same_but_near_ties(a.body, b.body, what);
      if (mode != "target") EXPECT_EQ(a.body["stats"]["rounds"], b.body["stats"]["rounds"]) << what;
    }
  }
  EXPECT_LE(flips, 2) << "near-tie flips should be rare on random models";
  // A batch of several requests goes through the broadcast as one.
  std::vector<Reply> batched(4);
  std::vector<std::thread> threads;
  for (size_t u = 0; u < batched.size(); ++u) {
    threads.emplace_back([&, u] { batched[u] = post(tp2, request(u, "strict").dump()); });
  }
  for (auto& t : threads) t.join();
  for (size_t u = 0; u < batched.size(); ++u) {
    ASSERT_EQ(batched[u].status, 200) << tp2.log();
    const Reply single = post(tp1, request(u, "strict").dump());
    expect_same_but_near_ties(single.body, batched[u].body, "batched strict, user " + std::to_string(u));
  }

  const auto full = parse_loads(tp1.log(), 1);
  const auto shards = parse_loads(tp2.log(), 2);
  for (const std::string role : {"target", "draft"}) {
    ASSERT_TRUE(full.count({0, role})) << role << "\n" << tp1.log();
    const RankLoad& f = full.at({0, role});
    EXPECT_GT(f.split, 0);
    for (int rank = 0; rank < 2; ++rank) {
      ASSERT_TRUE(shards.count({rank, role})) << role << " rank " << rank << "\n" << tp2.log();
      const RankLoad& s = shards.at({rank, role});
      EXPECT_EQ(s.split * 2, f.split) << role << " rank " << rank;
      EXPECT_EQ(s.replicated, f.replicated) << role << " rank " << rank;
      // Only the shard left the file (every parameter is float32 here).
      EXPECT_EQ(s.bytes_read, 4 * (s.split + s.replicated)) << role << " rank " << rank;
      EXPECT_LT(s.bytes_read, f.bytes_read) << role << " rank " << rank;
    }
  }
  EXPECT_NE(shards.at({0, "target"}).pid, shards.at({1, "target"}).pid);
}

// Starts a tp=2 server, queues 3 requests (a long batching wait keeps them in flight), sends
// SIGTERM to rank 0 alone or to mpirun (which forwards it to every rank), and checks that every
// request is answered and both ranks stop. Returns mpirun's wait status.
int drain_with_sigterm(ServerProcess& s, bool to_mpirun) {
  EXPECT_GT(s.port(), 0);
  std::vector<Reply> replies(3);
  std::vector<std::thread> threads;
  for (size_t u = 0; u < replies.size(); ++u) {
    threads.emplace_back([&, u] { replies[u] = post(s, ServeTpCli::request(u, u == 0 ? "relaxed" : "strict").dump()); });
  }
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  bool queued = false;
  while (!queued && std::chrono::steady_clock::now() < deadline) {
    auto m = s.client()->Get("/metrics");
    queued = m && m->body.find("atspeed_serve_queue_depth 3") != std::string::npos;
    if (!queued) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(queued) << s.log();
  const auto loads = parse_loads(s.log(), 2);
  EXPECT_TRUE(loads.count({0, "target"})) << s.log();
  kill(to_mpirun || !loads.count({0, "target"}) ? s.launcher_pid() : loads.at({0, "target"}).pid, SIGTERM);
  const int status = s.wait();
  for (auto& t : threads) t.join();
  const std::string log = s.log();
  EXPECT_NE(log.find("tp rank 1/2: stopped after"), std::string::npos) << log;
  EXPECT_EQ(log.find("non-zero status"), std::string::npos) << log;  // mpirun's report of a failed rank
  for (const auto& r : replies) {
    EXPECT_EQ(r.status, 200) << r.body.dump() << "\n" << log;
    EXPECT_EQ(r.body["items"].size(), 5u);
  }
  return status;
}

TEST_F(ServeTpCli, SigtermToRankZeroAnswersInFlightRequestsAndEndsEveryRankWithZero) {
  const std::string args = common_args() + " dist.tp=2 serve.max_batch=64 serve.max_wait_ms=5000";
  ServerProcess s(mpirun(2), args, tmp->str("drain.log"));
  const int status = drain_with_sigterm(s, false);
  ASSERT_TRUE(WIFEXITED(status)) << s.log();
  EXPECT_EQ(WEXITSTATUS(status), 0) << s.log();  // mpirun: 0 only when every rank exited 0
  // Through mpirun every rank gets the signal; the workers ignore it and wait for rank 0's stop.
  // mpirun itself then exits 1 (a signalled job counts as aborted), though no rank failed.
  ServerProcess forwarded(mpirun(2), args, tmp->str("drain_forwarded.log"));
  drain_with_sigterm(forwarded, true);
}

TEST_F(ServeTpCli, RankAndTpMismatchesAreRefused) {
  // Every rank would bind the port.
  auto r = test::run_command(mpirun(2) + ATSPEED_BIN + " serve " + common_args() + " 2>&1");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("every rank would serve the same port"), std::string::npos) << r.output;
  // tp without the ranks.
  r = test::run_atspeed("serve " + common_args() + " dist.tp=2");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("dist.tp = 2 but 1 ranks"), std::string::npos) << r.output;
  // Rank 0 fails after the worker is waiting for batches (192.0.2.1, TEST-NET-1, is no local
  // address): both ranks exit, no hang.
  r = test::run_command("timeout 60 env " + mpirun(2) + ATSPEED_BIN + " serve " + common_args() +
                        " dist.tp=2 serve.host=192.0.2.1 2>&1");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.exit_code, 124) << "hung:\n" << r.output;
  EXPECT_NE(r.output.find("cannot listen on 192.0.2.1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tp rank 1/2: stopped after 0 batches"), std::string::npos) << r.output;
  // 3 does not divide the target's 4 heads.
  r = test::run_command(mpirun(3) + ATSPEED_BIN + " serve " + common_args() + " dist.tp=3 2>&1");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("does not divide the target's model.num_attention_heads (4)"), std::string::npos) << r.output;
}

// A converted LC-Rec target (tests/data/lcrec/target: text prompts, its tokenizer inside) served with
// dist.tp=2 gives the answers of a cache-free trie beam search over transformers' fp32 logits
// (tests/data/lcrec/expected_search.json), as the tp=1 server does (LcrecEndToEndTest).
TEST(ServeTpLcrecCli, Tp2AnswersEqualTransformersTrieSearch) {
  const std::string fixture = std::string(ATSPEED_SOURCE_DIR) + "/tests/data/lcrec";
  test::TempDir dir;
  const auto c = test::run_atspeed("convert --from " + fixture + "/target --out " + dir.str("target.h5"));
  ASSERT_EQ(c.exit_code, 0) << c.output;
  ServerProcess tp2(mpirun(2),
                    "serve.target=" + dir.str("target.h5") + " serve.port=0 data.dir=" + fixture +
                        "/data decode.device=cpu run.threads=1 serve.default_mode=target dist.tp=2 serve.max_wait_ms=1",
                    dir.str("tp2.log"));
  ASSERT_GT(tp2.port(), 0) << read_file(dir.str("tp2.log"));
  const json expected = json::parse(read_file(fixture + "/expected_search.json"));
  int checked = 0, flips = 0;
  for (const json& e : expected["searches"]) {
    if (e["user"].get<int>() >= 12) continue;  // 12 users x K 1, 5, 20 keep the run short
    json history = json::array();
    for (const auto& item : e["history"]) history.push_back(item.get<int64_t>() + 1);
    const Reply r = post(tp2, json{{"history", history}, {"k", e["k"]}}.dump());
    ASSERT_EQ(r.status, 200) << r.body.dump();
    json want = json::object({{"items", json::array()}});
    for (const auto& b : e["beams"]) {
      json ids = json::array();
      for (const auto& id : b["items"]) ids.push_back(id.get<int64_t>() + 1);  // the API's ids are 1-based
      want["items"].push_back({{"codes", b["codes"]}, {"score", b["score"]}, {"item_ids", ids}});
    }
    flips += expect_same_but_near_ties(r.body, want, "user " + e["user"].dump() + " K " + e["k"].dump());
    ++checked;
  }
  EXPECT_GE(checked, 30);
  EXPECT_EQ(flips, 0);  // the fixture's smallest gap is 5.9e-4
}

}  // namespace
}  // namespace atspeed
