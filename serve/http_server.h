// The HTTP/JSON front end (cpp-httplib, kept inside http_server.cpp):
//   POST /v1/recommend   request.h's JSON API, answered through the Engine
//   GET  /healthz        {"status":"ok"} (503 {"status":"draining"} once stop() began)
//   GET  /metrics        Prometheus text (metrics.h)
// Every error is a JSON body {"error": "..."} with a 4xx/5xx status; the server keeps serving.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "core/vocab/item_catalog.h"
#include "serve/engine.h"
#include "serve/metrics.h"
#include "serve/request.h"

namespace atspeed::serve {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int64_t port = 8080;  // 0 = any free port
  int64_t max_body_bytes = 65536;
  int64_t request_timeout_ms = 30000;
  int64_t threads = 32;
};

class HttpServer {
 public:
  HttpServer(Engine& engine, const ItemCatalog& catalog, RequestLimits limits, HttpOptions options, ServeMetrics& metrics);
  ~HttpServer();

  // Binds the listening socket; returns the port (the chosen one when options.port == 0).
  // Error(Config) naming serve.host/serve.port when it cannot.
  int bind();
  // Accepts and serves connections until stop(); returns once every in-flight request is answered.
  void serve();
  // Stops accepting (callable from any thread, e.g. the signal waiter). In-flight requests finish.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace atspeed::serve
