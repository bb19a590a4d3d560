#include "core/errors.h"

#include <cstring>

namespace atspeed {

int exit_code(ErrorKind kind) { return static_cast<int>(kind); }

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::Internal: return "internal error";
    case ErrorKind::Usage: return "usage error";
    case ErrorKind::Config: return "config error";
    case ErrorKind::Data: return "data error";
    case ErrorKind::Checkpoint: return "checkpoint error";
    case ErrorKind::Distributed: return "distributed error";
    case ErrorKind::Device: return "device error";
  }
  return "error";
}

namespace {
// Paths relative to the source tree read better than absolute build paths.
std::string short_path(const char* file) {
  for (const char* root : {"/core/", "/data/", "/train/", "/serve/", "/launch/", "/kernels/", "/tests/"}) {
    if (const char* p = std::strstr(file, root)) return p + 1;
  }
  return file;
}
}  // namespace

Error::Error(ErrorKind kind, std::string message, const char* file, int line)
    : std::runtime_error(message + " [" + short_path(file) + ":" + std::to_string(line) + "]"),
      kind_(kind),
      message_(std::move(message)),
      location_(short_path(file) + ":" + std::to_string(line)) {}

namespace detail {
void throw_error(ErrorKind kind, const char* file, int line, const std::string& message) {
  throw Error(kind, message, file, line);
}
}  // namespace detail

}  // namespace atspeed
