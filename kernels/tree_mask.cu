// CUDA version of tree_attention_mask (see tree_mask.h): one thread per (request, row, column).
// A thread owning column prefix_width + j walks row i's ancestor chain looking for j. Chains are
// short (one ancestor per decoded level), so the walk is cheaper than materialising rows in order.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime.h>

#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/tree_mask.h"

namespace atspeed::kernels {

namespace {

template <typename T>
__global__ void tree_mask_kernel(const int64_t* __restrict__ parents, const int64_t* __restrict__ prefix_lens,
                                 int64_t batch, int64_t n, int64_t prefix_width, T blocked, T* __restrict__ out) {
  const int64_t width = prefix_width + n;
  const int64_t total = batch * n * width;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t col = idx % width;
    const int64_t row = (idx / width) % n;
    const int64_t b = idx / (width * n);
    bool allowed;
    if (col < prefix_width) {
      allowed = col < prefix_lens[b];
    } else {
      const int64_t target = col - prefix_width;
      allowed = false;
      // At most n steps: parents point strictly backwards, and the bound guards bad input.
      int64_t node = row;
      for (int64_t step = 0; step <= n && node >= 0; ++step) {
        if (node == target) { allowed = true; break; }
        if (node < target) break;  // ancestors only get smaller
        node = parents[b * n + node];
      }
    }
    out[idx] = allowed ? T(0) : blocked;
  }
}

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(status));
}

}  // namespace

at::Tensor tree_attention_mask_cuda(const at::Tensor& parents_in, const at::Tensor& prefix_lens_in,
                                    int64_t prefix_width, at::ScalarType dtype) {
  if (parents_in.dim() != 2 || parents_in.scalar_type() != at::kLong)
    throw std::invalid_argument("tree_attention_mask: parents must be [B, n] int64");
  if (prefix_lens_in.dim() != 1 || prefix_lens_in.size(0) != parents_in.size(0) || prefix_lens_in.scalar_type() != at::kLong)
    throw std::invalid_argument("tree_attention_mask: prefix_lens must be [B] int64");
  // Validate parent order on the device (a bad pointer would otherwise be silently clamped).
  const at::Tensor parents = parents_in.contiguous();
  const at::Tensor prefix_lens = prefix_lens_in.to(parents.device()).contiguous();
  const int64_t batch = parents.size(0), n = parents.size(1), width = prefix_width + n;
  if (n > 0) {
    at::Tensor idx = at::arange(n, parents.options()).unsqueeze(0);
    if (!(parents.ge(-1).logical_and(parents.lt(idx))).all().item<bool>())
      throw std::invalid_argument("tree_attention_mask: every parent must be -1 or an earlier token");
  }
  if (batch > 0 && (!prefix_lens.ge(0).all().item<bool>() || !prefix_lens.le(prefix_width).all().item<bool>()))
    throw std::invalid_argument("tree_attention_mask: prefix_lens outside [0, prefix_width]");
  c10::cuda::CUDAGuard guard(parents.device());
  at::Tensor out = at::empty({batch, n, width}, parents.options().dtype(dtype));
  const int64_t total = out.numel();
  if (total == 0) return out;
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((total + threads - 1) / threads, 65535));
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  switch (dtype) {
    case at::kFloat:
      tree_mask_kernel<float><<<blocks, threads, 0, stream>>>(parents.data_ptr<int64_t>(), prefix_lens.data_ptr<int64_t>(), batch, n,
                                                              prefix_width, -std::numeric_limits<float>::infinity(), out.data_ptr<float>());
      break;
    case at::kHalf:
      tree_mask_kernel<at::Half><<<blocks, threads, 0, stream>>>(parents.data_ptr<int64_t>(), prefix_lens.data_ptr<int64_t>(), batch, n,
                                                                 prefix_width, at::Half(-std::numeric_limits<float>::infinity()),
                                                                 out.data_ptr<at::Half>());
      break;
    case at::kBFloat16:
      tree_mask_kernel<at::BFloat16><<<blocks, threads, 0, stream>>>(parents.data_ptr<int64_t>(), prefix_lens.data_ptr<int64_t>(), batch, n,
                                                                     prefix_width, at::BFloat16(-std::numeric_limits<float>::infinity()),
                                                                     out.data_ptr<at::BFloat16>());
      break;
    default:
      throw std::invalid_argument("tree_attention_mask: dtype must be float32, float16 or bfloat16");
  }
  check_cuda(cudaGetLastError(), "tree_mask_kernel launch");
  return out;
}

}  // namespace atspeed::kernels
