#include "test_tensors.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>

#include "reference/reference.hpp"

namespace flashattn::test {
namespace {

// Gaps of the padded layout, in elements; odd sizes also misalign rows for vector loads.
constexpr std::int64_t kHeadPadding = 4;
constexpr std::int64_t kTokenPadding = 3;
constexpr std::int64_t kBatchPadding = 5;
constexpr std::int64_t kLsePadding = 3;
// The aligned variant: 8 elements of 16 bits are 16 bytes.
constexpr std::int64_t kAlignedPadding = 8;

constexpr std::uint64_t kFnvOffsetBasis = 14695981039346656037ull;
constexpr std::uint64_t kFnvPrime = 1099511628211ull;

std::int64_t extent_of(const std::vector<std::int64_t>& shape, const std::vector<std::int64_t>& strides) {
  std::int64_t last = 0;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 0) return 0;
    last += (shape[d] - 1) * strides[d];
  }
  return last + 1;
}

bool is_floating(DType dtype) { return dtype != DType::kInt32; }

}  // namespace

std::shared_ptr<Storage> make_storage(DType dtype, std::int64_t elements) {
  auto storage = std::make_shared<Storage>();
  storage->dtype = dtype;
  storage->bytes.resize(static_cast<std::size_t>(elements) * dtype_size(dtype));
  poison(*storage);
  return storage;
}

void poison(Storage& storage) {
  if (!is_floating(storage.dtype)) {
    std::fill(storage.bytes.begin(), storage.bytes.end(), std::byte{0});
    return;
  }
  for (std::int64_t i = 0; i < storage.elements(); ++i) {
    reference::store_element(std::numeric_limits<double>::quiet_NaN(), storage.dtype, storage.at(i));
  }
}

Tensor make_view(std::shared_ptr<Storage> storage, std::int64_t offset, const std::vector<std::int64_t>& shape,
                 const std::vector<std::int64_t>& strides) {
  if (shape.size() != strides.size() || shape.size() > static_cast<std::size_t>(kMaxRank)) {
    throw std::invalid_argument("make_view: shape and strides disagree");
  }
  if (offset + extent_of(shape, strides) > storage->elements()) throw std::invalid_argument("make_view: too small");
  Tensor t;
  t.view.data = storage->at(offset);
  t.view.dtype = storage->dtype;
  t.view.rank = static_cast<int>(shape.size());
  for (std::size_t d = 0; d < shape.size(); ++d) {
    t.view.shape[d] = shape[d];
    t.view.strides[d] = strides[d];
  }
  t.storage = std::move(storage);
  return t;
}

Tensor make_dense(DType dtype, const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> strides(shape.size());
  std::int64_t stride = 1;
  for (std::size_t d = shape.size(); d-- > 0;) {
    strides[d] = stride;
    stride *= shape[d];
  }
  return make_view(make_storage(dtype, stride), 0, shape, strides);
}

Tensor make_int32(const std::vector<std::int32_t>& values) {
  Tensor t = make_dense(DType::kInt32, {static_cast<std::int64_t>(values.size())});
  for (std::size_t i = 0; i < values.size(); ++i) static_cast<std::int32_t*>(t.view.data)[i] = values[i];
  return t;
}

void for_each_element(const TensorView& view, const std::function<void(std::int64_t, std::int64_t)>& visit) {
  if (view.numel() == 0) return;
  std::array<std::int64_t, kMaxRank> index{};
  for (std::int64_t linear = 0; linear < view.numel(); ++linear) {
    std::int64_t offset = 0;
    for (int d = 0; d < view.rank; ++d) offset += index[d] * view.strides[d];
    visit(linear, offset);
    for (int d = view.rank - 1; d >= 0; --d) {
      if (++index[d] < view.shape[d]) break;
      index[d] = 0;
    }
  }
}

std::vector<double> read(const Tensor& t) {
  std::vector<double> values(static_cast<std::size_t>(t.view.numel()));
  const auto* data = static_cast<const std::byte*>(t.view.data);
  const std::size_t size = dtype_size(t.view.dtype);
  for_each_element(t.view, [&](std::int64_t i, std::int64_t offset) {
    values[i] = reference::load_element(data + offset * size, t.view.dtype);
  });
  return values;
}

