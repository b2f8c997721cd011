// Host side of the CUDA backend: picks the compiled kernel for the dtype and head dimension, decides on
// split-KV, takes the work buffers from the stream-ordered allocator and launches, all on the caller's
// stream. Nothing here synchronises with the device.
#include "cuda/backend.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cuda/host.hpp"
#include "cuda/launch.hpp"
#include "cuda/tiles.hpp"
#include "flashattn/errors.hpp"

namespace flashattn::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
// Split-KV: at most this many splits, and each split gets at least this many key tiles, so that the
// combine pass and the partial outputs stay small next to the work they divide.
constexpr int kMaxSplits = 128;
constexpr int kMinTilesPerSplit = 2;

// A stream-ordered fp32 work buffer: allocated and freed on the call's stream, so it works under CUDA
// graph capture and never waits for the device.
class StreamBuffer {
 public:
  StreamBuffer(std::int64_t floats, cudaStream_t stream) : stream_(stream) {
    if (floats > 0) {
      check(cudaMallocAsync(reinterpret_cast<void**>(&data_), static_cast<std::size_t>(floats) * sizeof(float), stream),
            "cudaMallocAsync (work buffer)");
    }
  }
  ~StreamBuffer() {
    if (data_ != nullptr) cudaFreeAsync(data_, stream_);
  }
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  float* data() const { return data_; }

