// The public entry points: validate, then hand the Problem to the backend that owns the tensors' device.
#include "cpu/backend.hpp"
#include "flashattn/attention.hpp"
#include "validate.hpp"
#if defined(FLASHATTN_WITH_CUDA)
#include "cuda/backend.hpp"
#endif

namespace flashattn {
namespace {

void run_forward(const detail::Problem& problem) {
#if defined(FLASHATTN_WITH_CUDA)
  if (problem.device.type == DeviceType::kCUDA) return cuda::forward(problem);
#endif
  cpu::forward(problem);
}

void run_backward(const detail::Problem& problem) {
#if defined(FLASHATTN_WITH_CUDA)
  if (problem.device.type == DeviceType::kCUDA) return cuda::backward(problem);
#endif
  cpu::backward(problem);
}

}  // namespace

void forward(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
             const TensorView& lse, const AttentionOptions& options) {
  run_forward(detail::validate({q, k, v, out, lse}, nullptr, options));
}

void forward_varlen(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
                    const TensorView& lse, const VarlenSeqlens& seqlens, const AttentionOptions& options) {
  run_forward(detail::validate({q, k, v, out, lse}, &seqlens, options));
}

void backward(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
              const TensorView& dout, const TensorView& lse, const TensorView& dq, const TensorView& dk,
              const TensorView& dv, const AttentionOptions& options) {
  run_backward(detail::validate({q, k, v, out, lse, &dout, &dq, &dk, &dv}, nullptr, options));
}

void backward_varlen(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
                     const TensorView& dout, const TensorView& lse, const TensorView& dq, const TensorView& dk,
                     const TensorView& dv, const VarlenSeqlens& seqlens, const AttentionOptions& options) {
  run_backward(detail::validate({q, k, v, out, lse, &dout, &dq, &dk, &dv}, &seqlens, options));
}

}  // namespace flashattn
