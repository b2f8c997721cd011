// Host side of the KV-cache call on CUDA devices: checks what the kernels need beyond validation, plans the
// split of the keys, and launches append -> decode -> combine on the caller's stream (on Hopper, up to 8 splits
// merge in the decoding kernel's clusters instead). No allocation and no synchronisation: split runs use the
// caller's workspace, so the call can be captured in a CUDA graph.
#include "cuda/kvcache.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/decode/launch.hpp"
#include "cuda/hopper/tensor_map.hpp"
#include "cuda/host.hpp"
#include "cuda/tiles.hpp"
#include "flashattn/errors.hpp"

namespace flashattn::cuda {
namespace {

// At most kMaxDecodeSplits splits (tiles.hpp), each of at least kMinTilesPerSplit key tiles. One tile is enough
// since the combine reads the splits' states in parallel (merge.cuh): at batch 1 x 512 keys, paged, four one-tile
// splits beat two of two tiles (H100, 2026-11-26: 13.3 against 14.9 us).
constexpr std::int64_t kMinTilesPerSplit = 1;
// Contiguous caches of at most this many key tiles run unsplit: a block's few tiles cost less than the combine's
// launch (H100, 2026-11-26: batch 4 x 512 keys 13.9 us unsplit against 15.2-15.4 with 2 or 4 splits; 1 x 512
// 12.7 against 12.8-13.4). Paged ones still split: their first tile waits for its page lookups, and each tile's
// copies are eight times as many boxes (key_tiles.cuh). H100, 2026-11-27: 4 x 512 paged 14.6 us unsplit, 14.0
// with 2 splits merged in clusters.
constexpr std::int64_t kMaxUnsplitContiguousTiles = 4;
// Accept a split count once its last wave fills this share of the SMs' block slots.
constexpr double kMinWaveFill = 0.9;
// The narrow tile from this many (sequence, KV head, row tile) units per SM on (tiles.hpp: it won at 15.5 units
// per SM and lost at 3.9); below that, paged caches take the medium tile from this many (it won at 3.9).
constexpr std::int64_t kNarrowUnitsPerSM = 8;
constexpr std::int64_t kMediumUnitsPerSM = 2;
constexpr std::int64_t kMaxGridYZ = 65535;
constexpr std::uintptr_t kWorkspaceAlignBytes = 16;

std::int64_t row_tiles(const detail::KVCacheProblem& p) {
  return (p.group_size() * p.seqlen_q + kDecodeRows - 1) / kDecodeRows;
}

// The (sequence, KV head, row tile) units: one block each before the keys are split.
std::int64_t units(const detail::KVCacheProblem& p) { return p.batch * p.heads_kv * row_tiles(p); }

// Key tiles of a full cache.
std::int64_t key_tiles(const detail::KVCacheProblem& p, const DecodeTile& tile) {
  return (p.cache.capacity + tile.tile_keys() - 1) / tile.tile_keys();
}

// The kernel gives each split ceil(tiles / splits) whole tiles (SplitRange): as few splits as give the same tiles per
// split, rather than trailing splits without keys.
std::int64_t tiles_per_split(std::int64_t tiles, std::int64_t splits) { return (tiles + splits - 1) / splits; }
std::int64_t splits_with_keys(std::int64_t tiles, std::int64_t splits) {
  return (tiles + tiles_per_split(tiles, splits) - 1) / tiles_per_split(tiles, splits);
}

// Splits of each (sequence, KV head, row tile)'s keys. The host does not know the sequences' lengths (they
// live on the device), so it plans for a full cache; the kernel cuts each sequence's actual key range
// into that many even parts. The count is the smallest that gives every SM one block, in whole waves:
// one block per SM, not the two that fit, measured best (H100, d = 128, bf16, 2026-11-26: batch 2 x 128k
// keys read 2.92 TB/s with 8 splits, 128 blocks, against 2.77 with 16; batch 8 x 32k 2.95 with 2 splits
// against 2.83 with 4).
int plan_splits(const detail::KVCacheProblem& p, const DecodeTile& tile, const DeviceTraits& traits) {
  const std::int64_t blocks = units(p);
  if (blocks == 0 || p.cache.capacity == 0) return 1;
  const std::int64_t slots = traits.multiprocessors;
  const std::int64_t tiles = key_tiles(p, tile);
  if (p.cache.page_size == 0 && tiles <= kMaxUnsplitContiguousTiles) return 1;
  const std::int64_t most = std::clamp<std::int64_t>(tiles / kMinTilesPerSplit, 1, kMaxDecodeSplits);
  std::int64_t chosen = most;
  for (std::int64_t splits = 1; splits <= most; ++splits) {
    const std::int64_t total = blocks * splits;
    const std::int64_t waves = (total + slots - 1) / slots;
    if (total >= slots * kMinWaveFill &&
        static_cast<double>(total) / static_cast<double>(waves * slots) >= kMinWaveFill) {
      chosen = splits;
      break;
    }
  }
  return static_cast<int>(splits_with_keys(tiles, chosen));
}

template <class T>
DecodeKernel instance_of(int head_dim, DecodeWidth width) {
  switch (head_dim) {
#if defined(FLASHATTN_CUDA_HDIM_64)
    case 64:
      return decode_instance<T, 64, DecodeWidth::kWide>();
#endif
#if defined(FLASHATTN_CUDA_HDIM_128)
    case 128:
      switch (width) {
        case DecodeWidth::kWide:
          return decode_instance<T, 128, DecodeWidth::kWide>();
        case DecodeWidth::kMedium:
          return decode_instance<T, 128, DecodeWidth::kMedium>();
        case DecodeWidth::kNarrow:
          return decode_instance<T, 128, DecodeWidth::kNarrow>();
      }
      break;
#endif
#if defined(FLASHATTN_CUDA_HDIM_256)
    case 256:
      return decode_instance<T, 256, DecodeWidth::kWide>();
#endif
    default:
      break;
  }
  throw BackendError("cuda: no decoding kernel for head_dim " + std::to_string(head_dim));
}

// The decoding kernel of a head dim and width in the problem's dtype (fp16 for fp32, which check_supported refuses).
DecodeKernel instance_of(const detail::KVCacheProblem& p, int head_dim, DecodeWidth width) {
  return p.dtype == detail::KVDType::kBFloat16 ? instance_of<__nv_bfloat16>(head_dim, width)
                                               : instance_of<__half>(head_dim, width);
}

constexpr int kMinClusterCapability = 90;

struct Plan {
  int head_dim = 0;
  DecodeWidth width = DecodeWidth::kWide;
  int splits = 1;
  bool cluster_merge = false;  // DecodeParams::cluster_merge
  DecodeKernel kernel{};

