// Host memory for the tensors of a benchmark: dense row-major buffers of fp32, fp16 or bf16 that the
// library reads and writes through TensorViews, filled with random normal values.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>

#include "flashattn/tensor.hpp"

namespace flashattn::cli {

// Round-to-nearest-even conversions between fp32 and the 16-bit formats.
std::uint16_t float_to_half(float value) noexcept;
float half_to_float(std::uint16_t bits) noexcept;
std::uint16_t float_to_bfloat16(float value) noexcept;
float bfloat16_to_float(std::uint16_t bits) noexcept;

class HostTensor {
 public:
  // An uninitialised dense tensor; `dtype` is fp32, fp16 or bf16.
  HostTensor(DType dtype, std::initializer_list<std::int64_t> shape);

  // Fills the tensor with N(0, 1) samples rounded to its dtype. The values depend only on `seed`
  // (not on the number of threads that draw them).
  void fill_normal(std::uint64_t seed);

  // Element `flat_index` of the row-major buffer, widened to double.
  double at(std::int64_t flat_index) const;

  const TensorView& view() const { return view_; }
  std::int64_t numel() const { return view_.numel(); }

 private:
  struct FreeDeleter {
    void operator()(void* memory) const noexcept;
  };

  std::unique_ptr<void, FreeDeleter> memory_;
  TensorView view_;
};

}  // namespace flashattn::cli
