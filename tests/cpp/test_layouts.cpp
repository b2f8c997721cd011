// Memory layouts (layout_grid, grids_options.cpp: padded, packed q/k/v, transposed storage), thread counts,
// bitwise determinism, and the instruction set the CPU kernels run with (ctest runs the grids again for each,
// see tests/CMakeLists.txt).
#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "grids.hpp"
#include "test_case.hpp"

namespace flashattn::test {
namespace {

std::vector<Config> thread_grid() {
  std::vector<Config> configs;
  for (int threads : {1, 2}) {
    Config a;
    a.num_threads = threads;
    a.batch = 2;
    a.seqlen_q = 113;
    a.seqlen_k = 113;
    a.heads_q = 4;
    a.heads_kv = 1;
    a.head_dim = 64;
    a.head_dim_v = 64;
    a.causal = true;
    configs.push_back(a);

    Config b = a;
    b.dtype = DType::kBFloat16;
    b.batch = 3;
    b.seqlen_q = 65;
    b.seqlen_k = 130;
    b.causal = false;
    b.window_left = 20;
    b.window_right = 5;
    b.alibi = Alibi::kPerBatch;
    configs.push_back(b);

    Config c = a;
    c.dtype = DType::kFloat16;
    c.sequences = {{40, 70}, {0, 3}, {1, 1}, {90, 60}};
    c.seqused_k = {50, 3, 0, 60};
    c.varlen_label = "threads";
    c.softcap = 1.5f;
    configs.push_back(c);
  }
  return configs;
}

class Layouts : public testing::TestWithParam<Config> {};
TEST_P(Layouts, MatchReference) { run_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Grid, Layouts, testing::ValuesIn(layout_grid()), ConfigName());

class Threads : public testing::TestWithParam<Config> {};
TEST_P(Threads, MatchReference) { run_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Grid, Threads, testing::ValuesIn(thread_grid()), ConfigName());

// The CPU backend promises bitwise reproducible results: the same call twice gives the same bits.
class Determinism : public testing::TestWithParam<Config> {};

TEST_P(Determinism, SameInputsGiveSameBits) {
  const Instance c = make_instance(GetParam());
  const std::vector<const Tensor*> outputs = {&c.out, &c.lse, &c.dq, &c.dk, &c.dv};
  std::vector<std::vector<std::uint64_t>> first;
  for (int run = 0; run < 2; ++run) {
    reset_outputs(c);
    call_forward(c);
    call_backward(c);
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      if (run == 0) {
        first.push_back(bits_of(*outputs[i]));
      } else {
        EXPECT_EQ(bits_of(*outputs[i]), first[i]) << "output " << i << " (out, lse, dq, dk, dv) changed";
      }
    }
  }
}

std::vector<Config> determinism_grid() {
  std::vector<Config> configs = thread_grid();
  Config gqa;
  gqa.dtype = DType::kFloat16;
  gqa.seqlen_q = 77;
  gqa.seqlen_k = 77;
  gqa.heads_q = 8;
  gqa.heads_kv = 1;
  gqa.softcap = 3.0f;
  gqa.window_left = 16;
  configs.push_back(gqa);
  return configs;
}

INSTANTIATE_TEST_SUITE_P(Grid, Determinism, testing::ValuesIn(determinism_grid()), ConfigName());

// FLASHATTN_CPU_ISA picks the kernels; a machine without the requested instruction set falls back to the
// generic ones. Either way the grids must have run with the kernels the name says. Unset, the kernels are
// one of the sets the machine picks by itself (never the emulated one).
TEST(CpuIsa, HonoursRequest) {
  const std::string isa = build_info().cpu_isa;
  std::cout << "CPU kernels: " << isa << "\n";
  const char* requested = std::getenv("FLASHATTN_CPU_ISA");
  if (requested == nullptr) {
    EXPECT_TRUE(isa == "avx512-amx" || isa == "avx512" || isa == "avx2" || isa == "generic") << isa;
    return;
  }
  EXPECT_TRUE(isa == requested || isa == "generic") << "asked for " << requested << ", got " << isa;
}

}  // namespace
}  // namespace flashattn::test
