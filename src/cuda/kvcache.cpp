// Host side of the KV-cache call on CUDA devices: checks what the kernels need beyond validation, plans the
// split of the keys, and launches append -> decode -> combine on the caller's stream. No allocation and no
// synchronisation: split runs use the caller's workspace, so the call can be captured in a CUDA graph.
#include "cuda/kvcache.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/decode/launch.hpp"
#include "cuda/host.hpp"
#include "cuda/tiles.hpp"
#include "flashattn/errors.hpp"

namespace flashattn::cuda {
namespace {

// At most this many splits, each of at least kMinTilesPerSplit key tiles: the combine's reads and the
// partial outputs stay small next to the key bytes they divide.
constexpr int kMaxSplits = 128;
constexpr std::int64_t kMinTilesPerSplit = 2;
// Accept a split count once its last wave fills this share of the SMs' block slots.
constexpr double kMinWaveFill = 0.9;
constexpr std::int64_t kMaxGridYZ = 65535;

std::int64_t row_tiles(const detail::KVCacheProblem& p) {
  return (p.group_size() * p.seqlen_q + kDecodeRows - 1) / kDecodeRows;
}

// Splits of each (sequence, KV head, row tile)'s keys. The host does not know the sequences' lengths (they
// live on the device), so it plans for a full cache; the kernel cuts each sequence's actual key range
// into that many even parts. The count is the smallest that fills the SMs' block slots in whole waves.
int plan_splits(const detail::KVCacheProblem& p, int head_dim, const DeviceTraits& traits) {
  const std::int64_t blocks = p.batch * p.heads_kv * row_tiles(p);
  if (blocks == 0) return 1;
  const std::int64_t slots =
      static_cast<std::int64_t>(traits.multiprocessors) * decode_tile(head_dim).min_blocks_per_sm;
  const std::int64_t tile_keys = decode_tile(head_dim).tile_keys();
  const std::int64_t key_tiles = (p.cache.capacity + tile_keys - 1) / tile_keys;
  const std::int64_t most = std::clamp<std::int64_t>(key_tiles / kMinTilesPerSplit, 1, kMaxSplits);
  for (std::int64_t splits = 1; splits <= most; ++splits) {
    const std::int64_t total = blocks * splits;
    const std::int64_t waves = (total + slots - 1) / slots;
    if (total >= slots * kMinWaveFill &&
        static_cast<double>(total) / static_cast<double>(waves * slots) >= kMinWaveFill) {
      return static_cast<int>(splits);
    }
  }
  return static_cast<int>(most);
}

struct Plan {
  int head_dim = 0;
  int splits = 1;
};

Plan plan(const detail::KVCacheProblem& p, const DeviceTraits& traits) {
  Plan result;
  result.head_dim = kernel_head_dim(p.head_dim, p.head_dim_v);
  if (p.num_splits > 0) {
    result.splits = std::min(p.num_splits, kMaxSplits);
  } else {
    result.splits = plan_splits(p, result.head_dim, traits);
  }
  return result;
}

void check_supported(const detail::KVCacheProblem& p, const DeviceTraits& traits) {
  if (p.dtype == detail::KVDType::kFloat32) {
    throw NotSupported("q: dtype fp32 on CUDA devices: the CUDA kernels take fp16 or bf16");
  }
  check_compute_capability(p.device_index, traits);
  check_alignment("k_cache", p.cache.k, true);
  check_alignment("v_cache", p.cache.v, true);
  check_alignment("out", p.out, true);
  if (p.batch > kMaxGridYZ || p.heads_kv > kMaxGridYZ) {
    throw NotSupported("q: batch " + std::to_string(p.batch) + " and heads_kv " + std::to_string(p.heads_kv) +
                       " must be at most " + std::to_string(kMaxGridYZ) + " on CUDA devices");
  }
}

template <class T>
void launch_all(const detail::KVCacheProblem& p, const DecodeParams& params, int head_dim, cudaStream_t stream) {
  if (p.seqlen_new > 0) launch_append<T>(p, stream);
  if (params.row_tiles == 0) return;
  switch (head_dim) {
#if defined(FLASHATTN_CUDA_HDIM_64)
    case 64:
      launch_decode<T, 64>(params, stream);
      break;
#endif
#if defined(FLASHATTN_CUDA_HDIM_128)
    case 128:
      launch_decode<T, 128>(params, stream);
      break;
#endif
#if defined(FLASHATTN_CUDA_HDIM_256)
    case 256:
      launch_decode<T, 256>(params, stream);
      break;
#endif
    default:
      throw BackendError("cuda: no decoding kernel for head_dim " + std::to_string(head_dim));
  }
  if (params.num_splits > 1) launch_combine_splits<T>(params, stream);
}

}  // namespace

std::int64_t kvcache_workspace_size(const detail::KVCacheProblem& problem) {
  DeviceScope scope(problem.device_index);
  const Plan chosen = plan(problem, device_traits(problem.device_index));
  return DecodeParams::workspace_elements(problem, chosen.splits);
}

void forward_kvcache(const detail::KVCacheProblem& problem) {
  DeviceScope scope(problem.device_index);
  const DeviceTraits traits = device_traits(problem.device_index);
  check_supported(problem, traits);
  Plan chosen = plan(problem, traits);
  const std::int64_t needed = DecodeParams::workspace_elements(problem, chosen.splits);
  if (problem.workspace == nullptr) {
    chosen.splits = 1;  // no workspace: run unsplit rather than allocate (kvcache.hpp)
  } else if (needed > problem.workspace_size) {
    throw InvalidArgument("workspace", "has " + std::to_string(problem.workspace_size) +
                                           " fp32 elements; this call needs " + std::to_string(needed) +
                                           " (kvcache_workspace_size)");
  }

  DecodeParams params;
  params.problem = problem;
  params.num_splits = chosen.splits;
  params.row_tiles = static_cast<int>(row_tiles(problem));
  if (params.num_splits > 1) {
    params.partial_rows = problem.batch * problem.heads_q * problem.seqlen_q;
    params.out_partial = problem.workspace;
    params.lse_partial = problem.workspace + params.num_splits * params.partial_rows * problem.head_dim_v;
  }
  if (problem.batch == 0) return;
  const auto stream = static_cast<cudaStream_t>(problem.stream);
  if (problem.dtype == detail::KVDType::kBFloat16) {
    launch_all<__nv_bfloat16>(problem, params, chosen.head_dim, stream);
  } else {
    launch_all<__half>(problem, params, chosen.head_dim, stream);
  }
  check(cudaGetLastError(), "kvcache launch");
}

void merge_attention_states(const detail::MergeProblem& problem) {
  DeviceScope scope(problem.device_index);
  check_compute_capability(problem.device_index, device_traits(problem.device_index));
  if (problem.batch * problem.seqlen * problem.heads == 0) return;
  launch_merge_states(problem, static_cast<cudaStream_t>(problem.stream));
  check(cudaGetLastError(), "merge_attention_states launch");
}

}  // namespace flashattn::cuda
