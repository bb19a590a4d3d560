// Additive tree-attention masks from parent pointers (SPEC §2.3, §3.3).
//
// A batch of B requests each appends n new tokens after a visible prefix (the prompt and any
// earlier cached tokens it may see). New token i of request b attends to the first
// prefix_lens[b] prefix columns, to its ancestors among the new tokens, and to itself:
//   mask_row(i) = prefix ∪ mask_row(parent(i)) ∪ {i}
// Layout of the result [B, n, prefix_width + n]: columns [0, prefix_width) are the prefix slots,
// column prefix_width + j is new token j. Entries are 0 (attend) or -inf (blocked).
// parents[b, i] is the index of i's parent among the new tokens, or -1 when i hangs directly off
// the prefix; a parent must come earlier (parents[b, i] < i), which the tree layout guarantees.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace atspeed::kernels {

// Dispatches on parents' device: CUDA kernel for CUDA tensors (when built with CUDA), else the
// CPU reference. parents: [B, n] int64; prefix_lens: [B] int64 on the same device.
at::Tensor tree_attention_mask(const at::Tensor& parents, const at::Tensor& prefix_lens, int64_t prefix_width,
                               at::ScalarType dtype);

// The CPU reference (the recursive rule above, row by row).
at::Tensor tree_attention_mask_cpu(const at::Tensor& parents, const at::Tensor& prefix_lens, int64_t prefix_width,
                                   at::ScalarType dtype);

// True when this build has the CUDA kernels compiled in.
bool cuda_kernels_compiled();

#ifdef ATSPEED_WITH_CUDA
at::Tensor tree_attention_mask_cuda(const at::Tensor& parents, const at::Tensor& prefix_lens, int64_t prefix_width,
                                    at::ScalarType dtype);
#endif

}  // namespace atspeed::kernels
