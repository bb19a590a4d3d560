#include "serve/http_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <random>
#include <thread>

#include "core/errors.h"

namespace atspeed::serve {

struct HttpServer::Impl {
  Engine& engine;
  const ItemCatalog& catalog;
  RequestLimits limits;
  HttpOptions options;
  ServeMetrics& metrics;
  httplib::Server server;
  std::atomic<bool> draining{false};
  std::atomic<bool> finished{false};  // serve() returned
  std::atomic<uint64_t> seed_counter{std::random_device{}()};  // seeds of relaxed requests that give none
  int port = -1;

  Impl(Engine& e, const ItemCatalog& c, RequestLimits l, HttpOptions o, ServeMetrics& m)
      : engine(e), catalog(c), limits(l), options(std::move(o)), metrics(m) {}

  static void json_reply(httplib::Response& res, int status, const std::string& body) {
    res.status = status;
    res.set_content(body, "application/json");
  }

  void recommend(const httplib::Request& req, httplib::Response& res) {
    const auto t0 = Engine::Clock::now();
    auto finish = [&](int status, const std::string& body) {
      json_reply(res, status, body);
      metrics.observe_request_latency(std::chrono::duration<double>(Engine::Clock::now() - t0).count());
    };
    if (draining) return finish(503, error_body("the server is shutting down"));
    // httplib enforces the limit on Content-Length; this also covers chunked bodies.
    if (static_cast<int64_t>(req.body.size()) > options.max_body_bytes) {
      return finish(413, error_body("request body larger than serve.max_body_bytes = " + std::to_string(options.max_body_bytes)));
    }
    ParseResult parsed = parse_recommend_request(req.body, catalog, limits, seed_counter.fetch_add(1));
    if (!parsed.job) return finish(parsed.status, error_body(parsed.error));
    const DecodeJob& job = *parsed.job;  // kept for rendering; the engine gets its own copy
    const auto deadline = t0 + std::chrono::milliseconds(options.request_timeout_ms);
    Outcome o = engine.submit(job, deadline);
    if (o.status != 200) return finish(o.status, error_body(o.error));
    const double latency_ms = std::chrono::duration<double, std::milli>(Engine::Clock::now() - t0).count();
    finish(200, render_recommend_response(job, o.result, catalog, latency_ms, o.queue_ms, o.batch_size));
  }

  void setup() {
    server.new_task_queue = [n = static_cast<size_t>(options.threads)] { return new httplib::ThreadPool(n); };
    server.set_payload_max_length(static_cast<size_t>(options.max_body_bytes));
    server.set_tcp_nodelay(true);
    // httplib closes a keep-alive connection after 5 requests by default; every reconnect goes
    // through its listen backlog of 5, which a loaded machine can overflow (the load test saw rare
    // connection resets at concurrency 16). Clients that keep a connection should keep it longer.
    server.set_keep_alive_max_count(100);
    server.Post("/v1/recommend", [this](const httplib::Request& req, httplib::Response& res) { recommend(req, res); });
    server.Get("/v1/recommend", [](const httplib::Request&, httplib::Response& res) {
      res.set_header("Allow", "POST");
      json_reply(res, 405, error_body("use POST /v1/recommend with a JSON body"));
    });
    server.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
      if (draining) return json_reply(res, 503, R"({"status":"draining"})");
      json_reply(res, 200, R"({"status":"ok"})");
    });
    server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.status = 200;
      res.set_content(metrics.render(), "text/plain; version=0.0.4");
    });
    // Statuses httplib sets itself (404 no route, 413 body too large, 400 unparsable HTTP) get a
    // JSON body too; handlers' own error bodies are left alone.
    server.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      std::string msg;
      switch (res.status) {
        case 404: msg = "no such endpoint: " + req.method + " " + req.path + " (POST /v1/recommend, GET /healthz, GET /metrics)"; break;
        case 413: msg = "request body larger than serve.max_body_bytes = " + std::to_string(options.max_body_bytes); break;
        default: msg = "HTTP " + std::to_string(res.status) + " for " + req.method + " " + req.path;
      }
      res.set_content(error_body(msg), "application/json");
      return httplib::Server::HandlerResponse::Handled;
    }));
    // A handler exception is a bug, not the client's fault; httplib already contains it to this
    // request, and this names it in the answer and the log.
    server.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown exception";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      spdlog::error("{} {}: {}", req.method, req.path, what);
      json_reply(res, 500, error_body("internal error: " + what));
    });
    server.set_logger([this](const httplib::Request&, const httplib::Response& res) { metrics.count_request(res.status); });
  }
};

HttpServer::HttpServer(Engine& engine, const ItemCatalog& catalog, RequestLimits limits, HttpOptions options,
                       ServeMetrics& metrics)
    : impl_(std::make_unique<Impl>(engine, catalog, limits, std::move(options), metrics)) {
  impl_->setup();
}

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
  auto& o = impl_->options;
  if (o.port == 0) {
    impl_->port = impl_->server.bind_to_any_port(o.host);
  } else {
    impl_->port = impl_->server.bind_to_port(o.host, static_cast<int>(o.port)) ? static_cast<int>(o.port) : -1;
  }
  ATSPEED_ENSURE(Config, impl_->port > 0, "serve.host/serve.port: cannot listen on ", o.host, ":", o.port,
                 " (address in use, or not a local address?)");
  return impl_->port;
}

void HttpServer::serve() {
  ATSPEED_CHECK(impl_->port > 0, "serve() before bind()");
  if (!impl_->draining) impl_->server.listen_after_bind();
  impl_->finished = true;
}

void HttpServer::stop() {
  impl_->draining = true;
  // httplib's stop() is a no-op until its accept loop runs, so a stop that races serve()'s start
  // waits for that loop (or for serve() to return) instead of being lost.
  while (!impl_->finished && !impl_->server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  impl_->server.stop();
}

}  // namespace atspeed::serve
