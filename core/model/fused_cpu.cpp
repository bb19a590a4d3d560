#include "core/model/fused_cpu.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <limits>

#include "core/errors.h"

namespace atspeed::model::fused_cpu {
namespace {
// Rows per task of at::parallel_for: a forward at a few new tokens stays on the calling thread
// (a thread-pool hand-off costs more than the loop), a prefill of hundreds of tokens is split.
int64_t grain_rows(int64_t row_elements) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, row_elements)); }

// x * cos + roll(x, half) * sin_signed over one head of 2 half values, as two products and a sum
// like the ATen ops; roll(x, half)[i] is x[i + half] in the first half, x[i - half] in the second.
// The buffers never overlap (restrict lets the compiler vectorise without run-time alias checks).
inline void rotate(const float* __restrict x, const float* __restrict c, const float* __restrict s,
                   float* __restrict dst, int64_t half) {
  for (int64_t i = 0; i < half; ++i) dst[i] = x[i] * c[i] + x[i + half] * s[i];
  for (int64_t i = 0; i < half; ++i) dst[half + i] = x[half + i] * c[half + i] + x[i] * s[half + i];
}

void check_float_cpu(const at::Tensor& t, const char* what) {
  ATSPEED_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat, "fused_cpu: ", what,
                " must be a float32 CPU tensor, got ", t.toString());
}
}  // namespace

bool enabled() {
  static const bool on = [] {
    const char* v = std::getenv("ATSPEED_FUSED_CPU");
    return v == nullptr || std::string(v) != "0";
  }();
  return on;
}

bool applies(const at::Tensor& x) {
  return enabled() && x.device().is_cpu() && x.scalar_type() == at::kFloat && !at::GradMode::is_enabled();
}

at::Tensor rms_norm(const at::Tensor& x_in, const at::Tensor& weight, double eps) {
  check_float_cpu(x_in, "rms_norm input");
  check_float_cpu(weight, "rms_norm weight");
  const int64_t d = x_in.size(-1);
  ATSPEED_CHECK(weight.numel() == d, "fused_cpu::rms_norm: weight has ", weight.numel(), " values, rows ", d);
  const at::Tensor x = x_in.contiguous(), w = weight.contiguous();
  at::Tensor out = at::empty_like(x);
  const int64_t rows = d == 0 ? 0 : x.numel() / d;
  const float* xp = x.const_data_ptr<float>();
  const float* wp = w.const_data_ptr<float>();
  float* op = out.mutable_data_ptr<float>();
  const float feps = static_cast<float>(eps);
  at::parallel_for(0, rows, grain_rows(d), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = xp + r * d;
      float* orow = op + r * d;
      double sum = 0;
      for (int64_t i = 0; i < d; ++i) sum += static_cast<double>(xr[i]) * xr[i];
      // As ATen: the mean in float32, eps added in float32, then weight * (x * rsqrt).
      const float inv = 1.0f / std::sqrt(static_cast<float>(sum / static_cast<double>(d)) + feps);
      for (int64_t i = 0; i < d; ++i) orow[i] = wp[i] * (xr[i] * inv);
    }
  });
  return out;
}

void rope_tables(const at::Tensor& positions_in, const at::Tensor& inv_freq_in, at::Tensor& cos, at::Tensor& sin_signed) {
  ATSPEED_CHECK(positions_in.dim() == 2 && positions_in.scalar_type() == at::kLong && positions_in.device().is_cpu(),
                "fused_cpu::rope_tables: positions must be [B, n] int64 on the CPU");
  check_float_cpu(inv_freq_in, "rope_tables inv_freq");
  const at::Tensor positions = positions_in.contiguous(), inv_freq = inv_freq_in.contiguous();
  const int64_t b = positions.size(0), n = positions.size(1), half = inv_freq.numel(), d = 2 * half;
  cos = at::empty({b, n, d}, inv_freq.options());
  sin_signed = at::empty({b, n, d}, inv_freq.options());
  const int64_t* pp = positions.const_data_ptr<int64_t>();
  const float* fp = inv_freq.const_data_ptr<float>();
  float* cp = cos.mutable_data_ptr<float>();
  float* sp = sin_signed.mutable_data_ptr<float>();
  at::parallel_for(0, b * n, grain_rows(d), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float pos = static_cast<float>(pp[r]);
      for (int64_t j = 0; j < half; ++j) {
        const float angle = pos * fp[j];  // HF: position (float32) * inv_freq, in float32
        const float c = std::cos(angle), s = std::sin(angle);
        cp[r * d + j] = c;
        cp[r * d + half + j] = c;
        sp[r * d + j] = -s;
        sp[r * d + half + j] = s;
      }
    }
  });
}

