// flashattn._ext: the library's calls (forward, backward, the KV cache's) on DLPack arrays (NumPy, PyTorch, CuPy),
// zero-copy. The Python package (python/flashattn) allocates outputs in the caller's framework and passes
// the caller's current CUDA stream; this module only turns arrays into TensorViews and calls the library.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>

#include "flashattn/flashattn.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using flashattn::DType;
using flashattn::InvalidArgument;
using flashattn::TensorView;

// Inputs may be read-only (a NumPy broadcast view, say); outputs must be writable.
using InArray = nb::ndarray<nb::ro>;
using OutArray = nb::ndarray<>;
using OptionalIn = std::optional<InArray>;

// DLPack device types (dlpack.h): the ones whose memory the CPU or a CUDA device can address.
constexpr int kDLCPU = 1;
constexpr int kDLCUDA = 2;
constexpr int kDLCUDAHost = 3;  // pinned host memory
constexpr int kDLCUDAManaged = 13;
// DLPack 1.1's float8 e4m3fn dtype code, as a number: nanobind < 2.2 has no name for it.
constexpr std::uint8_t kDLFloat8E4M3FN = 10;

std::string dlpack_dtype_name(nb::dlpack::dtype dtype) {
  using Code = nb::dlpack::dtype_code;
  std::string kind;
  switch (static_cast<Code>(dtype.code)) {
    case Code::Int:
      kind = "int";
      break;
    case Code::UInt:
      kind = "uint";
      break;
    case Code::Float:
      kind = "float";
      break;
    case Code::Bfloat:
      kind = "bfloat";
      break;
    case Code::Bool:
      return "bool";
    default:
      kind = "dlpack code " + std::to_string(dtype.code) + " bits ";
  }
  return kind + std::to_string(dtype.bits) + (dtype.lanes != 1 ? " x" + std::to_string(dtype.lanes) : "");
}

// NumPy has no DLPack code for ml_dtypes' bfloat16 and float8 types: the Python layer passes such arrays
// as unsigned integers of the same width and names, in `bits_dtype`, the type whose bits they hold.
std::optional<DType> parse_bits_dtype(const std::string& bits_dtype) {
  if (bits_dtype.empty()) return std::nullopt;
  if (bits_dtype == "bf16") return DType::kBFloat16;
  if (bits_dtype == "fp8_e4m3") return DType::kFloat8E4M3;
  throw InvalidArgument("bits_dtype", "must be '', 'bf16' or 'fp8_e4m3', got '" + bits_dtype + "'");
}

DType to_dtype(nb::dlpack::dtype dtype, const char* name, std::optional<DType> bits_dtype) {
  using Code = nb::dlpack::dtype_code;
  const auto code = static_cast<Code>(dtype.code);
  if (dtype.lanes == 1) {
    if (code == Code::Float && dtype.bits == 32) return DType::kFloat32;
    if (code == Code::Float && dtype.bits == 16) return DType::kFloat16;
    if (code == Code::Bfloat && dtype.bits == 16) return DType::kBFloat16;
    if (dtype.code == kDLFloat8E4M3FN && dtype.bits == 8) return DType::kFloat8E4M3;
    if (code == Code::Int && dtype.bits == 32) return DType::kInt32;
    if (code == Code::UInt && bits_dtype && dtype.bits == 8 * flashattn::dtype_size(*bits_dtype)) return *bits_dtype;
  }
  throw InvalidArgument(
      name, "dtype " + dlpack_dtype_name(dtype) +
                " is not supported (fp32, fp16 or bf16; int32 for cu_seqlens, seqused_k and the KV cache's indices)");
}

flashattn::Device to_device(int device_type, int device_id, const char* name) {
  switch (device_type) {
    case kDLCPU:
    case kDLCUDAHost:
      return flashattn::Device::cpu();
    case kDLCUDA:
    case kDLCUDAManaged:
      return flashattn::Device::cuda(device_id);
    default:
      throw InvalidArgument(
          name, "DLPack device type " + std::to_string(device_type) + " is not supported (CPU or CUDA memory only)");
  }
}

