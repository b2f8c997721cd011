#include "buffer.hpp"

#include <cstdlib>
#include <new>
#include <utility>

namespace flashattn::cpu {
namespace {
constexpr std::size_t kAlignment = 64;  // a cache line, and the widest vector
}

FloatBuffer::FloatBuffer(std::size_t count) : size_(count) {
  if (count == 0) return;
  const std::size_t bytes = (count * sizeof(float) + kAlignment - 1) / kAlignment * kAlignment;
  data_ = static_cast<float*>(std::aligned_alloc(kAlignment, bytes));
  if (data_ == nullptr) throw std::bad_alloc();
}

FloatBuffer::FloatBuffer(FloatBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

FloatBuffer& FloatBuffer::operator=(FloatBuffer&& other) noexcept {
  std::swap(data_, other.data_);
  std::swap(size_, other.size_);
  return *this;
}

FloatBuffer::~FloatBuffer() { std::free(data_); }

}  // namespace flashattn::cpu
