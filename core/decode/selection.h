// What a search step reads of a forward: the constraint-allowed log-probs of the rows it expands,
// brought to the host in ONE small device-to-host copy per forward (issue 19).
//
// A scorer's forward leaves float32 log-probs [B, n, V] on the model's device. A search names the
// rows it will read and, for each, the constraint's allowed tokens after that row's prefix (a
// trie node's children: at most a level's codes, e.g. 256, against V = 1,029 or 33k). gather_allowed()
// builds the flat index on the host, sends it to the device without waiting (pinned memory,
// non-blocking), gathers there and copies only those values back. The selection itself (sums with
// beam scores, top-K with the exact tie order of SPEC §9.2, sampling with the request's generator)
// then runs on the host over these few values, so CPU and CUDA decode through the same code and
// every seeded result is unchanged. On a CPU model the "copy" is a read of the gathered tensor.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <span>
#include <vector>

namespace atspeed {
class Constraint;
}  // namespace atspeed

namespace atspeed::decode {

// One row of a forward's output restricted to its allowed tokens.
struct AllowedRow {
  std::span<const int64_t> tokens;  // ascending; owned by the Constraint (valid while it lives)
  std::vector<float> logprobs;      // logprobs[j] = log p(tokens[j]), full-vocabulary log_softmax
};
using AllowedRows = std::vector<AllowedRow>;

// Device-to-host traffic of a decode: the quantity the lean path keeps small.
struct TransferStats {
  int64_t copies = 0;  // device-to-host copies (one per forward a search read)
  int64_t bytes = 0;   // bytes brought to the host (values; on a CPU model the bytes read)
};

// rows: float32 [R, V] on any device (a view of a forward's output); allowed[i]: the tokens row i
// may take. Returns one AllowedRow per row. One device-to-host copy (none when R == 0), counted in
// `stats` when given.
AllowedRows gather_allowed(const at::Tensor& rows, const std::vector<std::span<const int64_t>>& allowed,
                           TransferStats* stats = nullptr);
// Rows from several tensors ([R_i, V] each, same device), numbered in order; still one copy.
AllowedRows gather_allowed(const std::vector<at::Tensor>& parts, const std::vector<std::span<const int64_t>>& allowed,
                           TransferStats* stats = nullptr);

// The same from a dense CPU table [R, V] with each row's allowed tokens taken from `constraint`
// after prefixes[i] (tests and tools that hold whole rows).
AllowedRows allowed_rows(const at::Tensor& rows, const std::vector<std::vector<int64_t>>& prefixes,
                         const Constraint& constraint);

// A host tensor on `device` without a blocking copy: pinned and non-blocking for CUDA (no stream
// synchronisation, so c10's sync-debug mode does not flag it), the tensor itself for the CPU.
at::Tensor to_device_async(const at::Tensor& host, const at::Device& device);

}  // namespace atspeed::decode