template <typename Array>
TensorView to_view(const Array& array, const char* name, std::optional<DType> bits_dtype = std::nullopt) {
  const int rank = static_cast<int>(array.ndim());
  if (rank > flashattn::kMaxRank) {
    throw InvalidArgument(name, "has " + std::to_string(rank) + " dimensions, at most " +
                                    std::to_string(flashattn::kMaxRank) + " are supported");
  }
  TensorView view;
  view.data = const_cast<void*>(static_cast<const void*>(array.data()));
  view.dtype = to_dtype(array.dtype(), name, bits_dtype);
  view.device = to_device(array.device_type(), array.device_id(), name);
  view.rank = rank;
  for (int d = 0; d < rank; ++d) {
    view.shape[d] = static_cast<std::int64_t>(array.shape(d));
    view.strides[d] = array.stride(d);  // nanobind reports strides in elements, as TensorView counts them
  }
  if (array.size() == 0) {
    // An empty array addresses nothing, and NumPy reports its strides as zeros, which the library's
    // layout rules refuse: give it row-major strides.
    std::int64_t stride = 1;
    for (int d = rank - 1; d >= 0; --d) {
      view.strides[d] = stride;
      stride *= std::max<std::int64_t>(view.shape[d], 1);
    }
  }
  return view;
}

std::optional<TensorView> to_optional_view(const OptionalIn& array, const char* name,
                                           std::optional<DType> bits_dtype = std::nullopt) {
  if (!array) return std::nullopt;
  return to_view(*array, name, bits_dtype);
}

// The options every call shares, as the Python layer passes them.
struct CallOptions {
  OptionalIn alibi_slopes;
  std::optional<float> softmax_scale;
  bool causal = false;
  std::string causal_alignment;
  int window_left = -1;
  int window_right = -1;
  float softcap = 0.0f;
  bool deterministic = false;
  int num_threads = 0;
  std::uintptr_t stream = 0;

  flashattn::AttentionOptions to_library() const {
    flashattn::AttentionOptions options;
    options.softmax_scale = softmax_scale;
    options.causal = causal;
    if (causal_alignment == "bottom_right") {
      options.causal_alignment = flashattn::CausalAlignment::kBottomRight;
    } else if (causal_alignment == "top_left") {
      options.causal_alignment = flashattn::CausalAlignment::kTopLeft;
    } else {
      throw InvalidArgument(
          "causal_alignment",
          "must be 'bottom_right' (flash-attn) or 'top_left' (PyTorch is_causal), got '" + causal_alignment + "'");
    }
    options.window_left = window_left;
    options.window_right = window_right;
    options.softcap = softcap;
    options.alibi_slopes = to_optional_view(alibi_slopes, "alibi_slopes");
    options.deterministic = deterministic;
    options.num_threads = num_threads;
    options.stream = reinterpret_cast<void*>(stream);
    return options;
  }
};

// The variable-length arguments; empty for batched layouts.
struct VarlenArgs {
  OptionalIn cu_seqlens_q;
  OptionalIn cu_seqlens_k;
  OptionalIn seqused_k;
  std::int64_t max_seqlen_q = 0;
  std::int64_t max_seqlen_k = 0;

  std::optional<flashattn::VarlenSeqlens> to_library() const {
    if (!cu_seqlens_q && !cu_seqlens_k) {
      if (seqused_k) {
        throw InvalidArgument("seqused_k", "needs the variable-length layout (cu_seqlens_q and cu_seqlens_k)");
      }
      return std::nullopt;
    }
    if (!cu_seqlens_q) throw InvalidArgument("cu_seqlens_q", "is required when cu_seqlens_k is given");
    if (!cu_seqlens_k) throw InvalidArgument("cu_seqlens_k", "is required when cu_seqlens_q is given");
    flashattn::VarlenSeqlens seqlens;
    seqlens.cu_seqlens_q = to_view(*cu_seqlens_q, "cu_seqlens_q");
    seqlens.cu_seqlens_k = to_view(*cu_seqlens_k, "cu_seqlens_k");
    seqlens.seqused_k = to_optional_view(seqused_k, "seqused_k");
    seqlens.max_seqlen_q = max_seqlen_q;
    seqlens.max_seqlen_k = max_seqlen_k;
    return seqlens;
  }
};

