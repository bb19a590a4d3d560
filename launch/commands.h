// Subcommand registry of the `atspeed` binary. Each cmd_*.cpp defines a static
// RegisterCommand that adds its CLI11 subcommand; main.cpp owns the app and the error handling.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "core/config.h"

namespace atspeed::launch {

// Options every subcommand shares (set on the top-level app).
struct GlobalOptions {
  std::string config_dir;          // --config-dir (default: see find_config_dir)
  std::string config_name = "config";
  std::string log_level;           // --log-level overrides log.level
  bool print_config = false;       // --cfg: print the resolved config and exit
};
GlobalOptions& global_options();

// Composes the config from the global options and these overrides, applies log level and threads.
// With --cfg it prints the resolved config and throws ConfigPrinted (main exits 0).
Config load_config(const std::vector<std::string>& overrides);
struct ConfigPrinted {};
// Thrown by a subcommand that ends early on purpose with a non-zero exit code (e.g. training stopped
// by SIGTERM after writing its checkpoint: 128 + signal); main returns `code` without an error line.
struct ExitRequest {
  int code = 0;
};

struct RegisterCommand {
  // `setup` adds a subcommand to `app` and sets its callback.
  RegisterCommand(std::function<void(CLI::App& app)> setup);
};
std::vector<std::function<void(CLI::App&)>>& command_setups();

// A subcommand group shared by several cmd_*.cpp files (e.g. `bench`, `data`): the existing one or
// a new one with this description.
CLI::App* find_or_add_subcommand(CLI::App& app, const std::string& name, const std::string& description);

}  // namespace atspeed::launch
