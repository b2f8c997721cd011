// Shapes only a GPU run needs: problems of 1000 to 2048 tokens, which span many query and key tiles, and
// decoding shapes (batch 1, few heads, up to 64 queries against 4096 keys) where batch x heads x query tiles
// cannot fill the GPU, so the backend splits the keys (flash-decoding) and combines the parts. Last, the
// small grid that scripts/gpu_check.sh runs under compute-sanitizer (memcheck, racecheck).
#include <gtest/gtest.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "cuda_cases.hpp"

namespace flashattn::test {
namespace {

constexpr auto kBf16 = DType::kBFloat16;
constexpr auto kFp16 = DType::kFloat16;
constexpr auto kTopLeft = CausalAlignment::kTopLeft;
// Keys of the decoding shapes: dozens of key tiles against a single query tile.
constexpr std::int64_t kDecodeKeys = 4096;

Config varlen_case(DType dtype, const char* label, std::vector<std::pair<std::int32_t, std::int32_t>> sequences,
                   std::vector<std::int32_t> seqused_k, std::int64_t heads_q, std::int64_t heads_kv,
                   std::int64_t head_dim) {
  Config c = cuda_case(dtype, 0, 0, 0, heads_q, heads_kv, head_dim);
  c.varlen_label = label;
  c.sequences = std::move(sequences);
  c.seqused_k = std::move(seqused_k);
  return c;
}

std::vector<Config> many_tiles_grid() {
  std::vector<Config> configs;
  Config c = cuda_case(kBf16, 1, 2048, 2048, 2, 1, 128);
  c.causal = true;
  configs.push_back(c);
  c = cuda_case(kFp16, 2, 1000, 1000, 2, 2, 64);
  c.softmax_scale = 0.2f;
  configs.push_back(c);
  c = cuda_case(kBf16, 1, 1023, 1537, 4, 1, 256);
  c.window_left = 300;
  c.window_right = 100;
  c.softcap = 5.0f;
  c.alibi = Alibi::kPerBatch;
  configs.push_back(c);
  c = cuda_case(kFp16, 1, 1537, 1023, 2, 2, 96);  // more queries than keys: the top rows see no key
  c.head_dim_v = 64;
  c.causal = true;
  configs.push_back(c);
  c = cuda_case(kFp16, 1, 1500, 1500, 8, 1, 64);
  c.window_left = 256;
  c.window_right = 0;
  c.alignment = kTopLeft;
  c.alibi = Alibi::kPerHead;
  configs.push_back(c);
  c = varlen_case(kBf16, "long", {{1000, 1200}, {0, 700}, {1, 2048}, {513, 513}}, {1100, 0, 2000, 500}, 4, 2, 128);
  c.causal = true;
  configs.push_back(c);
  return configs;
}

std::vector<Config> split_kv_grid() {
  std::vector<Config> configs;
  configs.push_back(cuda_case(kBf16, 1, 1, kDecodeKeys, 4, 1, 128));
  Config c = cuda_case(kFp16, 1, 7, kDecodeKeys, 2, 2, 128);
  c.causal = true;
  configs.push_back(c);
  c = cuda_case(kBf16, 1, 64, kDecodeKeys, 4, 1, 128);
  c.window_left = 1000;
  c.window_right = 0;
  c.softcap = 3.0f;
  c.alibi = Alibi::kPerHead;
  configs.push_back(c);
  c = cuda_case(kFp16, 1, 33, kDecodeKeys, 8, 1, 64);  // top-left causal: most key splits see no key at all
  c.causal = true;
  c.alignment = kTopLeft;
  configs.push_back(c);
  c = cuda_case(kBf16, 2, 1, kDecodeKeys, 2, 2, 256);
  c.alibi = Alibi::kPerBatch;
  configs.push_back(c);
  c = cuda_case(kBf16, 1, 16, kDecodeKeys, 2, 1, 128);
  c.head_dim_v = 64;
  configs.push_back(c);
  c = varlen_case(kFp16, "decode", {{1, 4096}, {1, 3000}, {0, 100}, {5, 1}}, {4000, 3000, 50, 1}, 4, 2, 128);
  c.causal = true;
  configs.push_back(c);
  return configs;
}

// Small enough for compute-sanitizer, whose racecheck slows kernels down a hundredfold: one case of each
// kernel family (forward and backward, variable length, causal both ways, window / softcap / ALiBi, split-KV,
// padded layout, deterministic backward) at each compiled head dim.
std::vector<Config> sanitizer_grid() {
  std::vector<Config> configs;
  Config c = cuda_case(kBf16, 2, 77, 77, 4, 2, 64);
  c.causal = true;
  configs.push_back(c);
  c = cuda_case(kFp16, 1, 33, 129, 2, 1, 128);
  c.window_left = 20;
  c.window_right = 5;
  c.softcap = 2.0f;
  c.alibi = Alibi::kPerBatch;
  configs.push_back(c);
  c = varlen_case(kBf16, "sanitizer", {{5, 9}, {0, 4}, {1, 1}, {17, 0}, {33, 40}}, {4, 4, 0, 0, 30}, 4, 2, 32);
  c.head_dim_v = 64;
  c.causal = true;
  c.alignment = kTopLeft;
  configs.push_back(c);
  c = cuda_case(kFp16, 1, 1, kDecodeKeys, 4, 1, 128);
  c.causal = true;
  configs.push_back(c);
  configs.push_back(cuda_case(kBf16, 1, 16, 2048, 2, 2, 256));
  c = cuda_case(kFp16, 2, 45, 45, 2, 1, 96);
  c.layout = Layout::kPaddedAligned;
  configs.push_back(c);
  c = cuda_case(kBf16, 1, 200, 300, 8, 2, 64);
  c.deterministic = true;
  configs.push_back(c);
  // On an H100: d = 64's 192-row Hopper tile (from 1024 queries without a mask), three consumer warpgroups; enough
  // query tiles that the portable kernel would not split the keys, which would keep the call off the Hopper kernel.
  configs.push_back(cuda_case(kFp16, 3, 1100, 300, 8, 2, 64));
  // Causal: the first of the eight 128-row query tiles begins 64 rows before the sequence
  // (hopper/attention/tile_order.hpp).
  c = cuda_case(kBf16, 3, 960, 960, 8, 2, 64);
  c.causal = true;
  configs.push_back(c);
  // Causal on the 192-row tile: seven query tiles and an empty one before them, which the walk skips
  // (tile_order.hpp); each tile's first consumers give back the key tiles their rows do not see (mainloop.cuh).
  c = cuda_case(kBf16, 2, 1200, 1200, 8, 2, 64);
  c.causal = true;
  configs.push_back(c);
  // d = 256's Hopper tile: one Q buffer, freed by the last Q K^T of a tile while its output is written from registers.
  c = cuda_case(kFp16, 3, 600, 600, 8, 2, 256);
  c.causal = true;
  configs.push_back(c);
  return configs;
}

class ManyTiles : public CudaCaseTest {};
TEST_P(ManyTiles, MatchReference) { run_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Gpu, ManyTiles, testing::ValuesIn(many_tiles_grid()), ConfigName());

class SplitKv : public CudaCaseTest {};
TEST_P(SplitKv, MatchReference) { run_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Gpu, SplitKv, testing::ValuesIn(split_kv_grid()), ConfigName());

// scripts/gpu_check.sh selects these with --gtest_filter=Sanitizer/*.
class SmallCases : public CudaCaseTest {};
TEST_P(SmallCases, MatchReference) { run_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Sanitizer, SmallCases, testing::ValuesIn(sanitizer_grid()), ConfigName());

}  // namespace
}  // namespace flashattn::test
