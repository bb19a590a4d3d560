// The request queue and dynamic batching (DESIGN §3 "Server"). HTTP handler threads call submit(),
// which queues the job and blocks until its outcome or its deadline. One decode thread takes the
// oldest queued job, waits up to max_wait_ms (from that job's arrival) for more jobs with the same
// BatchKey until max_batch are queued, and decodes them as one batch through the Decoder. Jobs with
// other keys keep their place in the queue. Batching never changes an answer: each request owns its
// tree and KV region (SPEC §9.9), so a batched request gets the items it would get alone.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "serve/decoder.h"
#include "serve/request.h"

namespace atspeed::serve {

class ServeMetrics;

struct EngineOptions {
  int64_t max_batch = 8;
  int64_t max_wait_ms = 5;
  int64_t max_queue = 256;
};

struct Outcome {
  int status = 200;     // 200; 503 queue full or shutting down; 504 deadline passed; 500 decode failure
  std::string error;    // set when status != 200
  DecodeResult result;  // status 200 only
  int64_t batch_size = 0;
  double queue_ms = 0;  // from submit() to the start of its batch's decode
};

class Engine {
 public:
  using Clock = std::chrono::steady_clock;

  // `decoder` and `metrics` (may be null) must outlive the engine. Starts the decode thread.
  Engine(Decoder& decoder, EngineOptions options, ServeMetrics* metrics = nullptr);
  ~Engine();  // stop()
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues `job` and waits for its outcome until `deadline` (then 504; the job is dropped if its
  // decode has not started).
  Outcome submit(DecodeJob job, Clock::time_point deadline);

  // Refuses new jobs (503), decodes every queued job without waiting for batches to fill, and joins
  // the decode thread. Idempotent.
  void stop();

  int64_t queue_depth() const;

 private:
  struct Pending;
  void loop();
  void run_batch(std::vector<std::shared_ptr<Pending>>& batch);

  Decoder& decoder_;
  EngineOptions options_;
  ServeMetrics* metrics_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Pending>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace atspeed::serve
