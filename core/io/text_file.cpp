#include "core/io/text_file.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include "core/errors.h"

namespace atspeed {

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ATSPEED_ENSURE(Data, in.good(), path, ": cannot open for reading");
  std::ostringstream buf;
  buf << in.rdbuf();
  ATSPEED_ENSURE(Data, !in.bad(), path, ": read error");
  return buf.str();
}

void write_text_file_atomic(const std::string& path, const std::string& text) {
  const std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  // A per-process temporary name: two writers of the same file never share one.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    ATSPEED_ENSURE(Data, out.good(), tmp, ": cannot open for writing");
    out << text;
    out.flush();
    ATSPEED_ENSURE(Data, out.good(), tmp, ": write error");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  ATSPEED_ENSURE(Data, !ec, "cannot rename ", tmp, " to ", path, ": ", ec.message());
}

}  // namespace atspeed
