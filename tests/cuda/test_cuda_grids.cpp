// The CPU backend's grids (tests/cpp/grids*.cpp) again on the GPU, in fp16 and bf16, checked against the same
// float64 reference with the same rule: odd and empty lengths, every head-dim class (the CUDA backend rounds
// head dims up to its compiled sizes), head_dim_v != head_dim, GQA / MQA, rows that see no key, every option,
// variable length with seqused_k, and non-contiguous layouts. Forward and backward in each case.
#include <gtest/gtest.h>

#include "cuda_cases.hpp"
#include "grids.hpp"

namespace flashattn::test {
namespace {

class OddLengths : public CudaCaseTest {};
TEST_P(OddLengths, MatchReference) { run_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Grid, OddLengths, testing::ValuesIn(on_cuda(odd_lengths_grid())), ConfigName());

class HeadDims : public CudaCaseTest {};
TEST_P(HeadDims, MatchReference) { run_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Grid, HeadDims, testing::ValuesIn(on_cuda(head_dims_grid())), ConfigName());

class Large : public CudaCaseTest {};
TEST_P(Large, MatchReference) { run_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Grid, Large, testing::ValuesIn(on_cuda(large_grid())), ConfigName());

class HeadGroups : public CudaCaseTest {};
TEST_P(HeadGroups, MatchReference) { run_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Grid, HeadGroups, testing::ValuesIn(on_cuda(head_groups_grid())), ConfigName());

class EmptySequences : public CudaCaseTest {};
TEST_P(EmptySequences, MatchReference) { run_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Grid, EmptySequences, testing::ValuesIn(on_cuda(empty_grid())), ConfigName());

class FullyMaskedRows : public CudaCaseTest {};
TEST_P(FullyMaskedRows, AreZeroWithInfiniteLse) {
  ASSERT_GT(fully_masked_rows(GetParam()), 0) << "the case is meant to have rows that see no key";
  run_case(GetParam());
}
INSTANTIATE_TEST_SUITE_P(Grid, FullyMaskedRows, testing::ValuesIn(on_cuda(fully_masked_grid())), ConfigName());

class Options : public CudaCaseTest {};
TEST_P(Options, ForwardAndBackwardMatchReference) { run_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Grid, Options, testing::ValuesIn(on_cuda(option_grid())), ConfigName());

class Varlen : public CudaCaseTest {};
TEST_P(Varlen, ForwardAndBackwardMatchReference) { run_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Grid, Varlen, testing::ValuesIn(on_cuda(varlen_grid())), ConfigName());

class Layouts : public CudaCaseTest {};
TEST_P(Layouts, MatchReference) { run_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Grid, Layouts, testing::ValuesIn(on_cuda(layout_grid())), ConfigName());

}  // namespace
}  // namespace flashattn::test
