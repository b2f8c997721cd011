// The entry points of one instruction-set translation unit: dtype dispatch into the kernels.
#pragma once

#include "flashattn/errors.hpp"
#include "kernel/backward.hpp"
#include "kernel/convert.hpp"
#include "kernel/forward.hpp"

namespace flashattn::cpu {
namespace {

template <template <typename> class Kernel, typename Plan>
void dispatch_dtype(const detail::Problem& p, const Plan& plan) {
  switch (p.dtype) {
    case DType::kFloat32:
      return Kernel<float>::run(p, plan);
    case DType::kFloat16:
      return Kernel<_Float16>::run(p, plan);
    case DType::kBFloat16:
      return Kernel<BFloat16>::run(p, plan);
    case DType::kFloat8E4M3:
    case DType::kInt32:
      break;
  }
  throw NotSupported(std::string("cpu backend: dtype ") + dtype_name(p.dtype) + " has no kernel");
}

template <typename T>
struct ForwardKernel {
  static void run(const detail::Problem& p, const ForwardPlan& plan) { run_forward_typed<T>(p, plan); }
};
template <typename T>
struct BackwardKernel {
  static void run(const detail::Problem& p, const BackwardPlan& plan) { run_backward_typed<T>(p, plan); }
};

void run_forward(const detail::Problem& p, const ForwardPlan& plan) { dispatch_dtype<ForwardKernel>(p, plan); }
void run_backward(const detail::Problem& p, const BackwardPlan& plan) { dispatch_dtype<BackwardKernel>(p, plan); }

}  // namespace
}  // namespace flashattn::cpu