void forward(const InArray& q, const InArray& k, const InArray& v, const OutArray& out, const OutArray& lse,
             const VarlenArgs& varlen_args, const CallOptions& call_options, const std::string& bits_dtype) {
  const std::optional<DType> bits = parse_bits_dtype(bits_dtype);
  const TensorView q_view = to_view(q, "q", bits), k_view = to_view(k, "k", bits), v_view = to_view(v, "v", bits);
  const TensorView out_view = to_view(out, "out", bits), lse_view = to_view(lse, "softmax_lse");
  const std::optional<flashattn::VarlenSeqlens> varlen = varlen_args.to_library();
  const flashattn::AttentionOptions options = call_options.to_library();
  // The views hold no Python objects: other Python threads may run while the kernels do.
  nb::gil_scoped_release no_gil;
  if (varlen) {
    flashattn::forward_varlen(q_view, k_view, v_view, out_view, lse_view, *varlen, options);
  } else {
    flashattn::forward(q_view, k_view, v_view, out_view, lse_view, options);
  }
}

void backward(const InArray& dout, const InArray& q, const InArray& k, const InArray& v, const InArray& out,
              const InArray& lse, const OutArray& dq, const OutArray& dk, const OutArray& dv,
              const VarlenArgs& varlen_args, const CallOptions& call_options, const std::string& bits_dtype) {
  const std::optional<DType> bits = parse_bits_dtype(bits_dtype);
  const TensorView dout_view = to_view(dout, "dout", bits), q_view = to_view(q, "q", bits);
  const TensorView k_view = to_view(k, "k", bits), v_view = to_view(v, "v", bits);
  const TensorView out_view = to_view(out, "out", bits), lse_view = to_view(lse, "softmax_lse");
  const TensorView dq_view = to_view(dq, "dq", bits), dk_view = to_view(dk, "dk", bits);
  const TensorView dv_view = to_view(dv, "dv", bits);
  const std::optional<flashattn::VarlenSeqlens> varlen = varlen_args.to_library();
  const flashattn::AttentionOptions options = call_options.to_library();
  nb::gil_scoped_release no_gil;
  if (varlen) {
    flashattn::backward_varlen(q_view, k_view, v_view, out_view, dout_view, lse_view, dq_view, dk_view, dv_view,
                               *varlen, options);
  } else {
    flashattn::backward(q_view, k_view, v_view, out_view, dout_view, lse_view, dq_view, dk_view, dv_view, options);
  }
}

// The KV cache's tensors and the split schedule, as the Python layer passes them.
// The caches are written only when k and v are given: they are taken read-only (a NumPy array that is not
// writable can be attended to), and the Python layer refuses read-only caches with k and v.
struct KVCacheArgs {
  InArray k_cache;
  InArray v_cache;
  InArray cache_seqlens;
  OptionalIn k_new;
  OptionalIn v_new;
  OptionalIn cache_batch_idx;
  OptionalIn cache_leftpad;
  OptionalIn block_table;
  OptionalIn rotary_cos;
  OptionalIn rotary_sin;
  bool rotary_interleaved = false;
  int num_splits = 0;

  flashattn::KVCache to_library(std::optional<DType> bits) const {
    flashattn::KVCache cache;
    cache.k_cache = to_view(k_cache, "k_cache", bits);
    cache.v_cache = to_view(v_cache, "v_cache", bits);
    cache.cache_seqlens = to_view(cache_seqlens, "cache_seqlens");
    cache.k_new = to_optional_view(k_new, "k", bits);
    cache.v_new = to_optional_view(v_new, "v", bits);
    cache.cache_batch_idx = to_optional_view(cache_batch_idx, "cache_batch_idx");
    cache.cache_leftpad = to_optional_view(cache_leftpad, "cache_leftpad");
    cache.block_table = to_optional_view(block_table, "block_table");
    cache.rotary_cos = to_optional_view(rotary_cos, "rotary_cos", bits);
    cache.rotary_sin = to_optional_view(rotary_sin, "rotary_sin", bits);
    cache.rotary_interleaved = rotary_interleaved;
    return cache;
  }
};

std::int64_t kvcache_workspace_size(const InArray& q, const KVCacheArgs& cache_args, const CallOptions& call_options,
                                    const std::string& bits_dtype) {
  const std::optional<DType> bits = parse_bits_dtype(bits_dtype);
  const TensorView q_view = to_view(q, "q", bits);
  const flashattn::KVCache cache = cache_args.to_library(bits);
  flashattn::KVCacheSchedule schedule;
  schedule.num_splits = cache_args.num_splits;
  return flashattn::kvcache_workspace_size(q_view, cache, call_options.to_library(), schedule);
}

