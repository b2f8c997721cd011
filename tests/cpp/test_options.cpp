// Every attention option alone and in combination (option_grid, grids_options.cpp), on square and
// rectangular problems, in each dtype; every case checks the forward (out, lse) and the backward (dq, dk, dv).
#include <gtest/gtest.h>

#include "grids.hpp"
#include "test_case.hpp"

namespace flashattn::test {
namespace {

class Options : public testing::TestWithParam<Config> {};

TEST_P(Options, ForwardAndBackwardMatchReference) { run_case(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Grid, Options, testing::ValuesIn(option_grid()), ConfigName());

}  // namespace
}  // namespace flashattn::test
