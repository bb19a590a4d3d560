// Fused float32 CPU kernels of the Llama inference forward.
//
// On a CPU a small model's forward at one new token is dominated by libtorch's fixed cost per
// operator (dispatch, allocation, a parallel-for per op), not by arithmetic: an RMSNorm is eight ATen
// operators, the rotary tables thirteen, rotating q and k and appending K/V to the cache about
// twenty per layer. Each function below does one of those groups in one loop over the data, with
// the same arithmetic as the ATen formulation it replaces (identical up to the last bits of the
// libm functions and of summation order; tests/unit/test_llama.cpp compares them).
//
// They apply to contiguous float32 CPU tensors with grad mode off (applies()); the model falls back
// to the ATen operators otherwise (CUDA, bf16, training), so every device keeps one code path.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace atspeed::model::fused_cpu {

// False when the environment sets ATSPEED_FUSED_CPU=0 (read once): every forward then takes the
// ATen operators, for A/B measurements (tools/hotpath_ab.py) and to rule the kernels out.
bool enabled();
// True when enabled() and x is a float32 CPU tensor and grad mode is off.
bool applies(const at::Tensor& x);

// The loops below are plain scalar code (std::exp, std::cos, a double sum): above these sizes
// ATen's vectorised kernels win despite their fixed cost (measured with `atspeed bench forward --ns
// 1 20 40 120 400`, ATSPEED_FUSED_CPU=0 against 1), so the model calls them only up to:
constexpr int64_t kMaxNormElements = 8192;           // rms_norm input
constexpr int64_t kMaxTranscendentalElements = 2048;  // silu_mul output; rope_tables angles (B n d/2)
// rotary_split (products and sums, which the compiler vectorises) and additive_mask take any size.

// HF's LlamaRMSNorm: weight * (x * rsqrt(mean(x^2, -1) + eps)). x: [..., D] float32; weight: [D].
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

// HF's rotary tables for positions [B, n] int64: cos and sin_signed [B, n, d] float32 with
// angle[j] = pos * inv_freq[j mod d/2] and sin_signed's first half negated (rotate_half's sign).
// inv_freq: [d/2] float32.
void rope_tables(const at::Tensor& positions, const at::Tensor& inv_freq, at::Tensor& cos, at::Tensor& sin_signed);

// The fused q/k/v projection qkv [B, n, H + 2 KV, d] (contiguous) split into heads, q and k rotated
// (x * cos + roll(x, d/2) * sin_signed; cos/sin_signed [B, n, d]), k and v written into k_out and
// v_out ([B, KV, n, d], any strides with a unit last stride: the cache's spare room). Returns q
// [B, H, n, d] contiguous.
at::Tensor rotary_split(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin_signed, int64_t heads,
                        int64_t kv_heads, const at::Tensor& k_out, const at::Tensor& v_out);

// silu(gate) * up of the fused gate/up projection gu [..., 2 I] (gate first): [..., I].
at::Tensor silu_mul(const at::Tensor& gate_up);

// The additive float32 mask of visibility rows (bool, any shape): 0 where visible, -inf elsewhere.
at::Tensor additive_mask(const at::Tensor& visible);

}  // namespace atspeed::model::fused_cpu
