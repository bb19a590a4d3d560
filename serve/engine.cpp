#include "serve/engine.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <future>

#include "core/errors.h"
#include "serve/metrics.h"

namespace atspeed::serve {

struct Engine::Pending {
  DecodeJob job;
  Clock::time_point enqueued;
  Clock::time_point deadline;
  std::promise<Outcome> promise;
  std::atomic<bool> abandoned{false};  // the submitter gave up waiting (its deadline passed)
};

Engine::Engine(Decoder& decoder, EngineOptions options, ServeMetrics* metrics)
    : decoder_(decoder), options_(options), metrics_(metrics) {
  ATSPEED_CHECK(options_.max_batch >= 1 && options_.max_queue >= 1 && options_.max_wait_ms >= 0, "bad engine options");
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() { stop(); }

void Engine::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int64_t Engine::queue_depth() const {
  std::lock_guard lock(mutex_);
  return static_cast<int64_t>(queue_.size());
}

Outcome Engine::submit(DecodeJob job, Clock::time_point deadline) {
  auto p = std::make_shared<Pending>();
  p->job = std::move(job);
  p->enqueued = Clock::now();
  p->deadline = deadline;
  std::future<Outcome> future = p->promise.get_future();
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return Outcome{503, "the server is shutting down", {}, 0, 0};
    if (static_cast<int64_t>(queue_.size()) >= options_.max_queue) {
      return Outcome{503, "the request queue is full (serve.max_queue = " + std::to_string(options_.max_queue) + "); retry later",
                     {}, 0, 0};
    }
    queue_.push_back(p);
    if (metrics_) metrics_->set_queue_depth(static_cast<int64_t>(queue_.size()));
  }
  cv_.notify_all();
  if (future.wait_until(deadline) != std::future_status::ready) {
    p->abandoned = true;
    return Outcome{504, "request timed out (serve.request_timeout_ms) before it was answered", {}, 0, 0};
  }
  return future.get();
}

void Engine::loop() {
  decoder_.prepare_thread();
  const auto max_wait = std::chrono::milliseconds(options_.max_wait_ms);
  while (true) {
    std::vector<std::shared_ptr<Pending>> batch;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) break;  // stopping, and everything queued has been answered
      const BatchKey key = queue_.front()->job.key;
      const auto fill_by = queue_.front()->enqueued + max_wait;
      auto same_key = [&] {
        int64_t n = 0;
        for (const auto& q : queue_) n += q->job.key == key ? 1 : 0;
        return n;
      };
      // Wait for company; when stopping, drain at once.
      while (!stopping_ && same_key() < options_.max_batch && Clock::now() < fill_by) cv_.wait_until(lock, fill_by);
      for (auto it = queue_.begin(); it != queue_.end() && static_cast<int64_t>(batch.size()) < options_.max_batch;) {
        if ((*it)->job.key == key) {
          batch.push_back(std::move(*it));
          it = queue_.erase(it);
        } else {
          ++it;
        }
      }
      if (metrics_) metrics_->set_queue_depth(static_cast<int64_t>(queue_.size()));
    }
    run_batch(batch);
  }
}

void Engine::run_batch(std::vector<std::shared_ptr<Pending>>& batch) {
  const auto now = Clock::now();
  std::vector<std::shared_ptr<Pending>> live;
  for (auto& p : batch) {
    if (p->abandoned || now >= p->deadline) {
      // Nobody waits for it (or will in time): decoding it would only delay the others.
      p->promise.set_value(Outcome{504, "request timed out (serve.request_timeout_ms) in the queue", {}, 0, 0});
    } else {
      live.push_back(p);
    }
  }
  if (live.empty()) return;
  std::vector<const DecodeJob*> jobs;
  for (const auto& p : live) jobs.push_back(&p->job);
  const BatchKey key = live.front()->job.key;
  std::vector<DecodeResult> results;
  std::string failure;
  // The decode thread is a thread boundary: an exception escaping here would terminate the server,
  // so a failed batch becomes a 500 for its requests and the thread goes on serving.
  try {
    results = decoder_.decode(key, jobs);
    ATSPEED_CHECK(results.size() == live.size(), "decoder returned ", results.size(), " results for ", live.size(), " jobs");
  } catch (const std::exception& e) {
    failure = e.what();
    spdlog::error("decode of a batch of {} failed: {}", live.size(), failure);
  }
  const auto n = static_cast<int64_t>(live.size());
  if (metrics_) metrics_->observe_batch(n);
  for (size_t i = 0; i < live.size(); ++i) {
    Outcome o;
    o.batch_size = n;
    o.queue_ms = std::chrono::duration<double, std::milli>(now - live[i]->enqueued).count();
    if (!failure.empty()) {
      o.status = 500;
      o.error = "decode failed: " + failure;
    } else {
      o.result = std::move(results[i]);
      if (metrics_) {
        const DecodeJob& job = live[i]->job;
        metrics_->count_decoded(job.requested_mode.is_auto() ? std::string("auto:") + key.mode.name() : key.mode.name());
        for (int64_t m : o.result.stats.accepted_levels) metrics_->observe_round(m);
      }
    }
    live[i]->promise.set_value(std::move(o));
  }
}

}  // namespace atspeed::serve
