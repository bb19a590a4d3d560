#include "core/logging.h"

#include "core/errors.h"

namespace atspeed {

void set_log_level(const std::string& level) {
  auto parsed = spdlog::level::from_str(level);
  // from_str maps unknown names to "off"; only accept "off" when asked for literally.
  ATSPEED_ENSURE(Config, parsed != spdlog::level::off || level == "off",
                 "log.level: unknown level '", level, "' (expected trace, debug, info, warn, error or off)");
  spdlog::set_level(parsed);
}

void set_log_rank(int rank, int size, bool all_ranks) {
  if (size > 1) {
    spdlog::set_pattern("[%H:%M:%S.%e] [%^%l%$] [rank " + std::to_string(rank) + "/" +
                        std::to_string(size) + "] %v");
    if (rank != 0 && !all_ranks && spdlog::get_level() < spdlog::level::warn)
      spdlog::set_level(spdlog::level::warn);
  } else {
    spdlog::set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
  }
}

}  // namespace atspeed
