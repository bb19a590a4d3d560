// Whole-file text I/O shared by every layer (JSON outputs, split files, plans).
#pragma once

#include <string>

namespace atspeed {

// Reads a whole file into a string; Error(Data) when it cannot be opened.
std::string read_text_file(const std::string& path);
// Writes `path` via a temporary file and a rename (creating its directory), so readers never see
// half a file; Error(Data) naming the path on failure.
void write_text_file_atomic(const std::string& path, const std::string& text);

}  // namespace atspeed
