// The Hopper forward's tile scheduler divides by divisors fixed for a launch with a multiply-high and a shift
// (InvariantDivisor, src/cuda/hopper/attention/params.hpp). Its host form is the same arithmetic as the device form
// (__umulhi there, a 64-bit product here), so this checks the formula without a GPU: every quotient against integer
// division, for every divisor up to 4096 and divisors near powers of two up to 2^31 - 1, over dividends near the
// multiples of the divisor, random ones and the largest int.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "cuda/hopper/attention/params.hpp"

namespace {

using flashattn::cuda::hopper::InvariantDivisor;

std::vector<int> divisors() {
  std::vector<int> result;
  for (int d = 1; d <= 4096; ++d) result.push_back(d);
  for (int bit = 12; bit <= 30; ++bit) {
    for (int delta = -2; delta <= 2; ++delta) result.push_back((1 << bit) + delta);
  }
  result.push_back(std::numeric_limits<int>::max() - 1);
  result.push_back(std::numeric_limits<int>::max());
  return result;
}

void expect_divides(const InvariantDivisor& divisor, int n) {
  ASSERT_EQ(divisor.divide(n), n / divisor.divisor) << n << " / " << divisor.divisor;
}

TEST(HopperSchedule, InvariantDivisorMatchesIntegerDivision) {
  constexpr int kMax = std::numeric_limits<int>::max();
  std::mt19937 rng(20261127);
  std::uniform_int_distribution<int> any(0, kMax);
  for (const int d : divisors()) {
    const InvariantDivisor divisor = InvariantDivisor::of(d);
    ASSERT_EQ(divisor.divisor, d);
    for (int n = 0; n < 512; ++n) expect_divides(divisor, n);
    for (const std::int64_t k : {std::int64_t{1}, std::int64_t{2}, std::int64_t{3}, std::int64_t{kMax / d}}) {
      for (std::int64_t n = k * d - 2; n <= k * d + 2; ++n) {
        if (n >= 0 && n <= kMax) expect_divides(divisor, static_cast<int>(n));
      }
    }
    for (int i = 0; i < 64; ++i) expect_divides(divisor, any(rng));
    expect_divides(divisor, kMax);
  }
}

}  // namespace