at::Tensor rotary_split(const at::Tensor& qkv_in, const at::Tensor& cos_in, const at::Tensor& sin_in, int64_t heads,
                        int64_t kv_heads, const at::Tensor& k_out, const at::Tensor& v_out) {
  check_float_cpu(qkv_in, "rotary_split qkv");
  check_float_cpu(k_out, "rotary_split k_out");
  check_float_cpu(v_out, "rotary_split v_out");
  ATSPEED_CHECK(qkv_in.dim() == 4 && qkv_in.size(2) == heads + 2 * kv_heads,
                "fused_cpu::rotary_split: qkv must be [B, n, H + 2 KV, d], got ", qkv_in.sizes());
  const at::Tensor qkv = qkv_in.contiguous(), cos = cos_in.contiguous(), sin_signed = sin_in.contiguous();
  const int64_t b = qkv.size(0), n = qkv.size(1), width = qkv.size(2), d = qkv.size(3), half = d / 2;
  ATSPEED_CHECK(cos.sizes() == at::IntArrayRef({b, n, d}) && sin_signed.sizes() == cos.sizes(),
                "fused_cpu::rotary_split: rotary tables must be [B, n, d] = [", b, ", ", n, ", ", d, "]");
  for (const at::Tensor* t : {&k_out, &v_out}) {
    ATSPEED_CHECK(t->sizes() == at::IntArrayRef({b, kv_heads, n, d}) && t->stride(3) == 1,
                  "fused_cpu::rotary_split: K/V destinations must be [B, KV, n, d] with unit last stride, got ",
                  t->sizes());
  }
  at::Tensor q = at::empty({b, heads, n, d}, qkv.options());
  const float* xp = qkv.const_data_ptr<float>();
  const float* cp = cos.const_data_ptr<float>();
  const float* sp = sin_signed.const_data_ptr<float>();
  float* qp = q.mutable_data_ptr<float>();
  float* kp = k_out.mutable_data_ptr<float>();
  float* vp = v_out.mutable_data_ptr<float>();
  const auto ks = k_out.strides(), vs = v_out.strides();
  // One task per (batch row, token): its H + 2 KV heads of d values.
  at::parallel_for(0, b * n, grain_rows(width * d), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t bi = r / n, t = r % n;
      const float* c = cp + r * d;
      const float* s = sp + r * d;
      for (int64_t h = 0; h < width; ++h) {
        const float* x = xp + (r * width + h) * d;
        float* dst = h < heads ? qp + ((bi * heads + h) * n + t) * d
                     : h < heads + kv_heads
                         ? kp + bi * ks[0] + (h - heads) * ks[1] + t * ks[2]
                         : vp + bi * vs[0] + (h - heads - kv_heads) * vs[1] + t * vs[2];
        if (h < heads + kv_heads) {
          rotate(x, c, s, dst, half);
        } else {
          std::copy(x, x + d, dst);
        }
      }
    }
  });
  return q;
}

at::Tensor silu_mul(const at::Tensor& gate_up_in) {
  check_float_cpu(gate_up_in, "silu_mul input");
  const at::Tensor gu = gate_up_in.contiguous();
  const int64_t two_i = gu.size(-1), inter = two_i / 2;
  ATSPEED_CHECK(two_i % 2 == 0, "fused_cpu::silu_mul: the last dimension must be 2 I, got ", two_i);
  std::vector<int64_t> shape(gu.sizes().begin(), gu.sizes().end());
  shape.back() = inter;
  at::Tensor out = at::empty(shape, gu.options());
  const int64_t rows = two_i == 0 ? 0 : gu.numel() / two_i;
  const float* gp = gu.const_data_ptr<float>();
  float* op = out.mutable_data_ptr<float>();
  at::parallel_for(0, rows, grain_rows(two_i), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* g = gp + r * two_i;
      const float* u = g + inter;
      float* o = op + r * inter;
      for (int64_t i = 0; i < inter; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];  // silu(g) * u
    }
  });
  return out;
}

at::Tensor additive_mask(const at::Tensor& visible_in) {
  ATSPEED_CHECK(visible_in.scalar_type() == at::kBool && visible_in.device().is_cpu(),
                "fused_cpu::additive_mask: visibility must be a bool CPU tensor");
  const at::Tensor visible = visible_in.contiguous();
  at::Tensor mask = at::empty(visible.sizes(), visible.options().dtype(at::kFloat));
  const bool* vp = visible.const_data_ptr<bool>();
  float* mp = mask.mutable_data_ptr<float>();
  const float blocked = -std::numeric_limits<float>::infinity();
  const int64_t count = visible.numel();
  for (int64_t i = 0; i < count; ++i) mp[i] = vp[i] ? 0.0f : blocked;
  return mask;
}

}  // namespace atspeed::model::fused_cpu
