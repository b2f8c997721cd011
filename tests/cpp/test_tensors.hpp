// Host tensors for the tests: storage that owns the bytes, views over it in the layouts the tests
// exercise (dense, padded, packed q/k/v, transposed), and element access through the views. CUDA cases
// give the storages device copies (device_memory.hpp) and read the results back into the host bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "flashattn/tensor.hpp"

namespace flashattn::test {

struct DeviceCopy;  // a storage's copy in CUDA device memory (device_memory.hpp)

// One allocation; several views may share it (packed q/k/v). Floating-point storage starts as NaN so
// that a read outside a view or an element left unwritten shows up.
struct Storage {
  DType dtype = DType::kFloat32;
  std::vector<std::byte> bytes;
  // CUDA cases: the copy the library reads and writes; null for CPU cases.
  std::shared_ptr<DeviceCopy> device_copy;

  std::int64_t elements() const { return static_cast<std::int64_t>(bytes.size() / dtype_size(dtype)); }
  void* at(std::int64_t offset) { return bytes.data() + offset * dtype_size(dtype); }
  const void* at(std::int64_t offset) const { return bytes.data() + offset * dtype_size(dtype); }
};

struct Tensor {
  std::shared_ptr<Storage> storage;
  TensorView view;
};

// Floating-point storage is filled with NaN, int32 storage with zeros.
std::shared_ptr<Storage> make_storage(DType dtype, std::int64_t elements);
void poison(Storage& storage);

// A view of `shape` with `strides` (elements), starting `offset` elements into `storage`.
Tensor make_view(std::shared_ptr<Storage> storage, std::int64_t offset, const std::vector<std::int64_t>& shape,
                 const std::vector<std::int64_t>& strides);
// A row-major tensor with its own storage.
Tensor make_dense(DType dtype, const std::vector<std::int64_t>& shape);
Tensor make_int32(const std::vector<std::int32_t>& values);

// Calls visit(index, offset) for every element in row-major order; offset is in elements from the
// storage's start.
void for_each_element(const TensorView& view, const std::function<void(std::int64_t, std::int64_t)>& visit);

std::vector<double> read(const Tensor& t);  // row-major values of the view
void fill_normal(const Tensor& t, std::uint64_t seed);
void fill_uniform(const Tensor& t, std::uint64_t seed, double low, double high);

// Which storage elements the views cover, to check that nothing outside them changed.
std::vector<bool> covered_elements(const Storage& storage, const std::vector<const TensorView*>& views);

// How the token tensors (q, k, v and their gradients, out, dout) lie in memory.
enum class Layout {
  kDense,
  kPadded,         // gaps after every head, token and batch
  kPaddedAligned,  // the same with gaps of 8 elements: rows stay 16-byte aligned, as the CUDA kernels need
  kPacked,         // q, k, v (and dq, dk, dv) interleaved per token in one buffer, like flash-attn's qkvpacked
  kTransposed,     // stored (batch, heads, seqlen, dim) and viewed as (batch, seqlen, heads, dim)
};
const char* layout_name(Layout layout);

// The leading dimensions of a token tensor: (batch, seqlen, ...) or, for variable length, (tokens, ...).
struct TokenShape {
  bool varlen = false;
  std::int64_t batch = 0;
  std::int64_t tokens = 0;  // seqlen per batch entry, or total tokens when varlen
};

// (heads, dim) of each tensor of a packed triple.
struct HeadShape {
  std::int64_t heads = 0;
  std::int64_t dim = 0;
};

Tensor make_token_tensor(DType dtype, TokenShape tokens, HeadShape heads, Layout layout);
// Three views interleaved per token in one storage (kPacked); the three must share TokenShape.
std::vector<Tensor> make_packed_tensors(DType dtype, TokenShape tokens, const std::vector<HeadShape>& heads);
// lse: (batch, heads, seqlen) or, varlen, (heads, total_tokens); padded for every layout but kDense.
Tensor make_lse_tensor(TokenShape tokens, std::int64_t heads, Layout layout);

// Seed derived from a string (FNV-1a), stable across platforms and runs.
std::uint64_t seed_from(const std::string& text);

}  // namespace flashattn::test
