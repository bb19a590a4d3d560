// Device tests: named *_CUDA, skipped (not failed) without a GPU.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "core/dist/communicator.h"
#include "kernels/tree_mask.h"

namespace atspeed {
namespace {

#define SKIP_WITHOUT_GPU()                                                                  \
  do {                                                                                      \
    if (!kernels::cuda_kernels_compiled()) GTEST_SKIP() << "built without CUDA";            \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU on this machine";        \
  } while (0)

TEST(TreeMask_CUDA, MatchesCpuReferenceOnRandomTrees) {
  SKIP_WITHOUT_GPU();
  at::manual_seed(0);
  for (int trial = 0; trial < 20; ++trial) {
    const int64_t batch = 1 + trial % 4, n = 1 + 7 * trial, width = 3 + trial;
    // Random parent of token i: -1 or any earlier token.
    at::Tensor parents = (at::rand({batch, n}) * at::arange(n, at::kFloat).add(1)).floor().to(at::kLong) - 1;
    at::Tensor lens = at::randint(0, width + 1, {batch}, at::kLong);
    at::Tensor cpu = kernels::tree_attention_mask_cpu(parents, lens, width, at::kFloat);
    for (auto dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
      at::Tensor gpu = kernels::tree_attention_mask(parents.cuda(), lens.cuda(), width, dtype);
      EXPECT_TRUE(at::equal(gpu.cpu().to(at::kFloat), cpu)) << "trial " << trial;
    }
  }
}

TEST(Nccl_CUDA, SingleRankCollectives) {
  SKIP_WITHOUT_GPU();
  auto comm = make_nccl_communicator(0);
  at::Tensor t = at::arange(8, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, 0));
  comm->all_reduce(t, ReduceOp::Sum);
  comm->broadcast(t, 0);
  at::Tensor g = comm->all_gather(t);
  comm->barrier();
  EXPECT_TRUE(at::equal(g[0].cpu(), at::arange(8, at::kFloat)));
  EXPECT_EQ(comm->backend(), "nccl");
}

}  // namespace
}  // namespace atspeed
