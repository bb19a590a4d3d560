// Tensor-parallel serving (DESIGN §3 "Server"), wired in serve/server.cpp.
//
// Under `mpirun -np N atspeed serve dist.tp=N`, every rank loads its shard of the target (and the
// draft) and builds the same ModelDecoder; the sharded forward all-reduces inside each layer, so
// every rank must run the same forwards in the same order. Rank 0 alone runs the HTTP server and
// the Engine, with its decoder wrapped in a BroadcastDecoder: before each batch it broadcasts the
// batch (key, seeds, prompts) through the Communicator, then decodes. Ranks > 0 sit in
// run_worker(), which receives each batch and runs the identical decode (its results are dropped;
// rank 0 answers). Relaxed requests carry their seeds, so every rank draws the same samples and
// grows the same trees. At shutdown rank 0 calls BroadcastDecoder::stop_workers().
//
// Wire format (two broadcasts per batch from root 0): header int64 [3] = {command, jobs, payload
// length} (command 0 = batch, 1 = stop), then payload int64 [length] =
// {mode, k, draft_width, gamma, then per job: seed, history_used, prompt length, prompt tokens...}.
// The wire format is tested with the local communicator (tests/unit/test_serve.cpp), the whole
// path through mpirun in tests/integration/test_serve_tp_cli.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "serve/decoder.h"

namespace atspeed {
class Communicator;
}  // namespace atspeed

namespace atspeed::serve {

// The batch as the int64 payload of the wire format above, and back.
std::vector<int64_t> encode_batch(const BatchKey& key, const std::vector<const DecodeJob*>& jobs);
void decode_batch(const std::vector<int64_t>& payload, int64_t jobs, BatchKey& key, std::vector<DecodeJob>& out);

// Rank 0's decoder: broadcasts each batch, then decodes it with `local`.
class BroadcastDecoder final : public Decoder {
 public:
  BroadcastDecoder(Communicator& comm, Decoder& local) : comm_(comm), local_(local) {}
  std::vector<DecodeResult> decode(const BatchKey& key, const std::vector<const DecodeJob*>& jobs) override;
  void prepare_thread() override { local_.prepare_thread(); }
  // Tells run_worker() on every other rank to return.
  void stop_workers();

 private:
  Communicator& comm_;
  Decoder& local_;
};

// Ranks > 0: decodes every broadcast batch with `local` until rank 0 sends stop. Returns the number
// of batches decoded.
int64_t run_worker(Communicator& comm, Decoder& local);

}  // namespace atspeed::serve
