#include "serve/worker.h"

#include <torch/torch.h>

#include "core/dist/communicator.h"
#include "core/errors.h"

namespace atspeed::serve {
namespace {
constexpr int64_t kBatch = 0;
constexpr int64_t kStop = 1;

at::Tensor to_tensor(const std::vector<int64_t>& v) {
  return torch::from_blob(const_cast<int64_t*>(v.data()), {static_cast<int64_t>(v.size())}, torch::kInt64).clone();
}
}  // namespace

std::vector<int64_t> encode_batch(const BatchKey& key, const std::vector<const DecodeJob*>& jobs) {
  std::vector<int64_t> out{static_cast<int64_t>(key.mode.value()), key.k, key.draft_width, key.gamma};
  for (const DecodeJob* j : jobs) {
    out.push_back(static_cast<int64_t>(j->seed));  // bit pattern kept: uint64 -> int64 -> uint64
    out.push_back(j->history_used);
    out.push_back(static_cast<int64_t>(j->prompt.size()));
    out.insert(out.end(), j->prompt.begin(), j->prompt.end());
  }
  return out;
}

void decode_batch(const std::vector<int64_t>& payload, int64_t jobs, BatchKey& key, std::vector<DecodeJob>& out) {
  ATSPEED_CHECK(payload.size() >= 4, "short batch payload");
  key.mode = Mode(static_cast<Mode::Value>(payload[0]));
  key.k = payload[1];
  key.draft_width = payload[2];
  key.gamma = payload[3];
  out.assign(static_cast<size_t>(jobs), DecodeJob{});
  size_t at = 4;
  for (auto& j : out) {
    ATSPEED_CHECK(at + 3 <= payload.size(), "truncated batch payload");
    j.key = key;
    j.seed = static_cast<uint64_t>(payload[at]);
    j.history_used = payload[at + 1];
    const auto len = static_cast<size_t>(payload[at + 2]);
    at += 3;
    ATSPEED_CHECK(at + len <= payload.size(), "truncated batch payload");
    j.prompt.assign(payload.begin() + static_cast<std::ptrdiff_t>(at), payload.begin() + static_cast<std::ptrdiff_t>(at + len));
    at += len;
  }
  ATSPEED_CHECK(at == payload.size(), "batch payload has ", payload.size() - at, " extra entries");
}

std::vector<DecodeResult> BroadcastDecoder::decode(const BatchKey& key, const std::vector<const DecodeJob*>& jobs) {
  const std::vector<int64_t> payload = encode_batch(key, jobs);
  at::Tensor header = to_tensor({kBatch, static_cast<int64_t>(jobs.size()), static_cast<int64_t>(payload.size())});
  comm_.broadcast(header, 0);
  at::Tensor body = to_tensor(payload);
  comm_.broadcast(body, 0);
  return local_.decode(key, jobs);
}

void BroadcastDecoder::stop_workers() {
  at::Tensor header = to_tensor({kStop, 0, 0});
  comm_.broadcast(header, 0);
}

int64_t run_worker(Communicator& comm, Decoder& local) {
  int64_t batches = 0;
  while (true) {
    at::Tensor header = torch::zeros({3}, torch::kInt64);
    comm.broadcast(header, 0);
    const int64_t command = header[0].item<int64_t>();
    if (command == kStop) return batches;
    ATSPEED_CHECK(command == kBatch, "unknown worker command ", command);
    const int64_t jobs = header[1].item<int64_t>();
    at::Tensor body = torch::zeros({header[2].item<int64_t>()}, torch::kInt64);
    comm.broadcast(body, 0);
    std::vector<int64_t> payload(body.data_ptr<int64_t>(), body.data_ptr<int64_t>() + body.numel());
    BatchKey key;
    std::vector<DecodeJob> decoded;
    decode_batch(payload, jobs, key, decoded);
    std::vector<const DecodeJob*> ptrs;
    for (const auto& j : decoded) ptrs.push_back(&j);
    local.decode(key, ptrs);
    ++batches;
  }
}

}  // namespace atspeed::serve
