#include "core/decode/selection.h"

#include <ATen/ATen.h>

#ifdef ATSPEED_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include "core/errors.h"
#include "core/vocab/constraint.h"

namespace atspeed::decode {
namespace {

// The one synchronising copy of a forward is exempt from c10's sync-debug mode: the CUDA test sets
// the mode to error, so any other synchronisation on the decode path fails it.
class AllowThisSync {
#ifdef ATSPEED_WITH_CUDA
 public:
  AllowThisSync() : saved_(c10::cuda::warning_state().get_sync_debug_mode()) {
    c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
  }
  ~AllowThisSync() { c10::cuda::warning_state().set_sync_debug_mode(saved_); }
  AllowThisSync(const AllowThisSync&) = delete;
  AllowThisSync& operator=(const AllowThisSync&) = delete;

 private:
  c10::cuda::SyncDebugMode saved_;
#endif
};

}  // namespace

at::Tensor to_device_async(const at::Tensor& host, const at::Device& device) {
  if (device.is_cpu() || host.device() == device) return host;
  // A pinned staging copy lets the host-to-device copy run without blocking the host.
  return host.pin_memory().to(device, /*non_blocking=*/true);
}

AllowedRows gather_allowed(const at::Tensor& rows, const std::vector<std::span<const int64_t>>& allowed,
                           TransferStats* stats) {
  return gather_allowed(std::vector<at::Tensor>{rows}, allowed, stats);
}

AllowedRows gather_allowed(const std::vector<at::Tensor>& parts, const std::vector<std::span<const int64_t>>& allowed,
                           TransferStats* stats) {
  ATSPEED_CHECK(!parts.empty(), "gather_allowed: no rows");
  int64_t num_rows = 0;
  for (const auto& p : parts) {
    ATSPEED_CHECK(p.dim() == 2 && p.scalar_type() == at::kFloat && p.size(1) == parts[0].size(1) &&
                      p.device() == parts[0].device(),
                  "gather_allowed: rows must be float32 [R, V] on one device, got ", p.sizes(), " ", p.scalar_type());
    num_rows += p.size(0);
  }
  ATSPEED_CHECK(static_cast<int64_t>(allowed.size()) == num_rows, "gather_allowed: ", allowed.size(),
                " allowed lists for ", num_rows, " rows");
  AllowedRows out(allowed.size());
  if (allowed.empty()) return out;
  const int64_t vocab = parts[0].size(1);
  int64_t total = 0;
  for (const auto& a : allowed) {
    for (int64_t t : a) ATSPEED_CHECK(t >= 0 && t < vocab, "gather_allowed: allowed token ", t, " outside the vocabulary ", vocab);
    total += static_cast<int64_t>(a.size());
  }
  if (parts[0].device().is_cpu()) {
    // The rows are in host memory already: read the allowed entries in place (what the gather and
    // the copy below produce, without building an index).
    size_t row = 0;
    for (const auto& p : parts) {
      const at::Tensor t = p.stride(1) == 1 ? p : p.contiguous();
      const float* base = t.data_ptr<float>();
      for (int64_t i = 0; i < t.size(0); ++i, ++row) {
        const float* r = base + i * t.stride(0);
        out[row].tokens = allowed[row];
        out[row].logprobs.reserve(allowed[row].size());
        for (int64_t tok : allowed[row]) out[row].logprobs.push_back(r[tok]);
      }
    }
  } else {
    // Per part, flat indices into it (row-major: its row i, token t is i * V + t), gathered on the
    // device; then one copy of all the values.
    std::vector<at::Tensor> values;
    size_t row = 0;
    for (const auto& p : parts) {
      std::vector<int64_t> index;
      for (int64_t i = 0; i < p.size(0); ++i) {
        for (int64_t t : allowed[row + static_cast<size_t>(i)]) index.push_back(i * vocab + t);
      }
      if (!index.empty()) {
        const at::Tensor flat = p.is_contiguous() ? p.view({-1}) : p.reshape({-1});
        values.push_back(flat.index_select(0, to_device_async(at::tensor(index, at::kLong), p.device())));
      }
      row += static_cast<size_t>(p.size(0));
    }
    at::Tensor host;
    if (total > 0) {
      const AllowThisSync allow;
      host = (values.size() == 1 ? values[0] : at::cat(values, 0)).cpu().contiguous();  // the one copy
    }
    const float* v = total > 0 ? host.data_ptr<float>() : nullptr;
    for (size_t i = 0; i < allowed.size(); ++i) {
      out[i].tokens = allowed[i];
      out[i].logprobs.assign(v, v + allowed[i].size());
      v += allowed[i].size();
    }
  }
  if (stats != nullptr) {
    stats->copies += 1;
    stats->bytes += total * static_cast<int64_t>(sizeof(float));
  }
  return out;
}

AllowedRows allowed_rows(const at::Tensor& rows, const std::vector<std::vector<int64_t>>& prefixes,
                         const Constraint& constraint) {
  std::vector<std::span<const int64_t>> allowed;
  allowed.reserve(prefixes.size());
  for (const auto& p : prefixes) allowed.push_back(constraint.allowed(p));
  return gather_allowed(rows.to(at::kCPU, at::kFloat).contiguous(), allowed);
}

}  // namespace atspeed::decode
