// Argument validation: turns a public call into a Problem, or throws InvalidArgument / NotSupported
// naming the argument and the rule it broke. Nothing is written before validation has passed.
#pragma once

#include "flashattn/attention.hpp"
#include "problem.hpp"

namespace flashattn::detail {

// The tensors of one call; the backward ones stay empty for a forward.
struct CallTensors {
  const TensorView& q;
  const TensorView& k;
  const TensorView& v;
  const TensorView& out;
  const TensorView& lse;
  const TensorView* dout = nullptr;
  const TensorView* dq = nullptr;
  const TensorView* dk = nullptr;
  const TensorView* dv = nullptr;
};

// `varlen` is null for batched layouts.
Problem validate(const CallTensors& tensors, const VarlenSeqlens* varlen, const AttentionOptions& options);

}  // namespace flashattn::detail
