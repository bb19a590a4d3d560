// atspeed: one binary, one subcommand per pipeline stage. Thin: parse, then hand over.
#include <torch/version.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include <malloc.h>

#include "core/config_types.h"
#include "core/errors.h"
#include "core/logging.h"
#include "data/dataset.h"
#include "launch/commands.h"

namespace atspeed::launch {

GlobalOptions& global_options() {
  static GlobalOptions options;
  return options;
}

std::vector<std::function<void(CLI::App&)>>& command_setups() {
  static std::vector<std::function<void(CLI::App&)>> setups;
  return setups;
}

CLI::App* find_or_add_subcommand(CLI::App& app, const std::string& name, const std::string& description) {
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
    if (sub->get_name() == name) return sub;
  return app.add_subcommand(name, description);
}

RegisterCommand::RegisterCommand(std::function<void(CLI::App&)> setup) { command_setups().push_back(std::move(setup)); }

Config load_config(const std::vector<std::string>& overrides) {
  const auto& g = global_options();
  const std::string config_dir = find_config_dir(g.config_dir);
  Config config = Config::compose(config_dir, g.config_name, overrides);
  // The real data sits beside the repository; where it is absent (a user's fresh machine) the
  // synthetic generator stands in, unless the user picked a dataset.
  // Any data setting on the command line (data=games, data.dir=...) counts as a choice.
  const bool data_chosen = std::any_of(overrides.begin(), overrides.end(), [](const std::string& o) {
    return o.rfind("data=", 0) == 0 || o.rfind("data.", 0) == 0 || o.rfind("+data.", 0) == 0;
  });
  const auto choice = config.choices().find("data");
  if (!data_chosen && choice != config.choices().end() && choice->second == "beauty" &&
      default_data_option() == "synthetic") {
    spdlog::info("../shared/data/amazon/beauty not found: using data=synthetic");
    std::vector<std::string> effective{"data=synthetic"};
    effective.insert(effective.end(), overrides.begin(), overrides.end());
    config = Config::compose(config_dir, g.config_name, effective);
  }
  if (g.print_config) {
    std::cout << config.to_yaml();
    throw ConfigPrinted{};
  }
  auto log = read_section<LogConfig>(config, "log");
  set_log_level(g.log_level.empty() ? log.level : g.log_level);
  apply_threads(read_section<RunConfig>(config, "run").threads);
  return config;
}

// glibc returns freed memory above 128 KB to the kernel (mmap'd chunks, heap trimming), so every
// decode forward that allocates logits of [B, n, V] floats page-faults them in again. Chunks up to
// 64 MB come from the heap and up to 256 MB of free heap is kept: strict decoding at batch 8 ran
// 1.1-1.25x faster on the 2-core machine, the rest within noise (README "Decode hot path",
// tools/decode_ab.py). A user's own GLIBC_TUNABLES or MALLOC_* settings win.
void keep_freed_memory() {
  if (std::getenv("GLIBC_TUNABLES") != nullptr || std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr ||
      std::getenv("MALLOC_TRIM_THRESHOLD_") != nullptr) {
    return;
  }
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

}  // namespace atspeed::launch

int main(int argc, char** argv) {
  using namespace atspeed;
  using namespace atspeed::launch;
  keep_freed_memory();
  set_log_rank(0, 1);
  CLI::App app{"atspeed: speculative beam search for LLM-based generative recommendation"};
  app.require_subcommand(0, 1);
  auto& g = global_options();
  app.set_version_flag("--version", std::string("atspeed ") + ATSPEED_VERSION + " (libtorch " + TORCH_VERSION + ")");
  app.add_option("--config-dir", g.config_dir, "directory holding config.yaml and its groups");
  app.add_option("--config-name", g.config_name, "primary config file name without .yaml")->capture_default_str();
  app.add_option("--log-level", g.log_level, "trace, debug, info, warn, error or off (overrides log.level)");
  app.add_flag("--cfg", g.print_config, "print the resolved config (with any overrides) and exit");
  std::vector<std::string> overrides;
  app.add_option("overrides", overrides, "config overrides: group=option, a.b=value, +a.b=value");
  app.footer("Exit codes: 0 ok, 1 internal error, 2 usage, 3 config, 4 data, 5 checkpoint, 6 distributed, 7 device; "
             "130/143: training stopped by SIGINT/SIGTERM after writing its checkpoint (resume with train.resume=true).");
  for (auto& setup : command_setups()) setup(app);
  app.callback([&]() {
    if (g.print_config && app.get_subcommands().empty()) {
      load_config(overrides);
    } else if (app.get_subcommands().empty()) {
      if (!overrides.empty()) throw CLI::ValidationError("overrides need a subcommand or --cfg");
      std::cout << app.help();
    }
  });
  try {
    app.parse(argc, argv);
    return 0;
  } catch (const ConfigPrinted&) {
    return 0;
  } catch (const ExitRequest& e) {
    return e.code;
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : exit_code(ErrorKind::Usage);
  } catch (const Error& e) {
    spdlog::error("{}: {}", to_string(e.kind()), e.message());
    spdlog::debug("raised at {}", e.location());
    return exit_code(e.kind());
  } catch (const std::exception& e) {
    spdlog::error("internal error: {}", e.what());
    return exit_code(ErrorKind::Internal);
  }
}
