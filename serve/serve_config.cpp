#include "serve/serve_config.h"

#include "core/decode/decode_config.h"  // read_mode

namespace atspeed {

void ServeConfig::read(ConfigSection& s) {
  s.get("target", target)
      .get("draft", draft)
      .get("host", host)
      .get("port", port)
      .get("max_batch", max_batch)
      .get("max_wait_ms", max_wait_ms)
      .get("max_queue", max_queue)
      .get("max_history", max_history)
      .get("max_k", max_k)
      .get("max_draft_width", max_draft_width)
      .get("default_k", default_k)
      .get("max_body_bytes", max_body_bytes)
      .get("request_timeout_ms", request_timeout_ms)
      .get("http_threads", http_threads);
  default_mode = read_mode(s, "default_mode", default_mode);
}

void ServeConfig::validate() const {
  config_ensure(!target.empty(), "serve.target", "needs the target checkpoint (serve.target=PATH)");
  config_ensure(!host.empty(), "serve.host", "must not be empty");
  config_ensure(port >= 0 && port <= 65535, "serve.port", "must be in [0, 65535] (0 = any free port)");
  config_ensure(max_batch >= 1 && max_batch <= 1024, "serve.max_batch", "must be in [1, 1024]");
  config_ensure(max_wait_ms >= 0 && max_wait_ms <= 60000, "serve.max_wait_ms", "must be in [0, 60000]");
  config_ensure(max_queue >= 1, "serve.max_queue", "must be >= 1");
  config_ensure(max_history >= 1, "serve.max_history", "must be >= 1");
  config_ensure(max_k >= 1, "serve.max_k", "must be >= 1");
  config_ensure(max_draft_width >= 1, "serve.max_draft_width", "must be >= 1");
  config_ensure(default_k >= 1 && default_k <= max_k, "serve.default_k", "must be in [1, serve.max_k]");
  config_ensure(!default_mode.is_speculative() || !draft.empty(), "serve.default_mode",
                std::string("'") + default_mode.name() + "' needs a draft checkpoint (serve.draft=PATH), or "
                "serve.default_mode=auto or target");
  config_ensure(max_body_bytes >= 256, "serve.max_body_bytes", "must be >= 256");
  config_ensure(request_timeout_ms >= 1, "serve.request_timeout_ms", "must be >= 1");
  config_ensure(http_threads >= 1 && http_threads <= 4096, "serve.http_threads", "must be in [1, 4096]");
}

}  // namespace atspeed
