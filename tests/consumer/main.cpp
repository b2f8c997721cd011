// Calls the installed library on a problem small enough to check by hand: with q = 0 every score is 0,
// so each output row is the mean of the value rows and lse = log(seqlen_k).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <flashattn/flashattn.hpp>
#include <vector>

int main() {
  constexpr std::int64_t kSeqlen = 4, kHeadDim = 8;
  constexpr double kTolerance = 1e-5;
  std::vector<float> q(kSeqlen * kHeadDim, 0.0f), k(kSeqlen * kHeadDim), v(kSeqlen * kHeadDim);
  std::vector<float> out(kSeqlen * kHeadDim), lse(kSeqlen);
  for (std::size_t i = 0; i < k.size(); ++i) {
    k[i] = static_cast<float>(i % 5);
    v[i] = static_cast<float>(i / kHeadDim);  // value row j holds j everywhere
  }
  using flashattn::DType;
  using flashattn::TensorView;
  flashattn::forward(TensorView::contiguous(q.data(), DType::kFloat32, {1, kSeqlen, 1, kHeadDim}),
                     TensorView::contiguous(k.data(), DType::kFloat32, {1, kSeqlen, 1, kHeadDim}),
                     TensorView::contiguous(v.data(), DType::kFloat32, {1, kSeqlen, 1, kHeadDim}),
                     TensorView::contiguous(out.data(), DType::kFloat32, {1, kSeqlen, 1, kHeadDim}),
                     TensorView::contiguous(lse.data(), DType::kFloat32, {1, 1, kSeqlen}));
  const double mean_row = (kSeqlen - 1) / 2.0;
  for (float x : out) {
    if (std::abs(x - mean_row) > kTolerance) {
      std::fprintf(stderr, "out %f, expected %f\n", x, mean_row);
      return 1;
    }
  }
  for (float x : lse) {
    if (std::abs(x - std::log(static_cast<double>(kSeqlen))) > kTolerance) {
      std::fprintf(stderr, "lse %f, expected log(%lld)\n", x, static_cast<long long>(kSeqlen));
      return 1;
    }
  }
  std::printf("flashattn %s: forward ok\n", FLASHATTN_VERSION);
  return 0;
}
