// Errors, World, the local communicator and the tree-attention mask reference.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>

#include "core/dist/communicator.h"
#include "core/dist/world.h"
#include "core/errors.h"
#include "kernels/tree_mask.h"

namespace atspeed {
namespace {

TEST(ErrorsTest, CheckMacrosCarryKindAndLocation) {
  try {
    ATSPEED_ENSURE(Data, 1 + 1 == 3, "bad value ", 42, " in ", "file.txt");
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_EQ(exit_code(e.kind()), 4);
    EXPECT_EQ(e.message(), "bad value 42 in file.txt");
    EXPECT_NE(std::string(e.what()).find("tests/unit/test_foundation.cpp:"), std::string::npos) << e.what();
  }
  try {
    ATSPEED_CHECK(false, "invariant");
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Internal);
    EXPECT_NE(e.message().find("check failed: false: invariant"), std::string::npos);
  }
  EXPECT_NO_THROW(ATSPEED_CHECK(true));
}

TEST(WorldTest, TopologyAndValidation) {
  World w = World::make(5, 8, 2);
  EXPECT_EQ(w.dp, 4);
  EXPECT_EQ(w.tp_rank(), 1);
  EXPECT_EQ(w.dp_rank(), 2);
  EXPECT_FALSE(w.is_root());
  EXPECT_EQ(World::make(0, 1, 1), (World{0, 1, 1, 1}));
  EXPECT_THROW(World::make(0, 3, 2), Error);   // tp does not divide size
  EXPECT_THROW(World::make(3, 3, 1), Error);   // rank out of range
  EXPECT_THROW(World::make(0, 0, 1), Error);
  EXPECT_THROW(World::make(0, 2, 0), Error);
  World bad{0, 4, 2, 3};
  EXPECT_THROW(bad.validate(), Error);
  // Every rank of a 6-process world with tp=3 lands in exactly one (dp, tp) cell.
  std::set<std::pair<int, int>> cells;
  for (int r = 0; r < 6; ++r) {
    World x = World::make(r, 6, 3);
    cells.insert({x.dp_rank(), x.tp_rank()});
  }
  EXPECT_EQ(cells.size(), 6u);
}

TEST(LocalCommunicatorTest, CollectivesAreIdentities) {
  auto comm = make_communicator("local");
  EXPECT_EQ(comm->size(), 1);
  at::Tensor t = at::arange(4, at::kFloat);
  comm->all_reduce(t, ReduceOp::Avg);
  EXPECT_TRUE(at::equal(t, at::arange(4, at::kFloat)));
  comm->broadcast(t, 0);
  EXPECT_THROW(comm->broadcast(t, 1), Error);
  at::Tensor g = comm->all_gather(t);
  EXPECT_EQ(g.sizes(), (std::vector<int64_t>{1, 4}));
  at::Tensor i = at::ones({2}, at::kLong);
  EXPECT_THROW(comm->all_reduce(i, ReduceOp::Avg), Error);
  EXPECT_EQ(comm->split(0, 0)->size(), 1);
  EXPECT_THROW(make_communicator("carrier-pigeon"), Error);
}

// SPEC §3.3 worked example: prompt 0-4 (L=5); level-1 u0..u2; level-2 v0..v2 with parents
// v0->u1, v1->u1, v2->u0. The row of v0 attends to {0..4, u1, v0}.
TEST(TreeMaskTest, SpecWorkedExample) {
  at::Tensor parents = at::tensor({-1, -1, -1, 1, 1, 0}, at::kLong).unsqueeze(0);
  at::Tensor lens = at::tensor({5}, at::kLong);
  at::Tensor mask = kernels::tree_attention_mask(parents, lens, 5, at::kFloat);
  ASSERT_EQ(mask.sizes(), (std::vector<int64_t>{1, 6, 11}));
  at::Tensor allowed = mask[0].eq(0);
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(mask[0][0][6].item<float>(), -inf);
  auto row = [&](int i) {
    std::vector<int> cols;
    for (int c = 0; c < 11; ++c)
      if (allowed[i][c].item<bool>()) cols.push_back(c);
    return cols;
  };
  EXPECT_EQ(row(3), (std::vector<int>{0, 1, 2, 3, 4, 6, 8}));   // v0: prompt, u1, itself
  EXPECT_EQ(row(5), (std::vector<int>{0, 1, 2, 3, 4, 5, 10}));  // v2: prompt, u0, itself
  EXPECT_EQ(row(1), (std::vector<int>{0, 1, 2, 3, 4, 6}));      // u1: prompt, itself
}

TEST(TreeMaskTest, PerRequestPrefixLengthsAndBadParents) {
  at::Tensor parents = at::tensor({-1, 0, -1, -1}, at::kLong).reshape({2, 2});
  at::Tensor lens = at::tensor({3, 1}, at::kLong);
  at::Tensor mask = kernels::tree_attention_mask(parents, lens, 3, at::kFloat).eq(0);
  EXPECT_EQ(mask[0][1].sum().item<int64_t>(), 3 + 2);  // 3 prefix slots, parent, itself
  EXPECT_EQ(mask[1][1].sum().item<int64_t>(), 1 + 1);  // only one prefix slot visible
  EXPECT_FALSE(mask[1][0][2].item<bool>());
  EXPECT_THROW(kernels::tree_attention_mask(at::tensor({0}, at::kLong).unsqueeze(0), at::tensor({1}, at::kLong), 1, at::kFloat),
               std::invalid_argument);
  EXPECT_THROW(kernels::tree_attention_mask(parents, at::tensor({4, 1}, at::kLong), 3, at::kFloat), std::invalid_argument);
}

}  // namespace
}  // namespace atspeed
