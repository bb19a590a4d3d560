#include "tests/test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <random>

namespace atspeed::test {

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() /
          ("atspeed-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" + std::to_string(rd() % 100000));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

CommandResult run_command(const std::string& command_line) {
  CommandResult result;
  FILE* pipe = ::popen((command_line + " 2>&1").c_str(), "r");
  if (!pipe) return result;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) result.output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

CommandResult run_atspeed(const std::string& args) { return run_command(std::string(ATSPEED_BIN) + " " + args); }

std::string mpiexec(const std::string& built_with) {
  const char* env = std::getenv("ATSPEED_MPIEXEC");
  return env != nullptr && *env != '\0' ? env : built_with;
}

std::string shared_data_dir() {
  const char* env = std::getenv("ATSPEED_SHARED_DATA_DIR");  // the GPU kit's carried copy
  const std::filesystem::path dir(env != nullptr ? env : ATSPEED_SHARED_DATA_DIR);
  return std::filesystem::exists(dir / "beauty") ? dir.string() : "";
}

}  // namespace atspeed::test
