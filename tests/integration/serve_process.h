// A real `atspeed serve` process for the serve integration tests (test_serve_cli.cpp,
// test_serve_tp_cli.cpp): started through /bin/sh with its output in a log file, its port parsed
// from the `serving on http://127.0.0.1:PORT` line (serve.port=0), killed (SIGKILL) if the test did
// not stop it; and the synthetic data and random checkpoints both suites serve. Needs ATSPEED_BIN.
#pragma once

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
#include <string>
#include <thread>
#include <vector>

#include "data/dataset.h"
#include "data/samples.h"
#include "tests/test_models.h"
#include "tests/test_util.h"

namespace atspeed::test {

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class ServerProcess {
 public:
  // `launcher atspeed serve args` (launcher: "" or an `env ... mpirun -np N ` prefix; the process is
  // then mpirun). Waits up to startup_s for the serving line; clients time out after read_timeout_s.
  ServerProcess(const std::string& launcher, const std::string& args, const std::string& log, int startup_s,
                int read_timeout_s)
      : log_(log), read_timeout_s_(read_timeout_s) {
    const std::string cmd = launcher.empty() ? std::string("exec ") + ATSPEED_BIN + " serve " + args + " >" + log + " 2>&1"
                                             : "exec env " + launcher + ATSPEED_BIN + " serve " + args + " >" + log + " 2>&1";
    const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
    EXPECT_EQ(posix_spawn(&pid_, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ), 0);
    const std::regex line(R"(serving on http://127\.0\.0\.1:(\d+))");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(startup_s);
    while (std::chrono::steady_clock::now() < deadline) {
      std::smatch m;
      const std::string text = read_file(log_);
      if (std::regex_search(text, m, line)) {
        port_ = std::stoi(m[1]);
        return;
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        ADD_FAILURE() << "atspeed serve exited before serving:\n" << text;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "no 'serving on' line within " << startup_s << " s:\n" << read_file(log_);
  }
  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int port() const { return port_; }
  int launcher_pid() const { return pid_; }
  // Waits for the process to exit and returns its wait status.
  int wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }
  // Sends `sig`, then wait().
  int stop(int sig) {
    kill(pid_, sig);
    return wait();
  }
  std::string log() const { return read_file(log_); }
  std::unique_ptr<httplib::Client> client() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_read_timeout(read_timeout_s_, 0);
    return c;
  }

 private:
  std::string log_;
  int read_timeout_s_;
  pid_t pid_ = -1;
  int port_ = -1;
};

struct Reply {
  int status = -1;           // -1: no response
  nlohmann::json body;       // discarded (is_discarded()) when the body is not JSON
};

inline Reply post(const ServerProcess& s, const std::string& body) {
  auto res = s.client()->Post("/v1/recommend", body, "application/json");
  if (!res) return {};
  return Reply{res->status, nlohmann::json::parse(res->body, nullptr, false)};
}

// What both serve test suites serve: write_model_fixture (tests/test_models.h), and the API
// histories (1-based item ids) of its first `n` test users. Returns the histories (none after a
// failure); `num_items` gets the catalogue size.
inline std::vector<nlohmann::json> write_serve_fixture(const TempDir& dir, size_t n, int64_t* num_items = nullptr) {
  if (!write_model_fixture(dir)) return {};
  const Dataset ds = load_dataset(dir.str("syn"));
  if (num_items) *num_items = ds.num_items();
  std::vector<nlohmann::json> histories;
  for (const auto& s : make_test_samples(ds, 50)) {
    nlohmann::json h = nlohmann::json::array();
    for (int64_t item : s.history) h.push_back(item + 1);  // the API's ids are 1-based
    histories.push_back(h);
    if (histories.size() == n) break;
  }
  return histories;
}

}  // namespace atspeed::test
