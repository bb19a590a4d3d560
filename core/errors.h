// Errors: every failure is an atspeed::Error carrying a kind (which maps to a documented process exit
// code, see README "Exit codes") and the file:line that raised it. Only launch/ catches them.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace atspeed {

enum class ErrorKind {
  Internal = 1,     // a broken invariant: a bug in atspeed
  Usage = 2,        // bad command line
  Config = 3,       // bad configuration (unknown key, wrong type, invalid value, missing file)
  Data = 4,         // bad input data (dataset files, requests)
  Checkpoint = 5,   // missing, corrupt, truncated, wrong-version or wrong-kind checkpoint
  Distributed = 6,  // MPI or NCCL failure, inconsistent world
  Device = 7,       // CUDA failure
};

// Process exit code for an error kind (the enum values are the codes).
int exit_code(ErrorKind kind);
const char* to_string(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string message, const char* file, int line);
  ErrorKind kind() const { return kind_; }
  // The message without the source location, for users (the full what() has both).
  const std::string& message() const { return message_; }
  const std::string& location() const { return location_; }

 private:
  ErrorKind kind_;
  std::string message_;
  std::string location_;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
[[noreturn]] void throw_error(ErrorKind kind, const char* file, int line, const std::string& message);
}  // namespace detail

}  // namespace atspeed

// ATSPEED_CHECK(cond, "message parts", value, ...): throws Error(Internal) naming file:line.
#define ATSPEED_CHECK(cond, ...)                                                                \
  do {                                                                                          \
    if (!(cond))                                                                                \
      ::atspeed::detail::throw_error(::atspeed::ErrorKind::Internal, __FILE__, __LINE__,       \
                                     ::atspeed::detail::concat("check failed: " #cond ": ",    \
                                                               ##__VA_ARGS__));                 \
  } while (0)

// ATSPEED_ENSURE(Kind, cond, "message parts", ...): a user-facing check of the given ErrorKind.
#define ATSPEED_ENSURE(kind, cond, ...)                                                         \
  do {                                                                                          \
    if (!(cond))                                                                                \
      ::atspeed::detail::throw_error(::atspeed::ErrorKind::kind, __FILE__, __LINE__,           \
                                     ::atspeed::detail::concat(__VA_ARGS__));                   \
  } while (0)

// ATSPEED_THROW(Kind, "message parts", ...)
#define ATSPEED_THROW(kind, ...)                                                                \
  ::atspeed::detail::throw_error(::atspeed::ErrorKind::kind, __FILE__, __LINE__,               \
                                 ::atspeed::detail::concat(__VA_ARGS__))