 private:
  float* data_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

void check_supported(const detail::Problem& p, const DeviceTraits& traits) {
  if (p.dtype != DType::kFloat16 && p.dtype != DType::kBFloat16) {
    throw NotSupported(std::string("q: dtype ") + dtype_name(p.dtype) +
                       " on CUDA devices: the CUDA kernels take fp16 or bf16");
  }
  check_compute_capability(p.device.index, traits);
}

void check_layouts(const detail::Problem& p, bool backward) {
  check_alignment("q", p.q, true);
  check_alignment("k", p.k, true);
  check_alignment("v", p.v, true);
  check_alignment("out", p.out, true);
  check_alignment("dout", p.dout, backward);
  check_alignment("dq", p.dq, backward);
  check_alignment("dk", p.dk, backward);
  check_alignment("dv", p.dv, backward);
}

void fill_common(AttentionParams& a, const detail::Problem& p) {
  a.q = p.q;
  a.k = p.k;
  a.v = p.v;
  a.out = p.out;
  a.lse = p.lse;
  a.batch = static_cast<int>(p.batch);
  a.heads_q = static_cast<int>(p.heads_q);
  a.heads_kv = static_cast<int>(p.heads_kv);
  a.head_dim = static_cast<int>(p.head_dim);
  a.head_dim_v = static_cast<int>(p.head_dim_v);
  a.seqlen_q = static_cast<int>(p.seqlen_q);
  a.seqlen_k = static_cast<int>(p.seqlen_k);
  if (p.varlen) {
    a.cu_seqlens_q = p.cu_seqlens_q;
    a.cu_seqlens_k = p.cu_seqlens_k;
    a.seqused_k = p.seqused_k;
  }
  a.window_left = static_cast<int>(p.window_left);
  a.window_right = static_cast<int>(p.window_right);
  a.bottom_right = p.alignment == CausalAlignment::kBottomRight;
  a.scale = p.softmax_scale;
  a.scale_log2 = p.softmax_scale * kLog2e;
  a.softcap = p.softcap;
  a.alibi_slopes = p.alibi_slopes;
  a.alibi_batch_stride = p.alibi_batch_stride;
}

// Rows of the per-row work-buffer layout (the lse's): batched (b, h, t), variable length (h, token).
RowBuffer row_layout(const detail::Problem& p, float* data) {
  if (p.varlen) return {data, 0, p.tokens_q};
  return {data, p.heads_q * p.seqlen_q, p.seqlen_q};
}
std::int64_t row_count(const detail::Problem& p) {
  return p.varlen ? p.heads_q * p.tokens_q : p.batch * p.heads_q * p.seqlen_q;
}

// Flash-decoding: split the keys when the (query tile, head, batch) blocks would leave SMs idle.
int choose_splits(const detail::Problem& p, int head_dim, const DeviceTraits& traits) {
  const ForwardTile tile = forward_tile(head_dim);
  const std::int64_t m_blocks = (p.seqlen_q + tile.block_m() - 1) / tile.block_m();
  const std::int64_t blocks = p.batch * p.heads_q * m_blocks;
  const std::int64_t slots = static_cast<std::int64_t>(traits.multiprocessors) * tile.min_blocks_per_sm;
  if (blocks <= 0 || blocks * 5 >= slots * 4) return 1;  // 80% of one wave or more: splitting only costs
  const std::int64_t key_tiles = (p.seqlen_k + tile.block_n - 1) / tile.block_n;
  std::int64_t splits = (slots + blocks - 1) / blocks;
  splits = std::min<std::int64_t>({splits, key_tiles / kMinTilesPerSplit, kMaxSplits});
  return static_cast<int>(std::max<std::int64_t>(splits, 1));
}

template <class T>
void forward_typed(const detail::Problem& problem, int head_dim, ForwardParams& p, cudaStream_t stream) {
  switch (head_dim) {
#if defined(FLASHATTN_CUDA_HDIM_64)
    case 64:
      return launch_forward<T, 64>(p, stream);
#endif
#if defined(FLASHATTN_CUDA_HDIM_128)
    case 128:
      return launch_forward<T, 128>(p, stream);
#endif
#if defined(FLASHATTN_CUDA_HDIM_256)
    case 256:
      return launch_forward<T, 256>(p, stream);
#endif
    default:
      throw BackendError("cuda: no forward kernel for head_dim " + std::to_string(head_dim) + " of " +
                         std::to_string(problem.head_dim));
  }
}

// Which kernel family runs the forward, from the environment variable FLASHATTN_CUDA_PATH: auto (the default:
// the Hopper kernel where it applies, the portable one elsewhere), portable, or hopper (the Hopper kernel or
// NotSupported saying why not). Read at every call, so that a benchmark or a test can compare the two paths in
// one process.
enum class ForwardPath { kAuto, kPortable, kHopper };
constexpr const char* kForwardPathVariable = "FLASHATTN_CUDA_PATH";

ForwardPath requested_forward_path() {
  const char* value = std::getenv(kForwardPathVariable);
  if (value == nullptr || *value == '\0' || std::strcmp(value, "auto") == 0) return ForwardPath::kAuto;
  if (std::strcmp(value, "portable") == 0) return ForwardPath::kPortable;
  if (std::strcmp(value, "hopper") == 0) return ForwardPath::kHopper;
  throw InvalidArgument(kForwardPathVariable, std::string("'") + value + "' is not auto, portable or hopper");
}

// Why the Hopper forward cannot run this problem, or "" when it can. The rows' alignment that its tensor maps
// need is check_layouts' rule for every CUDA kernel.
std::string hopper_forward_obstacle(const detail::Problem& p, const DeviceTraits& traits) {
#if defined(FLASHATTN_CUDA_HOPPER)
  constexpr int kHopperComputeCapability = 90;
  if (traits.compute_capability != kHopperComputeCapability) {
    return "the device has compute capability " + std::to_string(traits.compute_capability / 10) + "." +
           std::to_string(traits.compute_capability % 10) + "; the Hopper kernel needs 9.0";
  }
  if (p.varlen) return "variable-length batches (cu_seqlens) run on the portable kernel";
  if (p.seqlen_k == 0) return "seqlen_k is 0";
  return "";
#else
  (void)p;
  (void)traits;
  return "this build has no sm_90a kernels (FLASHATTN_CUDA_ARCHS without 90a)";
#endif
}

template <class T>
void hopper_forward_typed(int head_dim, const ForwardParams& p, int multiprocessors, cudaStream_t stream) {
#if defined(FLASHATTN_CUDA_HOPPER)
  const bool long_sequences = p.seqlen_q >= kHopperLongTileSeqlen;
  switch (head_dim) {
#if defined(FLASHATTN_CUDA_HDIM_64)
    case 64:
      static_assert(hopper_long_tile(64), "instances/forward_hopper_*_hdim64_m192.cu hold d = 64's long tile");
      if (long_sequences) return hopper::launch_hopper_forward<T, 64, true>(p, multiprocessors, stream);
      return hopper::launch_hopper_forward<T, 64, false>(p, multiprocessors, stream);
#endif
#if defined(FLASHATTN_CUDA_HDIM_128)
    case 128:
      static_assert(!hopper_long_tile(128), "no long-sequence instance is compiled for d = 128");
      return hopper::launch_hopper_forward<T, 128, false>(p, multiprocessors, stream);
#endif
#if defined(FLASHATTN_CUDA_HDIM_256)
    case 256:
      static_assert(!hopper_long_tile(256), "no long-sequence instance is compiled for d = 256");
      return hopper::launch_hopper_forward<T, 256, false>(p, multiprocessors, stream);
#endif
    default:
      break;
  }
#endif
  (void)p;
  (void)multiprocessors;
  (void)stream;
  throw BackendError("cuda: no Hopper forward kernel for head_dim " + std::to_string(head_dim));
}

template <class T, int kHeadDim>
void backward_kernels(const detail::Problem& problem, const BackwardParams& p, std::int64_t rows, cudaStream_t stream) {
  if (rows > 0) launch_backward_prepare<T>(p, stream);
  // The key blocks write dk and dv, zeros where no query sees a key (seqlen_q = 0 included).
  if (p.seqlen_k > 0) launch_backward<T, kHeadDim>(p, !problem.deterministic, stream);
  if (rows == 0) return;
  if (problem.deterministic) {
    launch_backward_dq<T, kHeadDim>(p, stream);
  } else {
    launch_backward_dq_store<T>(p, stream);
  }
}

template <class T>
void backward_typed(const detail::Problem& problem, int head_dim, const BackwardParams& p, std::int64_t rows,
                    cudaStream_t stream) {
  switch (head_dim) {
#if defined(FLASHATTN_CUDA_HDIM_64)
    case 64:
      return backward_kernels<T, 64>(problem, p, rows, stream);
#endif
#if defined(FLASHATTN_CUDA_HDIM_128)
    case 128:
      return backward_kernels<T, 128>(problem, p, rows, stream);
#endif
#if defined(FLASHATTN_CUDA_HDIM_256)
    case 256:
      return backward_kernels<T, 256>(problem, p, rows, stream);
#endif
    default:
      throw BackendError("cuda: no backward kernel for head_dim " + std::to_string(head_dim));
  }
}

// Grid limits: batch (times splits) runs along the grid's z dimension.
constexpr std::int64_t kMaxGridZ = 65535;

void check_grid(const detail::Problem& p) {
  if (p.batch > kMaxGridZ) {
    throw NotSupported("q: batch " + std::to_string(p.batch) + " is above the CUDA kernels' limit of " +
                       std::to_string(kMaxGridZ) + " sequences per call");
  }
}

}  // namespace

