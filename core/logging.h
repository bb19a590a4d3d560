// Logging through spdlog. One process-wide logger; on multi-rank runs lines carry "[rank r/n]".
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace atspeed {

// Levels: trace, debug, info, warn, error, off. Throws Error(Config) on an unknown level name.
void set_log_level(const std::string& level);
// Prefixes every line with the rank when size > 1, and silences info/debug on ranks > 0 unless
// all_ranks is set (warnings and errors always print).
void set_log_rank(int rank, int size, bool all_ranks = false);

}  // namespace atspeed