void forward_kvcache(const InArray& q, const KVCacheArgs& cache_args, const OutArray& out, const OutArray& lse,
                     const OptionalIn& workspace, const CallOptions& call_options, const std::string& bits_dtype) {
  const std::optional<DType> bits = parse_bits_dtype(bits_dtype);
  const TensorView q_view = to_view(q, "q", bits);
  const flashattn::KVCache cache = cache_args.to_library(bits);
  const TensorView out_view = to_view(out, "out", bits), lse_view = to_view(lse, "softmax_lse");
  flashattn::KVCacheSchedule schedule;
  schedule.num_splits = cache_args.num_splits;
  schedule.workspace = to_optional_view(workspace, "workspace");
  const flashattn::AttentionOptions options = call_options.to_library();
  nb::gil_scoped_release no_gil;
  flashattn::forward_kvcache(q_view, cache, out_view, lse_view, options, schedule);
}

// Each of out_a, out_b and out may have its own dtype, so each has its own `bits_dtype` (NumPy bf16).
void merge_attention_states(const InArray& out_a, const InArray& lse_a, const InArray& out_b, const InArray& lse_b,
                            const OutArray& out, const OutArray& lse, int num_threads, std::uintptr_t stream,
                            const std::string& bits_dtype_a, const std::string& bits_dtype_b,
                            const std::string& bits_dtype_out) {
  const TensorView out_a_view = to_view(out_a, "out_a", parse_bits_dtype(bits_dtype_a));
  const TensorView out_b_view = to_view(out_b, "out_b", parse_bits_dtype(bits_dtype_b));
  const TensorView out_view = to_view(out, "out", parse_bits_dtype(bits_dtype_out));
  const TensorView lse_a_view = to_view(lse_a, "lse_a"), lse_b_view = to_view(lse_b, "lse_b");
  const TensorView lse_view = to_view(lse, "lse");
  flashattn::AttentionOptions options;
  options.num_threads = num_threads;
  options.stream = reinterpret_cast<void*>(stream);
  nb::gil_scoped_release no_gil;
  flashattn::merge_attention_states(out_a_view, lse_a_view, out_b_view, lse_b_view, out_view, lse_view, options);
}

nb::dict build_info() {
  const flashattn::BuildInfo info = flashattn::build_info();
  nb::dict result;
  result["version"] = info.version;
  result["cpu_backend"] = info.cpu_backend;
  result["cuda_compiled"] = info.cuda_compiled;
  result["cuda_kernels"] = info.cuda_kernels;
  result["cuda_archs"] = info.cuda_archs;
  result["cuda_head_dims"] = info.cuda_head_dims;
  result["cuda_path"] = info.cuda_path;
  result["cpu_isa"] = info.cpu_isa;
  result["cpu_threads"] = info.cpu_threads;
  return result;
}

nb::list cuda_devices() {
  nb::list result;
  for (const flashattn::CudaDeviceInfo& device : flashattn::cuda_devices()) {
    nb::dict entry;
    entry["index"] = device.index;
    entry["name"] = device.name;
    entry["compute_capability"] = device.compute_capability;
    entry["multiprocessors"] = device.multiprocessors;
    entry["memory_bytes"] = device.memory_bytes;
    result.append(entry);
  }
  return result;
}

// The library's exceptions as Python's: a broken rule is a ValueError, a valid request this build cannot
// serve a NotImplementedError, anything else (a CUDA error, say) a RuntimeError.
void translate_exception(const std::exception_ptr& error, void*) {
  try {
    std::rethrow_exception(error);
  } catch (const flashattn::InvalidArgument& e) {
    PyErr_SetString(PyExc_ValueError, e.what());
  } catch (const flashattn::NotSupported& e) {
    PyErr_SetString(PyExc_NotImplementedError, e.what());
  } catch (const flashattn::Error& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
}

}  // namespace

