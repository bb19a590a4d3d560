// Helpers shared by the tests: temporary directories and running the real atspeed binary.
#pragma once

#include <filesystem>
#include <string>

namespace atspeed::test {

// A fresh directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::string str(const std::string& name = "") const { return name.empty() ? path_.string() : (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};
// Runs `ATSPEED_BIN args` through the shell; args are passed as written (quote them yourself).
CommandResult run_atspeed(const std::string& args);
// Runs any shell command line.
CommandResult run_command(const std::string& command_line);

// The MPI launcher: $ATSPEED_MPIEXEC when set (the GPU kit's unpacked OpenMPI), else the one the
// tests were built with.
std::string mpiexec(const std::string& built_with);

// $ATSPEED_SHARED_DATA_DIR, else ../shared/data/amazon beside the source tree; "" when it lacks beauty/.
std::string shared_data_dir();

}  // namespace atspeed::test
