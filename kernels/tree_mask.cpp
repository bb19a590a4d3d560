#include "kernels/tree_mask.h"

#include <ATen/ATen.h>

#include <limits>
#include <stdexcept>
#include <string>

namespace atspeed::kernels {

namespace {
// kernels/ sits below core/ (no atspeed::Error here); core turns these into Error(Internal).
void require(bool cond, const std::string& what) {
  if (!cond) throw std::invalid_argument("tree_attention_mask: " + what);
}

void check_inputs(const at::Tensor& parents, const at::Tensor& prefix_lens, int64_t prefix_width) {
  require(parents.dim() == 2, "parents must be [B, n]");
  require(parents.scalar_type() == at::kLong, "parents must be int64");
  require(prefix_lens.dim() == 1 && prefix_lens.size(0) == parents.size(0), "prefix_lens must be [B]");
  require(prefix_lens.scalar_type() == at::kLong, "prefix_lens must be int64");
  require(prefix_width >= 0, "prefix_width must be >= 0");
  require(prefix_lens.device() == parents.device(), "parents and prefix_lens must be on one device");
}
}  // namespace

bool cuda_kernels_compiled() {
#ifdef ATSPEED_WITH_CUDA
  return true;
#else
  return false;
#endif
}

at::Tensor tree_attention_mask_cpu(const at::Tensor& parents_in, const at::Tensor& prefix_lens_in,
                                   int64_t prefix_width, at::ScalarType dtype) {
  check_inputs(parents_in, prefix_lens_in, prefix_width);
  const at::Tensor parents = parents_in.cpu().contiguous();
  const at::Tensor prefix_lens = prefix_lens_in.cpu().contiguous();
  const int64_t batch = parents.size(0), n = parents.size(1), width = prefix_width + n;
  // Build as bool "may attend" rows, each row copied from its parent's (the recursive rule).
  at::Tensor allowed = at::zeros({batch, n, width}, at::kBool);
  auto p = parents.accessor<int64_t, 2>();
  auto lens = prefix_lens.accessor<int64_t, 1>();
  auto a = allowed.accessor<bool, 3>();
  for (int64_t b = 0; b < batch; ++b) {
    require(lens[b] >= 0 && lens[b] <= prefix_width, "prefix_lens[" + std::to_string(b) + "] outside [0, prefix_width]");
    for (int64_t i = 0; i < n; ++i) {
      const int64_t parent = p[b][i];
      require(parent >= -1 && parent < i,
              "parents[" + std::to_string(b) + "][" + std::to_string(i) + "] = " + std::to_string(parent) +
                  " must be -1 or an earlier token");
      if (parent < 0) {
        for (int64_t c = 0; c < lens[b]; ++c) a[b][i][c] = true;
      } else {
        for (int64_t c = 0; c < width; ++c) a[b][i][c] = a[b][parent][c];
      }
      a[b][i][prefix_width + i] = true;
    }
  }
  at::Tensor mask = at::zeros({batch, n, width}, at::TensorOptions().dtype(dtype));
  mask.masked_fill_(allowed.logical_not(), -std::numeric_limits<double>::infinity());
  return mask.to(parents_in.device());
}

at::Tensor tree_attention_mask(const at::Tensor& parents, const at::Tensor& prefix_lens, int64_t prefix_width,
                               at::ScalarType dtype) {
#ifdef ATSPEED_WITH_CUDA
  if (parents.is_cuda()) return tree_attention_mask_cuda(parents, prefix_lens, prefix_width, dtype);
#endif
  return tree_attention_mask_cpu(parents, prefix_lens, prefix_width, dtype);
}

}  // namespace atspeed::kernels