void fill_normal(const Tensor& t, std::uint64_t seed) {
  std::mt19937_64 engine(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  auto* data = static_cast<std::byte*>(t.view.data);
  const std::size_t size = dtype_size(t.view.dtype);
  for_each_element(t.view, [&](std::int64_t, std::int64_t offset) {
    reference::store_element(normal(engine), t.view.dtype, data + offset * size);
  });
}

void fill_uniform(const Tensor& t, std::uint64_t seed, double low, double high) {
  std::mt19937_64 engine(seed);
  std::uniform_real_distribution<double> uniform(low, high);
  auto* data = static_cast<std::byte*>(t.view.data);
  const std::size_t size = dtype_size(t.view.dtype);
  for_each_element(t.view, [&](std::int64_t, std::int64_t offset) {
    reference::store_element(uniform(engine), t.view.dtype, data + offset * size);
  });
}

std::vector<bool> covered_elements(const Storage& storage, const std::vector<const TensorView*>& views) {
  std::vector<bool> covered(static_cast<std::size_t>(storage.elements()), false);
  for (const TensorView* view : views) {
    const std::int64_t base = (static_cast<const std::byte*>(view->data) - storage.bytes.data()) /
                              static_cast<std::int64_t>(dtype_size(storage.dtype));
    for_each_element(*view, [&](std::int64_t, std::int64_t offset) { covered[base + offset] = true; });
  }
  return covered;
}

const char* layout_name(Layout layout) {
  switch (layout) {
    case Layout::kDense:
      return "dense";
    case Layout::kPadded:
      return "padded";
    case Layout::kPaddedAligned:
      return "padded16";
    case Layout::kPacked:
      return "packed";
    case Layout::kTransposed:
      return "transposed";
  }
  return "unknown";
}

Tensor make_token_tensor(DType dtype, TokenShape tokens, HeadShape heads, Layout layout) {
  const std::int64_t d = heads.dim, h = heads.heads, s = tokens.tokens, b = tokens.batch;
  std::vector<std::int64_t> shape = tokens.varlen ? std::vector<std::int64_t>{s, h, d} : std::vector{b, s, h, d};
  std::vector<std::int64_t> strides;
  switch (layout) {
    case Layout::kDense:
    case Layout::kPacked:  // a lone tensor of a packed problem (out, dout) is dense
      return make_dense(dtype, shape);
    case Layout::kPadded:
    case Layout::kPaddedAligned: {
      const bool aligned = layout == Layout::kPaddedAligned;
      const std::int64_t head_stride = d + (aligned ? kAlignedPadding : kHeadPadding);
      const std::int64_t token_stride = h * head_stride + (aligned ? kAlignedPadding : kTokenPadding);
      const std::int64_t batch_stride = s * token_stride + (aligned ? kAlignedPadding : kBatchPadding);
      strides = tokens.varlen ? std::vector{token_stride, head_stride, std::int64_t{1}}
                              : std::vector{batch_stride, token_stride, head_stride, std::int64_t{1}};
      break;
    }
    case Layout::kTransposed:
      strides =
          tokens.varlen ? std::vector{d, s * d, std::int64_t{1}} : std::vector{h * s * d, d, s * d, std::int64_t{1}};
      break;
  }
  return make_view(make_storage(dtype, extent_of(shape, strides)), 0, shape, strides);
}

std::vector<Tensor> make_packed_tensors(DType dtype, TokenShape tokens, const std::vector<HeadShape>& heads) {
  std::int64_t token_stride = 0;
  for (const HeadShape& hs : heads) token_stride += hs.heads * hs.dim;
  const std::int64_t batches = tokens.varlen ? 1 : tokens.batch;
  auto storage = make_storage(dtype, batches * tokens.tokens * token_stride);
  std::vector<Tensor> views;
  std::int64_t offset = 0;
  for (const HeadShape& hs : heads) {
    if (tokens.varlen) {
      views.push_back(make_view(storage, offset, {tokens.tokens, hs.heads, hs.dim}, {token_stride, hs.dim, 1}));
    } else {
      views.push_back(make_view(storage, offset, {tokens.batch, tokens.tokens, hs.heads, hs.dim},
                                {tokens.tokens * token_stride, token_stride, hs.dim, 1}));
    }
    offset += hs.heads * hs.dim;
  }
  return views;
}

Tensor make_lse_tensor(TokenShape tokens, std::int64_t heads, Layout layout) {
  if (layout == Layout::kDense) {
    return tokens.varlen ? make_dense(DType::kFloat32, {heads, tokens.tokens})
                         : make_dense(DType::kFloat32, {tokens.batch, heads, tokens.tokens});
  }
  const std::int64_t head_stride = tokens.tokens + kLsePadding;
  std::vector<std::int64_t> shape, strides;
  if (tokens.varlen) {
    shape = {heads, tokens.tokens};
    strides = {head_stride, 1};
  } else {
    shape = {tokens.batch, heads, tokens.tokens};
    strides = {heads * head_stride + kLsePadding, head_stride, 1};
  }
  return make_view(make_storage(DType::kFloat32, extent_of(shape, strides)), 0, shape, strides);
}

std::uint64_t seed_from(const std::string& text) {
  std::uint64_t hash = kFnvOffsetBasis;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= kFnvPrime;
  }
  return hash;
}

}  // namespace flashattn::test
