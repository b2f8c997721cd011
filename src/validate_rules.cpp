#include "validate_rules.hpp"

#include <cmath>

#include "flashattn/errors.hpp"

namespace flashattn::detail {

std::string str(std::int64_t value) { return std::to_string(value); }

[[noreturn]] void fail(const std::string& argument, const std::string& rule) { throw InvalidArgument(argument, rule); }

// Rules every tensor argument obeys: rank, non-negative extents, non-null data, non-negative strides,
// a contiguous last dimension.
void check_layout(const char* name, const TensorView& t, int rank, const char* layout) {
  if (t.rank != rank) {
    fail(name, "expected " + str(rank) + " dimensions " + layout + ", got " + str(t.rank) + " " + t.shape_string());
  }
  for (int d = 0; d < rank; ++d) {
    if (t.shape[d] < 0) fail(name, "shape " + t.shape_string() + " has a negative extent");
    if (t.strides[d] < 0) fail(name, "stride " + str(t.strides[d]) + " of dimension " + str(d) + " is negative");
  }
  if (t.shape[rank - 1] > 1 && t.strides[rank - 1] != 1) {
    fail(name, "last dimension must be contiguous (stride 1), got stride " + str(t.strides[rank - 1]));
  }
  if (t.data == nullptr && t.numel() > 0) fail(name, "data is null");
}

// Outputs must not map two elements onto one address.
void check_no_broadcast(const char* name, const TensorView& t) {
  if (t.numel() == 0) return;  // nothing to alias (and contiguous views of empty shapes have zero strides)
  for (int d = 0; d + 1 < t.rank; ++d) {
    if (t.shape[d] > 1 && t.strides[d] == 0) {
      fail(name, "stride 0 in dimension " + str(d) + " would make elements of an output share memory");
    }
  }
}

void check_shape(const char* name, const TensorView& t, std::initializer_list<std::int64_t> expected,
                 const char* layout) {
  bool same = static_cast<std::size_t>(t.rank) == expected.size();
  int d = 0;
  for (std::int64_t extent : expected) same = same && t.shape[d++] == extent;
  if (!same) {
    TensorView want = TensorView::contiguous(nullptr, t.dtype, expected);
    fail(name, "shape " + t.shape_string() + " does not match " + layout + " = " + want.shape_string());
  }
}

void check_same_dtype(const char* name, const TensorView& t, const TensorView& q) {
  if (t.dtype != q.dtype) {
    fail(name, std::string("dtype ") + dtype_name(t.dtype) + " does not match q dtype " + dtype_name(q.dtype));
  }
}

void check_same_device(const char* name, const TensorView& t, const Device& device) {
  if (!(t.device == device)) {
    fail(name, "device " + device_name(t.device) + " does not match q device " + device_name(device));
  }
}

void check_head_dim(const char* name, const char* what, std::int64_t head_dim) {
  if (head_dim <= 0 || head_dim % kHeadDimMultiple != 0 || head_dim > kMaxHeadDim) {
    fail(name, std::string(what) + " " + str(head_dim) + " must be a positive multiple of " + str(kHeadDimMultiple) +
                   " and at most " + str(kMaxHeadDim));
  }
}

void check_attention_dtype(const TensorView& q) {
  switch (q.dtype) {
    case DType::kFloat32:
    case DType::kFloat16:
    case DType::kBFloat16:
      return;
    case DType::kFloat8E4M3:
      throw NotSupported("q: dtype fp8_e4m3 is reserved; no backend supports it yet");
    case DType::kInt32:
      break;
  }
  fail("q", std::string("dtype ") + dtype_name(q.dtype) + " is not supported (fp32, fp16, bf16)");
}

void check_options(const AttentionOptions& options) {
  if (options.softmax_scale && !std::isfinite(*options.softmax_scale)) {
    fail("softmax_scale", "must be finite, got " + std::to_string(*options.softmax_scale));
  }
  if (!std::isfinite(options.softcap) || options.softcap < 0.0f) {
    fail("softcap", "must be finite and >= 0 (0 disables it), got " + std::to_string(options.softcap));
  }
  if (options.window_left < -1) fail("window_left", "must be >= -1 (-1 = unbounded), got " + str(options.window_left));
  if (options.window_right < -1) {
    fail("window_right", "must be >= -1 (-1 = unbounded), got " + str(options.window_right));
  }
  if (options.causal && options.window_right > 0) {
    fail("window_right",
         "must be 0 or -1 when causal (causal sees no key right of the diagonal), got " + str(options.window_right));
  }
  if (options.num_threads < 0)
    fail("num_threads", "must be >= 0 (0 = OpenMP default), got " + str(options.num_threads));
}

void check_index_tensor(const char* name, const TensorView& t, std::int64_t entries, const char* layout) {
  if (t.dtype != DType::kInt32) fail(name, std::string("dtype must be int32, got ") + dtype_name(t.dtype));
  check_layout(name, t, 1, layout);
  check_shape(name, t, {entries}, layout);
}

AlibiSlopes check_alibi(const TensorView& slopes, const Device& device, std::int64_t batch, std::int64_t heads_q) {
  const char* name = "alibi_slopes";
  if (slopes.dtype != DType::kFloat32) fail(name, std::string("dtype must be fp32, got ") + dtype_name(slopes.dtype));
  check_same_device(name, slopes, device);
  if (slopes.rank == 1) {
    check_layout(name, slopes, 1, "(heads_q)");
    check_shape(name, slopes, {heads_q}, "(heads_q)");
    return {static_cast<const float*>(slopes.data), 0};
  } else {
    check_layout(name, slopes, 2, "(heads_q) or (batch, heads_q)");
    check_shape(name, slopes, {batch, heads_q}, "(batch, heads_q)");
    return {static_cast<const float*>(slopes.data), slopes.strides[0]};
  }
}

TokenTensor token_tensor(const TensorView& t, bool varlen) {
  TokenTensor tt;
  tt.data = t.data;
  tt.batch_stride = varlen ? 0 : t.strides[0];
  tt.token_stride = varlen ? t.strides[0] : t.strides[1];
  tt.head_stride = varlen ? t.strides[1] : t.strides[2];
  return tt;
}

void select_backend(const AttentionOptions& options, const Device& device, const char* tensor) {
  const std::string where = std::string(tensor) + " on " + device_name(device);
  if (options.backend == Backend::kCPU && device.type != DeviceType::kCPU) {
    fail("backend", "the cpu backend needs cpu tensors, got " + where);
  }
  if (options.backend == Backend::kCUDA && device.type != DeviceType::kCUDA) {
    fail("backend", "the cuda backend needs cuda tensors, got " + where);
  }
#if !defined(FLASHATTN_WITH_CUDA)
  if (device.type == DeviceType::kCUDA) {
    throw NotSupported(std::string(tensor) + ": tensors on " + device_name(device) +
                       ": this build has no CUDA backend (built without nvcc or with -DFLASHATTN_CUDA=OFF)");
  }
#endif
}

AlibiSlopes check_call_options(const AttentionOptions& options, const Device& device, std::int64_t batch,
                               std::int64_t heads_q) {
  check_options(options);
  AlibiSlopes slopes;
  if (options.alibi_slopes) slopes = check_alibi(*options.alibi_slopes, device, batch, heads_q);
  select_backend(options, device);
  return slopes;
}

}  // namespace flashattn::detail
