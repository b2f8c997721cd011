// Variable-length batches (varlen_grid, grids_options.cpp): sequences of length 0 and 1 among longer ones,
// with and without seqused_k, tokens past the last sequence (never written), in every option family and dtype.
#include <gtest/gtest.h>

#include "grids.hpp"
#include "test_case.hpp"

namespace flashattn::test {
namespace {

class Varlen : public testing::TestWithParam<Config> {};

TEST_P(Varlen, ForwardAndBackwardMatchReference) { run_case(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Grid, Varlen, testing::ValuesIn(varlen_grid()), ConfigName());

}  // namespace
}  // namespace flashattn::test
