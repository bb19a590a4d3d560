// The decode step behind the engine: a batch of validated jobs that share one BatchKey in, one
// result per job out. The engine knows nothing else about models, so
//   - tests can drive it with any Decoder,
//   - tensor-parallel serving (serve/worker.h) wraps the same ModelDecoder so that rank 0 broadcasts
//     each batch and every rank runs the identical decode on its shard.
#pragma once

#include <memory>
#include <vector>

#include "serve/request.h"

namespace atspeed {
class Constraint;
namespace decode {
class TreeScorer;
}  // namespace decode
}  // namespace atspeed

namespace atspeed::serve {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // jobs: non-empty, all with key `key`. Returns jobs.size() results in order. Called from one
  // thread at a time.
  virtual std::vector<DecodeResult> decode(const BatchKey& key, const std::vector<const DecodeJob*>& jobs) = 0;
  // Called once on the decode thread before its first decode() (e.g. per-thread library settings).
  virtual void prepare_thread() {}
};

// Settings of the speculative search that are fixed for the server (decode.*).
struct SpeculativeSettings {
  int64_t gamma = 4;
  double temperature = 1.0;  // relaxed only
  int64_t top_k = 50;        // relaxed only
};

// Decodes with TargetBeamSearch (mode target) or SpeculativeBeamSearch (strict, relaxed) over the
// given scorers. `draft` may be null (then only mode target is valid). The constraint must be the
// trie (SPEC §9.1: a server returns items).
class ModelDecoder final : public Decoder {
 public:
  ModelDecoder(std::unique_ptr<decode::TreeScorer> target, std::unique_ptr<decode::TreeScorer> draft,
               std::shared_ptr<const Constraint> constraint, SpeculativeSettings settings);
  ~ModelDecoder() override;
  std::vector<DecodeResult> decode(const BatchKey& key, const std::vector<const DecodeJob*>& jobs) override;
  void prepare_thread() override;

 private:
  std::unique_ptr<decode::TreeScorer> target_;
  std::unique_ptr<decode::TreeScorer> draft_;
  std::shared_ptr<const Constraint> constraint_;
  SpeculativeSettings settings_;
};

}  // namespace atspeed::serve
