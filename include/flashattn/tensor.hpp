// A non-owning view of a strided tensor: pointer, dtype, device, shape and strides (in elements).
// flashattn never allocates the caller's tensors; outputs are views the caller allocated.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "flashattn/export.hpp"

namespace flashattn {

enum class DType : std::uint8_t {
  kFloat32,
  kFloat16,
  kBFloat16,
  kFloat8E4M3,  // reserved: accepted by the view, rejected by the kernels (NotSupported)
  kInt32,       // index tensors only (cu_seqlens, seqused_k)
};

FLASHATTN_API std::size_t dtype_size(DType dtype) noexcept;
FLASHATTN_API const char* dtype_name(DType dtype) noexcept;

enum class DeviceType : std::uint8_t { kCPU, kCUDA };

struct Device {
  DeviceType type = DeviceType::kCPU;
  int index = 0;  // CUDA ordinal; 0 for the CPU

  static constexpr Device cpu() { return {DeviceType::kCPU, 0}; }
  static constexpr Device cuda(int index = 0) { return {DeviceType::kCUDA, index}; }
  friend constexpr bool operator==(const Device&, const Device&) = default;
};

FLASHATTN_API std::string device_name(const Device& device);

inline constexpr int kMaxRank = 4;

struct FLASHATTN_API TensorView {
  void* data = nullptr;
  DType dtype = DType::kFloat32;
  Device device{};
  int rank = 0;
  std::array<std::int64_t, kMaxRank> shape{};
  std::array<std::int64_t, kMaxRank> strides{};  // in elements, not bytes

  // A view with row-major (C-contiguous) strides.
  static TensorView contiguous(void* data, DType dtype, std::initializer_list<std::int64_t> shape,
                               Device device = Device::cpu());
  // A view with the given strides; shape and strides must have the same length (at most kMaxRank).
  static TensorView strided(void* data, DType dtype, std::initializer_list<std::int64_t> shape,
                            std::initializer_list<std::int64_t> strides, Device device = Device::cpu());

  std::int64_t numel() const noexcept;
  bool empty() const noexcept { return data == nullptr && rank == 0; }
  std::string shape_string() const;  // "(2, 128, 16, 64)"
};

}  // namespace flashattn
