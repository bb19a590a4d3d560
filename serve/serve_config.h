// The `serve:` section of configs/config.yaml (atspeed serve). Decoding settings that are not per
// request (gamma, relaxed temperature/top_k, device) come from `decode:`; the dataset (whose item
// catalogue maps the API's item ids and must match the checkpoints' fingerprint) from `data:`.
#pragma once

#include <cstdint>
#include <string>

#include "core/config.h"
#include "core/decode/decode_mode.h"

namespace atspeed {

struct ServeConfig {
  std::string target;                  // target checkpoint (required)
  std::string draft;                   // draft checkpoint; "" = only mode "target" is served
  std::string host = "127.0.0.1";      // listen address (loopback by default: no auth, no TLS)
  int64_t port = 8080;                 // 0 = pick a free port (printed in the "serving on" line)
  int64_t max_batch = 8;               // requests decoded together in one batch
  int64_t max_wait_ms = 5;             // how long the first request of a batch waits for company
  int64_t max_queue = 256;             // queued requests beyond this get 503
  int64_t max_history = 200;           // longer histories are rejected (400); accepted ones are cut to data.history_len
  int64_t max_k = 100;                 // largest k a request may ask for
  int64_t max_draft_width = 256;       // largest draft_width a request may ask for
  int64_t default_k = 10;              // k when a request gives none
  // Requests without "mode": auto (the planner's faster exact method per k, planned at startup;
  // target beam search without a draft), target, strict or relaxed (these two need serve.draft).
  decode::DecodeMode default_mode = decode::DecodeMode::Auto;
  int64_t max_body_bytes = 65536;      // larger bodies get 413
  int64_t request_timeout_ms = 30000;  // a request not answered in time gets 504
  int64_t http_threads = 32;           // connection handler threads (>= max_batch, or batches cannot fill)

  void read(ConfigSection& s);
  void validate() const;
};

}  // namespace atspeed
