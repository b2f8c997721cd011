// Host-side creation of TMA tensor maps (CUtensorMap) for tiles of 16-bit elements. cuTensorMapEncodeTiled is a
// driver API function; it is looked up through the CUDA runtime (cudaGetDriverEntryPointByVersion) so that
// nothing links against libcuda: the runtime finds the driver the process already uses.
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime_api.h>

#include <array>
#include <cstdint>
#include <string>

#include "flashattn/errors.hpp"

namespace flashattn::cuda::hopper {

enum class TensorMapElement { kBFloat16, kFloat16 };
enum class TensorMapSwizzle { kNone, k32B, k64B, k128B };

inline constexpr int kTensorMapMaxRank = 4;
inline constexpr std::uint64_t kTensorMapElementBytes = 2;
// Limits of cuTensorMapEncodeTiled (CUDA driver API reference).
inline constexpr std::uint64_t kTensorMapAddressAlignment = 16;
inline constexpr std::uint64_t kTensorMapStrideAlignment = 16;
inline constexpr std::uint64_t kTensorMapMaxStrideBytes = std::uint64_t{1} << 40;
inline constexpr std::uint64_t kTensorMapMaxExtent = std::uint64_t{1} << 32;
inline constexpr std::uint32_t kTensorMapMaxBoxExtent = 256;
inline constexpr std::uint64_t kTensorMapBoxRowAlignment = 16;
// The driver ABI version of the entry point: cuTensorMapEncodeTiled appeared in CUDA 12.0 and has kept that
// signature (PFN_cuTensorMapEncodeTiled_v12000).
inline constexpr unsigned kEncodeTiledAbiVersion = 12000;

// A tensor of `rank` dimensions, each listed innermost (contiguous) first, as TMA numbers them.
struct TensorMapLayout {
  int rank = 2;
  std::array<std::uint64_t, kTensorMapMaxRank> extents{};  // elements along each dimension
  // Byte distance between consecutive indices of dimensions 1 .. rank - 1 (dimension 0 is contiguous).
  std::array<std::uint64_t, kTensorMapMaxRank - 1> strides_bytes{};
  std::array<std::uint32_t, kTensorMapMaxRank> box{};  // elements of one copy along each dimension
};

namespace detail {

inline std::uint64_t swizzle_span_bytes(TensorMapSwizzle swizzle) {
  switch (swizzle) {
    case TensorMapSwizzle::k32B:
      return 32;
    case TensorMapSwizzle::k64B:
      return 64;
    case TensorMapSwizzle::k128B:
      return 128;
    case TensorMapSwizzle::kNone:
      break;
  }
  return 0;
}

inline CUtensorMapSwizzle driver_swizzle(TensorMapSwizzle swizzle) {
  switch (swizzle) {
    case TensorMapSwizzle::k32B:
      return CU_TENSOR_MAP_SWIZZLE_32B;
    case TensorMapSwizzle::k64B:
      return CU_TENSOR_MAP_SWIZZLE_64B;
    case TensorMapSwizzle::k128B:
      return CU_TENSOR_MAP_SWIZZLE_128B;
    case TensorMapSwizzle::kNone:
      break;
  }
  return CU_TENSOR_MAP_SWIZZLE_NONE;
}

inline void require(bool condition, const std::string& rule) {
  if (!condition) throw BackendError("TMA tensor map: " + rule);
}

// Looked up once per process; a failed lookup throws and is retried by the next call.
inline PFN_cuTensorMapEncodeTiled_v12000 encode_tiled_function() {
  static const PFN_cuTensorMapEncodeTiled_v12000 function = [] {
    void* entry = nullptr;
    cudaDriverEntryPointQueryResult query = cudaDriverEntryPointSymbolNotFound;
    const cudaError_t status = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &entry,
                                                                kEncodeTiledAbiVersion, cudaEnableDefault, &query);
    if (status != cudaSuccess) {
      throw BackendError(std::string("cudaGetDriverEntryPointByVersion(cuTensorMapEncodeTiled): ") +
                         cudaGetErrorName(status) + ": " + cudaGetErrorString(status));
    }
    if (query != cudaDriverEntryPointSuccess || entry == nullptr) {
      throw BackendError(
          query == cudaDriverEntryPointVersionNotSufficent
              ? "cuTensorMapEncodeTiled: the installed CUDA driver is older than the 12.0 interface it needs"
              : "cuTensorMapEncodeTiled: not found in the installed CUDA driver");
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(entry);
  }();
  return function;
}

}  // namespace detail

// A tensor map for copies of `layout.box`-sized boxes of the tensor at `global_address`. The limits of
// cuTensorMapEncodeTiled are checked first so that a violation names the offending value; a failure of the
// driver call itself throws BackendError with its error name.
inline CUtensorMap make_tensor_map(const void* global_address, TensorMapElement element, const TensorMapLayout& layout,
                                   TensorMapSwizzle swizzle = TensorMapSwizzle::k128B) {
  using detail::require;
  const int rank = layout.rank;
  require(rank >= 1 && rank <= kTensorMapMaxRank,
          "rank " + std::to_string(rank) + " is outside 1.." + std::to_string(kTensorMapMaxRank));
  require(reinterpret_cast<std::uintptr_t>(global_address) % kTensorMapAddressAlignment == 0,
          "the global address is not 16-byte aligned");
  for (int dim = 0; dim < rank; ++dim) {
    const std::string name = "dimension " + std::to_string(dim);
    require(layout.extents[dim] >= 1 && layout.extents[dim] <= kTensorMapMaxExtent,
            name + ": extent " + std::to_string(layout.extents[dim]) + " is outside 1..2^32");
    require(layout.box[dim] >= 1 && layout.box[dim] <= kTensorMapMaxBoxExtent,
            name + ": box extent " + std::to_string(layout.box[dim]) + " is outside 1..256");
    if (dim > 0) {
      const std::uint64_t stride = layout.strides_bytes[dim - 1];
      require(stride % kTensorMapStrideAlignment == 0 && stride < kTensorMapMaxStrideBytes,
              name + ": stride " + std::to_string(stride) + " bytes is not a multiple of 16 below 2^40");
    }
  }
  const std::uint64_t box_row_bytes = layout.box[0] * kTensorMapElementBytes;
  require(box_row_bytes % kTensorMapBoxRowAlignment == 0,
          "the box's innermost extent (" + std::to_string(box_row_bytes) + " bytes) is not a multiple of 16 bytes");
  const std::uint64_t span = detail::swizzle_span_bytes(swizzle);
  require(span == 0 || box_row_bytes <= span, "the box's innermost extent (" + std::to_string(box_row_bytes) +
                                                  " bytes) exceeds the " + std::to_string(span) + "-byte swizzle span");

  std::array<cuuint64_t, kTensorMapMaxRank> extents{};
  std::array<cuuint64_t, kTensorMapMaxRank - 1> strides{};
  std::array<cuuint32_t, kTensorMapMaxRank> box{};
  std::array<cuuint32_t, kTensorMapMaxRank> element_strides{};
  for (int dim = 0; dim < rank; ++dim) {
    extents[dim] = layout.extents[dim];
    box[dim] = layout.box[dim];
    element_strides[dim] = 1;
    if (dim > 0) strides[dim - 1] = layout.strides_bytes[dim - 1];
  }
  const CUtensorMapDataType data_type =
      element == TensorMapElement::kBFloat16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  CUtensorMap tensor_map{};
  const CUresult result = detail::encode_tiled_function()(
      &tensor_map, data_type, static_cast<cuuint32_t>(rank), const_cast<void*>(global_address), extents.data(),
      strides.data(), box.data(), element_strides.data(), CU_TENSOR_MAP_INTERLEAVE_NONE,
      detail::driver_swizzle(swizzle), CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (result != CUDA_SUCCESS) {
    throw BackendError("cuTensorMapEncodeTiled failed with CUresult " + std::to_string(static_cast<int>(result)) +
                       " (rank " + std::to_string(rank) + ", box " + std::to_string(layout.box[0]) + " x " +
                       std::to_string(layout.box[1 < rank ? 1 : 0]) + ")");
  }
  return tensor_map;
}

// A row-major matrix of rows x cols elements whose rows are `row_stride` elements apart, copied in boxes of
// box_rows x box_cols.
inline CUtensorMap make_matrix_tensor_map(const void* global_address, TensorMapElement element, std::uint64_t rows,
                                          std::uint64_t cols, std::uint64_t row_stride, std::uint32_t box_rows,
                                          std::uint32_t box_cols, TensorMapSwizzle swizzle = TensorMapSwizzle::k128B) {
  TensorMapLayout layout;
  layout.rank = 2;
  layout.extents = {cols, rows, 0, 0};
  layout.strides_bytes = {row_stride * kTensorMapElementBytes, 0, 0};
  layout.box = {box_cols, box_rows, 0, 0};
  return make_tensor_map(global_address, element, layout, swizzle);
}

}  // namespace flashattn::cuda::hopper
