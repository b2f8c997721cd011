// The backend computes in fp32 and rounds `out` once to fp16 / bf16, so every element whose exact value
// is not within the fp32 computation's error of a rounding boundary must be the correctly rounded value.
// This catches rounding-mode bugs (truncation, a wrong tie rule) that FA3's tolerance rule lets through.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "flashattn/info.hpp"
#include "test_case.hpp"

namespace flashattn::test {
namespace {

// Bound on |fp32 out before rounding - exact out| for inputs of magnitude ~1: elements whose exact
// value lies this close to a rounding boundary may round either way and are skipped.
constexpr double kFloat32ResultError = 1e-5;

testing::AssertionResult correctly_rounded(const std::vector<double>& backend, const std::vector<double>& exact,
                                           DType dtype, std::int64_t* checked) {
  for (std::size_t i = 0; i < exact.size(); ++i) {
    const float below = reference::round_to_dtype(static_cast<float>(exact[i] - kFloat32ResultError), dtype);
    const float above = reference::round_to_dtype(static_cast<float>(exact[i] + kFloat32ResultError), dtype);
    if (below != above) continue;
    ++*checked;
    if (backend[i] != below) {
      return testing::AssertionFailure() << "element " << i << ": exact " << exact[i] << " rounds to " << below
                                         << " in " << dtype_name(dtype) << ", backend wrote " << backend[i];
    }
  }
  return testing::AssertionSuccess();
}

class Rounding : public testing::TestWithParam<Config> {};

TEST_P(Rounding, OutIsCorrectlyRounded) {
  // The AMX kernels multiply bf16 probabilities (as GPU FlashAttention kernels do): their out carries that
  // rounding too, far more than kFloat32ResultError. The store's rounding itself is the same code in every
  // kernel set, checked here under the others (the avx2 / generic / avx512 test runs).
  if (GetParam().dtype == DType::kBFloat16 && build_info().cpu_isa.find("amx") != std::string::npos) {
    GTEST_SKIP() << "kernels " << build_info().cpu_isa << " round bf16 probabilities before P V";
  }
  const Instance c = make_instance(GetParam());
  call_forward(c);
  const auto exact =
      reference::forward(c.q.view, c.k.view, c.v.view, c.options, c.varlen(), reference::Precision::kFloat64);
  std::int64_t checked = 0;
  EXPECT_TRUE(correctly_rounded(read(c.out), exact.out, GetParam().dtype, &checked));
  // Most elements are far from a boundary; make sure the test looked at them.
  EXPECT_GT(checked, c.out.view.numel() / 2);
}

std::vector<Config> rounding_grid() {
  std::vector<Config> configs;
  for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    Config c;
    c.dtype = dtype;
    c.seqlen_q = 37;
    c.seqlen_k = 53;
    c.heads_q = 4;
    c.heads_kv = 2;
    c.head_dim = 64;
    c.head_dim_v = 64;
    c.backward = false;
    configs.push_back(c);
    c.causal = true;
    c.softcap = 2.0f;
    c.alibi = Alibi::kPerHead;
    configs.push_back(c);
    c.sequences = {{20, 31}, {1, 1}, {3, 0}};
    c.varlen_label = "rounding";
    configs.push_back(c);
  }
  return configs;
}

INSTANTIATE_TEST_SUITE_P(Grid, Rounding, testing::ValuesIn(rounding_grid()), ConfigName());

}  // namespace
}  // namespace flashattn::test