void forward(const detail::Problem& problem) {
  DeviceScope scope(problem.device.index);
  const DeviceTraits traits = device_traits(problem.device.index);
  check_supported(problem, traits);
  check_layouts(problem, false);
  const int head_dim = kernel_head_dim(problem.head_dim, problem.head_dim_v);
  check_grid(problem);
  if (problem.batch == 0 || problem.seqlen_q == 0) return;  // no query rows: nothing to write
  const auto stream = static_cast<cudaStream_t>(problem.stream);

  ForwardParams p;
  fill_common(p, problem);
  p.num_splits = static_cast<int>(std::min<std::int64_t>(choose_splits(problem, head_dim, traits),
                                                         kMaxGridZ / std::max<std::int64_t>(problem.batch, 1)));
  const bool bf16 = problem.dtype == DType::kBFloat16;

  // The Hopper kernel is persistent and does not split the keys: in auto mode the problems that the portable
  // kernel would split (too few query tiles to fill the device) stay there.
  const ForwardPath path = requested_forward_path();
  if (path != ForwardPath::kPortable) {
    std::string obstacle = hopper_forward_obstacle(problem, traits);
    if (obstacle.empty() && path == ForwardPath::kAuto && p.num_splits > 1) obstacle = "split-KV";
    if (obstacle.empty()) {
      p.num_splits = 1;
      if (bf16) {
        hopper_forward_typed<__nv_bfloat16>(head_dim, p, traits.multiprocessors, stream);
      } else {
        hopper_forward_typed<__half>(head_dim, p, traits.multiprocessors, stream);
      }
      check(cudaGetLastError(), "forward launch (Hopper)");
      return;
    }
    if (path == ForwardPath::kHopper) {
      throw NotSupported(std::string("q: ") + kForwardPathVariable + "=hopper, but " + obstacle);
    }
  }
  const std::int64_t rows = row_count(problem);
  StreamBuffer partial_out(p.num_splits > 1 ? p.num_splits * rows * problem.head_dim_v : 0, stream);
  StreamBuffer partial_lse(p.num_splits > 1 ? p.num_splits * rows : 0, stream);
  if (p.num_splits > 1) {
    p.out_partial = partial_out.data();
    p.lse_partial = row_layout(problem, partial_lse.data());
    p.partial_split_stride = rows;
  }
  if (bf16) {
    forward_typed<__nv_bfloat16>(problem, head_dim, p, stream);
  } else {
    forward_typed<__half>(problem, head_dim, p, stream);
  }
  if (p.num_splits > 1) {
    if (bf16) {
      launch_combine<__nv_bfloat16>(p, stream);
    } else {
      launch_combine<__half>(p, stream);
    }
  }
  check(cudaGetLastError(), "forward launch");
}

