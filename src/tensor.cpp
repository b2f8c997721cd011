#include "flashattn/tensor.hpp"

#include <cstddef>

#include "flashattn/errors.hpp"

namespace flashattn {

std::size_t dtype_size(DType dtype) noexcept {
  switch (dtype) {
    case DType::kFloat32:
    case DType::kInt32:
      return 4;
    case DType::kFloat16:
    case DType::kBFloat16:
      return 2;
    case DType::kFloat8E4M3:
      return 1;
  }
  return 0;
}

const char* dtype_name(DType dtype) noexcept {
  switch (dtype) {
    case DType::kFloat32:
      return "fp32";
    case DType::kFloat16:
      return "fp16";
    case DType::kBFloat16:
      return "bf16";
    case DType::kFloat8E4M3:
      return "fp8_e4m3";
    case DType::kInt32:
      return "int32";
  }
  return "unknown";
}

std::string device_name(const Device& device) {
  return device.type == DeviceType::kCPU ? std::string("cpu") : "cuda:" + std::to_string(device.index);
}

TensorView TensorView::contiguous(void* data, DType dtype, std::initializer_list<std::int64_t> shape, Device device) {
  if (shape.size() > static_cast<std::size_t>(kMaxRank)) {
    throw InvalidArgument("shape", "at most " + std::to_string(kMaxRank) + " dimensions");
  }
  TensorView view;
  view.data = data;
  view.dtype = dtype;
  view.device = device;
  view.rank = static_cast<int>(shape.size());
  int d = 0;
  for (std::int64_t extent : shape) view.shape[d++] = extent;
  std::int64_t stride = 1;
  for (d = view.rank - 1; d >= 0; --d) {
    view.strides[d] = stride;
    stride *= view.shape[d];
  }
  return view;
}

TensorView TensorView::strided(void* data, DType dtype, std::initializer_list<std::int64_t> shape,
                               std::initializer_list<std::int64_t> strides, Device device) {
  if (shape.size() != strides.size()) {
    throw InvalidArgument("strides", "has " + std::to_string(strides.size()) + " entries for " +
                                         std::to_string(shape.size()) + " dimensions");
  }
  TensorView view = contiguous(data, dtype, shape, device);
  int d = 0;
  for (std::int64_t stride : strides) view.strides[d++] = stride;
  return view;
}

std::int64_t TensorView::numel() const noexcept {
  std::int64_t n = 1;
  for (int d = 0; d < rank; ++d) n *= shape[d];
  return n;
}

std::string TensorView::shape_string() const {
  std::string s = "(";
  for (int d = 0; d < rank; ++d) {
    if (d > 0) s += ", ";
    s += std::to_string(shape[d]);
  }
  if (rank == 1) s += ",";
  return s + ")";
}

}  // namespace flashattn
