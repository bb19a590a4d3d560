#include "serve/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

namespace atspeed::serve {

struct ServeMetrics::Impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  prometheus::Family<prometheus::Counter>& requests =
      prometheus::BuildCounter().Name("atspeed_serve_requests_total").Help("HTTP requests answered, by status code").Register(*registry);
  prometheus::Histogram& latency =
      prometheus::BuildHistogram()
          .Name("atspeed_serve_request_latency_seconds")
          .Help("POST /v1/recommend latency, receipt to answer")
          .Register(*registry)
          .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
  prometheus::Histogram& batch =
      prometheus::BuildHistogram()
          .Name("atspeed_serve_batch_size")
          .Help("Requests per decode batch")
          .Register(*registry)
          .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128});
  prometheus::Gauge& queue = prometheus::BuildGauge()
                                 .Name("atspeed_serve_queue_depth")
                                 .Help("Requests waiting for the decode thread")
                                 .Register(*registry)
                                 .Add({});
  prometheus::Histogram& accepted =
      prometheus::BuildHistogram()
          .Name("atspeed_serve_accepted_levels")
          .Help("Drafted levels accepted per speculative round")
          .Register(*registry)
          .Add({}, prometheus::Histogram::BucketBoundaries{0, 1, 2, 3, 4, 5, 6, 7});
  prometheus::Family<prometheus::Counter>& decoded = prometheus::BuildCounter()
                                                         .Name("atspeed_serve_decoded_requests_total")
                                                         .Help("Requests decoded, by mode (auto:target and auto:strict for mode auto, by the plan's choice)")
                                                         .Register(*registry);
};

ServeMetrics::ServeMetrics() : impl_(std::make_unique<Impl>()) {}
ServeMetrics::~ServeMetrics() = default;

void ServeMetrics::count_request(int status) { impl_->requests.Add({{"code", std::to_string(status)}}).Increment(); }
void ServeMetrics::observe_request_latency(double seconds) { impl_->latency.Observe(seconds); }
void ServeMetrics::observe_batch(int64_t size) { impl_->batch.Observe(static_cast<double>(size)); }
void ServeMetrics::set_queue_depth(int64_t depth) { impl_->queue.Set(static_cast<double>(depth)); }
void ServeMetrics::observe_round(int64_t accepted_levels) { impl_->accepted.Observe(static_cast<double>(accepted_levels)); }
void ServeMetrics::count_decoded(const std::string& mode) { impl_->decoded.Add({{"mode", mode}}).Increment(); }

std::string ServeMetrics::render() const {
  return prometheus::TextSerializer().Serialize(impl_->registry->Collect());
}

}  // namespace atspeed::serve