void backward(const detail::Problem& problem) {
  DeviceScope scope(problem.device.index);
  const DeviceTraits traits = device_traits(problem.device.index);
  check_supported(problem, traits);
  check_layouts(problem, true);
  const int head_dim = kernel_head_dim(problem.head_dim, problem.head_dim_v);
  check_grid(problem);
  if (problem.batch == 0) return;
  const auto stream = static_cast<cudaStream_t>(problem.stream);

  BackwardParams p;
  fill_common(p, problem);
  p.dout = problem.dout;
  p.dq = problem.dq;
  p.dk = problem.dk;
  p.dv = problem.dv;
  p.rows_total = problem.varlen ? problem.tokens_q : problem.seqlen_q;
  const std::int64_t rows = row_count(problem);
  StreamBuffer row_values(2 * rows, stream);
  p.lse_log2 = row_layout(problem, row_values.data());
  p.dot_do_o = row_layout(problem, row_values.data() + rows);
  const std::int64_t dq_sum_floats = dq_sum_count(rows, head_dim);
  StreamBuffer dq_sums(problem.deterministic ? 0 : dq_sum_floats, stream);
  p.dq_accum = dq_sums.data();
  p.dq_accum_stride = head_dim;
  if (p.dq_accum != nullptr) {
    check(cudaMemsetAsync(p.dq_accum, 0, static_cast<std::size_t>(dq_sum_floats) * sizeof(float), stream),
          "cudaMemsetAsync (dq sums)");
  }
  const bool bf16 = problem.dtype == DType::kBFloat16;
  if (bf16) {
    backward_typed<__nv_bfloat16>(problem, head_dim, p, rows, stream);
  } else {
    backward_typed<__half>(problem, head_dim, p, rows, stream);
  }
  check(cudaGetLastError(), "backward launch");
}

const char* compiled_head_dims() { return FLASHATTN_CUDA_HEAD_DIMS_TEXT; }
const char* compiled_archs() { return FLASHATTN_CUDA_ARCHS_TEXT; }

}  // namespace flashattn::cuda
