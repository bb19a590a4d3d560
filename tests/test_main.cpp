// gtest main for atspeed_tests: fixed thread count so results do not depend on the machine.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  at::set_num_threads(2);
  spdlog::set_level(spdlog::level::warn);
  return RUN_ALL_TESTS();
}