NB_MODULE(_ext, m) {
  m.doc() = "flashattn's native calls on DLPack arrays; use the functions of the flashattn package instead.";
  nb::register_exception_translator(translate_exception);

  m.def(
      "forward",
      [](const InArray& q, const InArray& k, const InArray& v, const OutArray& out, const OutArray& softmax_lse,
         OptionalIn cu_seqlens_q, OptionalIn cu_seqlens_k, OptionalIn seqused_k, std::int64_t max_seqlen_q,
         std::int64_t max_seqlen_k, OptionalIn alibi_slopes, std::optional<float> softmax_scale, bool causal,
         std::string causal_alignment, int window_left, int window_right, float softcap, int num_threads,
         std::uintptr_t stream, std::string bits_dtype) {
        forward(q, k, v, out, softmax_lse,
                {std::move(cu_seqlens_q), std::move(cu_seqlens_k), std::move(seqused_k), max_seqlen_q, max_seqlen_k},
                {std::move(alibi_slopes), softmax_scale, causal, std::move(causal_alignment), window_left, window_right,
                 softcap, false, num_threads, stream},
                bits_dtype);
      },
      "q"_a, "k"_a, "v"_a, "out"_a, "softmax_lse"_a, nb::kw_only(), "cu_seqlens_q"_a.none() = nb::none(),
      "cu_seqlens_k"_a.none() = nb::none(), "seqused_k"_a.none() = nb::none(), "max_seqlen_q"_a = 0,
      "max_seqlen_k"_a = 0, "alibi_slopes"_a.none() = nb::none(), "softmax_scale"_a.none() = nb::none(),
      "causal"_a = false, "causal_alignment"_a = "bottom_right", "window_left"_a = -1, "window_right"_a = -1,
      "softcap"_a = 0.0f, "num_threads"_a = 0, "stream"_a = 0, "bits_dtype"_a = "",
      "Writes out and softmax_lse; `stream` is the cudaStream_t (as an int) for CUDA arrays.");

  m.def(
      "backward",
      [](const InArray& dout, const InArray& q, const InArray& k, const InArray& v, const InArray& out,
         const InArray& softmax_lse, const OutArray& dq, const OutArray& dk, const OutArray& dv,
         OptionalIn cu_seqlens_q, OptionalIn cu_seqlens_k, OptionalIn seqused_k, std::int64_t max_seqlen_q,
         std::int64_t max_seqlen_k, OptionalIn alibi_slopes, std::optional<float> softmax_scale, bool causal,
         std::string causal_alignment, int window_left, int window_right, float softcap, bool deterministic,
         int num_threads, std::uintptr_t stream, std::string bits_dtype) {
        backward(dout, q, k, v, out, softmax_lse, dq, dk, dv,
                 {std::move(cu_seqlens_q), std::move(cu_seqlens_k), std::move(seqused_k), max_seqlen_q, max_seqlen_k},
                 {std::move(alibi_slopes), softmax_scale, causal, std::move(causal_alignment), window_left,
                  window_right, softcap, deterministic, num_threads, stream},
                 bits_dtype);
      },
      "dout"_a, "q"_a, "k"_a, "v"_a, "out"_a, "softmax_lse"_a, "dq"_a, "dk"_a, "dv"_a, nb::kw_only(),
      "cu_seqlens_q"_a.none() = nb::none(), "cu_seqlens_k"_a.none() = nb::none(), "seqused_k"_a.none() = nb::none(),
      "max_seqlen_q"_a = 0, "max_seqlen_k"_a = 0, "alibi_slopes"_a.none() = nb::none(),
      "softmax_scale"_a.none() = nb::none(), "causal"_a = false, "causal_alignment"_a = "bottom_right",
      "window_left"_a = -1, "window_right"_a = -1, "softcap"_a = 0.0f, "deterministic"_a = false, "num_threads"_a = 0,
      "stream"_a = 0, "bits_dtype"_a = "", "Writes dq, dk and dv.");

  m.def(
      "forward_kvcache",
      [](const InArray& q, InArray k_cache, InArray v_cache, InArray cache_seqlens, const OutArray& out,
         const OutArray& softmax_lse, OptionalIn k, OptionalIn v, OptionalIn cache_batch_idx, OptionalIn cache_leftpad,
         OptionalIn block_table, OptionalIn rotary_cos, OptionalIn rotary_sin, bool rotary_interleaved, int num_splits,
         OptionalIn workspace, OptionalIn alibi_slopes, std::optional<float> softmax_scale, bool causal,
         std::string causal_alignment, int window_left, int window_right, float softcap, int num_threads,
         std::uintptr_t stream, std::string bits_dtype) {
        forward_kvcache(q,
                        {std::move(k_cache), std::move(v_cache), std::move(cache_seqlens), std::move(k), std::move(v),
                         std::move(cache_batch_idx), std::move(cache_leftpad), std::move(block_table),
                         std::move(rotary_cos), std::move(rotary_sin), rotary_interleaved, num_splits},
                        out, softmax_lse, workspace,
                        {std::move(alibi_slopes), softmax_scale, causal, std::move(causal_alignment), window_left,
                         window_right, softcap, false, num_threads, stream},
                        bits_dtype);
      },
      "q"_a, "k_cache"_a, "v_cache"_a, "cache_seqlens"_a, "out"_a, "softmax_lse"_a, nb::kw_only(),
      "k"_a.none() = nb::none(), "v"_a.none() = nb::none(), "cache_batch_idx"_a.none() = nb::none(),
      "cache_leftpad"_a.none() = nb::none(), "block_table"_a.none() = nb::none(), "rotary_cos"_a.none() = nb::none(),
      "rotary_sin"_a.none() = nb::none(), "rotary_interleaved"_a = false, "num_splits"_a = 0,
      "workspace"_a.none() = nb::none(), "alibi_slopes"_a.none() = nb::none(), "softmax_scale"_a.none() = nb::none(),
      "causal"_a = false, "causal_alignment"_a = "bottom_right", "window_left"_a = -1, "window_right"_a = -1,
      "softcap"_a = 0.0f, "num_threads"_a = 0, "stream"_a = 0, "bits_dtype"_a = "",
      "Appends k and v to the cache in place (rotated when rotary_cos / rotary_sin are given), then writes out and "
      "softmax_lse; `workspace` (fp32, kvcache_workspace_size elements) lets GPUs split the keys.");

  m.def(
      "kvcache_workspace_size",
      [](const InArray& q, InArray k_cache, InArray v_cache, InArray cache_seqlens, OptionalIn k, OptionalIn v,
         OptionalIn cache_batch_idx, OptionalIn cache_leftpad, OptionalIn block_table, OptionalIn rotary_cos,
         OptionalIn rotary_sin, bool rotary_interleaved, int num_splits, OptionalIn alibi_slopes,
         std::optional<float> softmax_scale, bool causal, std::string causal_alignment, int window_left,
         int window_right, float softcap, std::string bits_dtype) {
        return kvcache_workspace_size(
            q,
            {std::move(k_cache), std::move(v_cache), std::move(cache_seqlens), std::move(k), std::move(v),
             std::move(cache_batch_idx), std::move(cache_leftpad), std::move(block_table), std::move(rotary_cos),
             std::move(rotary_sin), rotary_interleaved, num_splits},
            {std::move(alibi_slopes), softmax_scale, causal, std::move(causal_alignment), window_left, window_right,
             softcap, false, 0, 0},
            bits_dtype);
      },
      "q"_a, "k_cache"_a, "v_cache"_a, "cache_seqlens"_a, nb::kw_only(), "k"_a.none() = nb::none(),
      "v"_a.none() = nb::none(), "cache_batch_idx"_a.none() = nb::none(), "cache_leftpad"_a.none() = nb::none(),
      "block_table"_a.none() = nb::none(), "rotary_cos"_a.none() = nb::none(), "rotary_sin"_a.none() = nb::none(),
      "rotary_interleaved"_a = false, "num_splits"_a = 0, "alibi_slopes"_a.none() = nb::none(),
      "softmax_scale"_a.none() = nb::none(), "causal"_a = false, "causal_alignment"_a = "bottom_right",
      "window_left"_a = -1, "window_right"_a = -1, "softcap"_a = 0.0f, "bits_dtype"_a = "",
      "fp32 elements of workspace forward_kvcache uses with these arguments (0: it runs unsplit). Reads no "
      "tensor's contents on GPUs.");

  m.def("merge_attention_states", &merge_attention_states, "out_a"_a, "lse_a"_a, "out_b"_a, "lse_b"_a, "out"_a, "lse"_a,
        nb::kw_only(), "num_threads"_a = 0, "stream"_a = 0, "bits_dtype_a"_a = "", "bits_dtype_b"_a = "",
        "bits_dtype_out"_a = "",
        "Writes out and lse, the attention over the union of two disjoint key sets; out may be out_a or out_b.");

  m.def("build_info", &build_info, "The library's version, backends and CPU instruction set, as a dict.");
  m.def("cuda_devices", &cuda_devices, "The CUDA devices the library sees, as a list of dicts.");
}
