// Problem shapes (grids_shapes.cpp): odd sequence lengths both ways, empty sequences, every head-dim class,
// head_dim_v != head_dim, GQA / MQA, and rows that see no key. Forward and backward in each case.
#include <gtest/gtest.h>

#include "grids.hpp"
#include "test_case.hpp"

namespace flashattn::test {
namespace {

class OddLengths : public testing::TestWithParam<Config> {};
TEST_P(OddLengths, MatchReference) { run_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Grid, OddLengths, testing::ValuesIn(odd_lengths_grid()), ConfigName());

class HeadDims : public testing::TestWithParam<Config> {};
TEST_P(HeadDims, MatchReference) { run_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Grid, HeadDims, testing::ValuesIn(head_dims_grid()), ConfigName());

class Large : public testing::TestWithParam<Config> {};
TEST_P(Large, MatchReference) { run_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Grid, Large, testing::ValuesIn(large_grid()), ConfigName());

class HeadGroups : public testing::TestWithParam<Config> {};
TEST_P(HeadGroups, MatchReference) { run_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Grid, HeadGroups, testing::ValuesIn(head_groups_grid()), ConfigName());

class EmptySequences : public testing::TestWithParam<Config> {};
TEST_P(EmptySequences, MatchReference) { run_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Grid, EmptySequences, testing::ValuesIn(empty_grid()), ConfigName());

class FullyMaskedRows : public testing::TestWithParam<Config> {};
TEST_P(FullyMaskedRows, AreZeroWithInfiniteLse) {
  ASSERT_GT(fully_masked_rows(GetParam()), 0) << "the case is meant to have rows that see no key";
  run_case(GetParam());
}
INSTANTIATE_TEST_SUITE_P(Grid, FullyMaskedRows, testing::ValuesIn(fully_masked_grid()), ConfigName());

}  // namespace
}  // namespace flashattn::test
