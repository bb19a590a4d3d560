// Runs under `mpirun -np 2` and `-np 3` (see tests/CMakeLists.txt). Every rank runs every test;
// a failure on any rank fails mpirun.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <mpi.h>
#include <spdlog/spdlog.h>

#include "core/dist/communicator.h"
#include "core/dist/world.h"
#include "core/errors.h"

namespace atspeed {
namespace {

class MpiTest : public ::testing::Test {
 protected:
  void SetUp() override { comm = make_communicator("auto"); }
  std::unique_ptr<Communicator> comm;
};

TEST_F(MpiTest, AutoPicksMpiUnderMpirun) {
  EXPECT_EQ(comm->backend(), "mpi");
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(comm->size(), size);
  EXPECT_GE(comm->size(), 2);
}

TEST_F(MpiTest, AllReduceSumAndAvg) {
  const int r = comm->rank(), n = comm->size();
  at::Tensor t = at::arange(6, at::kFloat).reshape({2, 3}) + r;  // rank r holds base + r
  comm->all_reduce(t, ReduceOp::Sum);
  at::Tensor expected = at::arange(6, at::kFloat).reshape({2, 3}) * n + n * (n - 1) / 2.0;
  EXPECT_TRUE(at::allclose(t, expected)) << t;
  at::Tensor a = at::full({4}, static_cast<double>(r), at::kDouble);
  comm->all_reduce(a, ReduceOp::Avg);
  EXPECT_TRUE(at::allclose(a, at::full({4}, (n - 1) / 2.0, at::kDouble)));
  at::Tensor i = at::full({3}, r + 1, at::kLong);
  comm->all_reduce(i, ReduceOp::Sum);
  EXPECT_EQ(i[0].item<int64_t>(), n * (n + 1) / 2);
  EXPECT_THROW(comm->all_reduce(i, ReduceOp::Avg), Error);
}

TEST_F(MpiTest, AllReduceBf16AndNonContiguous) {
  const int r = comm->rank(), n = comm->size();
  at::Tensor b = at::full({5}, r + 1.0, at::kBFloat16);
  comm->all_reduce(b, ReduceOp::Sum);
  EXPECT_EQ(b.scalar_type(), at::kBFloat16);
  EXPECT_FLOAT_EQ(b[0].item<float>(), n * (n + 1) / 2.0f);
  // A transposed view is reduced in place: the base tensor sees the result.
  at::Tensor base = at::full({3, 2}, static_cast<double>(r), at::kFloat);
  at::Tensor view = base.t();
  comm->all_reduce(view, ReduceOp::Sum);
  EXPECT_TRUE(at::allclose(base, at::full({3, 2}, n * (n - 1) / 2.0, at::kFloat)));
}

TEST_F(MpiTest, BroadcastFromEveryRoot) {
  for (int root = 0; root < comm->size(); ++root) {
    at::Tensor t = at::full({2, 2}, comm->rank() * 10.0, at::kFloat);
    comm->broadcast(t, root);
    EXPECT_TRUE(at::allclose(t, at::full({2, 2}, root * 10.0, at::kFloat))) << "root " << root;
  }
}

TEST_F(MpiTest, BroadcastShapeMismatchIsAnError) {
  at::Tensor t = at::zeros({comm->rank() == 0 ? 3 : 4}, at::kFloat);
  EXPECT_THROW(comm->broadcast(t, 0), Error);
}

TEST_F(MpiTest, AllGatherStacksByRank) {
  at::Tensor t = at::full({2}, static_cast<int64_t>(comm->rank()), at::kLong);
  at::Tensor g = comm->all_gather(t);
  ASSERT_EQ(g.sizes(), (std::vector<int64_t>{comm->size(), 2}));
  for (int r = 0; r < comm->size(); ++r) EXPECT_EQ(g[r][1].item<int64_t>(), r);
}

TEST_F(MpiTest, SplitIntoOddAndEven) {
  auto sub = comm->split(comm->rank() % 2, comm->rank());
  const int expected_size = (comm->size() + (comm->rank() % 2 == 0 ? 1 : 0)) / 2;
  EXPECT_EQ(sub->size(), expected_size);
  EXPECT_EQ(sub->rank(), comm->rank() / 2);
  at::Tensor t = at::ones({1}, at::kFloat);
  sub->all_reduce(t, ReduceOp::Sum);
  EXPECT_EQ(t.item<float>(), expected_size);
  sub->barrier();
}

TEST_F(MpiTest, CudaTensorsAreRejectedOrNcclNeedsGpu) {
  if (!nccl_available()) {
    EXPECT_THROW(make_communicator("nccl"), Error);
  }
  comm->barrier();
}

TEST_F(MpiTest, WorldMatchesCommunicator) {
  // tp = size is always valid; tp = 2 only when it divides size.
  World w = World::make(comm->rank(), comm->size(), comm->size());
  EXPECT_EQ(w.dp, 1);
  EXPECT_EQ(w.tp_rank(), comm->rank());
  if (comm->size() % 2 == 1) EXPECT_THROW(World::make(comm->rank(), comm->size(), 2), Error);
}

}  // namespace
}  // namespace atspeed

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  atspeed::mpi_initialize();
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) GTEST_FLAG_SET(brief, true);  // other ranks print only their failures
  spdlog::set_level(spdlog::level::warn);
  const int rc = RUN_ALL_TESTS();
  int any_failed = 0;
  MPI_Allreduce(&rc, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0 && any_failed && !rc) std::fprintf(stderr, "a test failed on another rank\n");
  return any_failed;
}
