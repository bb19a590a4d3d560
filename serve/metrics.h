// Prometheus metrics of the server (GET /metrics, text format 0.0.4). prometheus-cpp stays inside
// metrics.cpp; every method is thread-safe.
//   atspeed_serve_requests_total{code}          requests answered, by HTTP status (all endpoints)
//   atspeed_serve_request_latency_seconds       histogram of POST /v1/recommend latency (any status)
//   atspeed_serve_batch_size                    histogram of decode batch sizes
//   atspeed_serve_queue_depth                   gauge: requests waiting for the decode thread
//   atspeed_serve_accepted_levels               histogram of accepted levels per speculative round
//   atspeed_serve_decoded_requests_total{mode}  requests decoded, by mode
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace atspeed::serve {

class ServeMetrics {
 public:
  ServeMetrics();
  ~ServeMetrics();
  void count_request(int status);                 // every HTTP answer
  void observe_request_latency(double seconds);   // POST /v1/recommend only
  void observe_batch(int64_t size);
  void set_queue_depth(int64_t depth);
  void observe_round(int64_t accepted_levels);
  void count_decoded(const std::string& mode);  // target, strict, relaxed, or auto:<its choice>
  std::string render() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace atspeed::serve