  DecodeTile tile() const { return decode_tile(head_dim, width); }
  std::int64_t workspace_elements(const detail::KVCacheProblem& p) const {
    return DecodeParams::workspace_elements(p, splits, cluster_merge);
  }
};

// A split of the backend's choice may have this many more key tiles than planned when fewer splits then merge in
// their clusters: the combine costs about that much (H100, batch 4 x 512 keys, paged: 2 splits in clusters 14.0 us,
// 4 with the combine 15.2).
constexpr std::int64_t kClusterTileAllowance = 1;

// On Hopper splits merge in their clusters (no workspace, no combine) where a cluster holds them and the device holds
// all the clusters at once. A second wave of clusters costs more than the combine saves: an H100 holds 30 clusters
// of 4 wide blocks, not 33 (its SMs come in groups that clusters do not span), and batch 4 x 512 keys, paged, in 32
// clusters of 4 took 21.8 us against 15.3 with the combine (2026-11-27, docs/PERFORMANCE.md). Where the planned
// splits do not fit, the backend's choice falls back to the most that do, within kClusterTileAllowance.
void choose_merge(const detail::KVCacheProblem& p, Plan& plan, const DeviceTraits& traits) {
  plan.cluster_merge = false;
  if (traits.compute_capability < kMinClusterCapability || plan.splits < 2) return;
  const DecodeKernel& k = plan.kernel;
  const auto fits = [&](std::int64_t splits) {
    return splits <= kMaxClusterSplits &&
           units(p) <= max_active_clusters(k.kernel, k.threads, k.shared_bytes, static_cast<int>(splits));
  };
  if (fits(plan.splits)) {
    plan.cluster_merge = true;
    return;
  }
  if (p.num_splits > 0) return;  // the caller's count, merged by the combine
  const std::int64_t tiles = key_tiles(p, plan.tile());
  for (std::int64_t splits = std::min<std::int64_t>(plan.splits - 1, kMaxClusterSplits); splits >= 2; --splits) {
    const std::int64_t fewer = splits_with_keys(tiles, splits);
    if (!fits(fewer)) continue;
    if (tiles_per_split(tiles, fewer) <= tiles_per_split(tiles, plan.splits) + kClusterTileAllowance) {
      plan.splits = static_cast<int>(fewer);
      plan.cluster_merge = true;
    }
    return;
  }
}

Plan plan(const detail::KVCacheProblem& p, const DeviceTraits& traits) {
  Plan result;
  result.head_dim = kernel_head_dim(p.head_dim, p.head_dim_v);
  const auto differs = [&](DecodeWidth width) {
    return decode_tile(result.head_dim, width) != decode_tile(result.head_dim, DecodeWidth::kWide);
  };
  const std::int64_t per_sm = units(p) / traits.multiprocessors;
  if (differs(DecodeWidth::kNarrow) && per_sm >= kNarrowUnitsPerSM) {
    result.width = DecodeWidth::kNarrow;
  } else if (differs(DecodeWidth::kMedium) && p.cache.page_size != 0 && per_sm >= kMediumUnitsPerSM) {
    result.width = DecodeWidth::kMedium;
  }
  if (p.num_splits > 0) {
    result.splits = std::min(p.num_splits, kMaxDecodeSplits);
  } else {
    result.splits = plan_splits(p, result.tile(), traits);
  }
  result.kernel = instance_of(p, result.head_dim, result.width);
  choose_merge(p, result, traits);
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

constexpr int kMinCopyEngineCapability = 90;
// A copy-engine box starts 1024-byte aligned in shared memory (the 128-byte swizzle's period): 8 rows of 128 bytes.
constexpr std::int64_t kMinBoxRows = 8;

// The rows of one copy-engine box, or 0 where the threads must copy: before Hopper, and for paged caches whose
// key tiles would not start on page boundaries (left padding, or pages that neither divide nor are multiples of
// a tile).
int copy_engine_box_rows(const detail::KVCacheProblem& p, const DecodeTile& tile, const DeviceTraits& traits) {
  const std::int64_t tile_keys = tile.tile_keys();
  if (traits.compute_capability < kMinCopyEngineCapability || p.cache.capacity == 0 || p.cache.rows == 0) return 0;
  const std::int64_t page = p.cache.page_size;
  if (page == 0) return static_cast<int>(tile_keys);
  const bool page_divides_tile = page >= kMinBoxRows && tile_keys % page == 0;
  if (p.cache_leftpad != nullptr || !(page_divides_tile || page % tile_keys == 0)) return 0;
  return static_cast<int>(std::min(page, tile_keys));
}

// (channel, head, row, cache row or page), innermost first, boxes of box_rows x 64 channels of one head.
CUtensorMap cache_tensor_map(const detail::KVCacheProblem& p, const detail::TokenTensor& t, std::int64_t channels,
                             int box_rows) {
  constexpr std::uint32_t kBoxChannels = 64;
  const std::uint64_t element = p.dtype == detail::KVDType::kBFloat16 ? sizeof(__nv_bfloat16) : sizeof(__half);
  const std::int64_t rows_per_slot = p.cache.page_size != 0 ? p.cache.page_size : p.cache.capacity;
  hopper::TensorMapLayout layout;
  layout.rank = 4;
  layout.extents = {static_cast<std::uint64_t>(channels), static_cast<std::uint64_t>(p.heads_kv),
                    static_cast<std::uint64_t>(rows_per_slot), static_cast<std::uint64_t>(p.cache.rows)};
  layout.strides_bytes = {t.head_stride * element, t.token_stride * element, t.batch_stride * element};
  layout.box = {kBoxChannels, 1, static_cast<std::uint32_t>(box_rows), 1};
  const auto type =
      p.dtype == detail::KVDType::kBFloat16 ? hopper::TensorMapElement::kBFloat16 : hopper::TensorMapElement::kFloat16;
  return hopper::make_tensor_map(t.data, type, layout);
}

// Sets up the copy-engine path when it applies; a layout the copy engine refuses (tensor-map limits) leaves
// the threads' path, which takes any layout the validation accepts.
void choose_copies(DecodeParams& params, const DecodeTile& tile, const DeviceTraits& traits) {
  const detail::KVCacheProblem& p = params.problem;
  const int box_rows = copy_engine_box_rows(p, tile, traits);
  if (box_rows == 0) return;
  try {
    params.k_map = cache_tensor_map(p, p.cache.k, p.head_dim, box_rows);
    params.v_map = cache_tensor_map(p, p.cache.v, p.head_dim_v, box_rows);
    params.tma_box_rows = box_rows;
  } catch (const BackendError&) {
    params.tma_box_rows = 0;
  }
}

template <class T>
void launch_all(const detail::KVCacheProblem& p, const DecodeParams& params, const Plan& plan, cudaStream_t stream) {
  if (p.seqlen_new > 0) launch_append<T>(p, stream);
  if (params.row_tiles == 0) return;
  plan.kernel.launch(params, stream);
  if (params.num_splits > 1 && !params.cluster_merge) launch_combine_splits<T>(params, stream);
}

}  // namespace

std::int64_t kvcache_workspace_size(const detail::KVCacheProblem& problem) {
  DeviceScope scope(problem.device_index);
  return plan(problem, device_traits(problem.device_index)).workspace_elements(problem);
}

void forward_kvcache(const detail::KVCacheProblem& problem) {
  DeviceScope scope(problem.device_index);
  const DeviceTraits traits = device_traits(problem.device_index);
  check_supported(problem, traits);
  Plan chosen = plan(problem, traits);
  const std::int64_t needed = chosen.workspace_elements(problem);
  if (problem.workspace == nullptr) {
    // No workspace: a split that needs one runs unsplit rather than allocate (kvcache.hpp).
    if (needed > 0) chosen.splits = 1;
  } else if (reinterpret_cast<std::uintptr_t>(problem.workspace) % kWorkspaceAlignBytes != 0) {
    throw InvalidArgument("workspace", "must be 16-byte aligned: the combine reads it 16 bytes at a time");
  } else if (needed > problem.workspace_size) {
    throw InvalidArgument("workspace", "has " + std::to_string(problem.workspace_size) +
                                           " fp32 elements; this call needs " + std::to_string(needed) +
                                           " (kvcache_workspace_size)");
  }

  DecodeParams params;
  params.problem = problem;
  params.num_splits = chosen.splits;
  params.row_tiles = static_cast<int>(row_tiles(problem));
  params.cluster_merge = chosen.cluster_merge;
  if (params.num_splits > 1 && !params.cluster_merge) {
    params.partial_rows = problem.batch * problem.heads_q * problem.seqlen_q;
    params.out_partial = problem.workspace;
    params.lse_partial = problem.workspace + params.num_splits * params.partial_rows * problem.head_dim_v;
  }
  if (problem.batch == 0) return;
  choose_copies(params, chosen.tile(), traits);
  params.first_tile_at_key0 =
      problem.window_left < 0 && problem.cache_leftpad == nullptr && problem.cache.cache_batch_idx == nullptr;
  const auto stream = static_cast<cudaStream_t>(problem.stream);
  if (problem.dtype == detail::KVDType::kBFloat16) {
    launch_all<__nv_bfloat16>(problem, params, chosen, stream);
  } else {
    launch_all<__half>(problem, params, chosen, stream);
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
