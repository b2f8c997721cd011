// The one options struct shared by every attention call.
#pragma once

#include <optional>

#include "flashattn/tensor.hpp"

namespace flashattn {

// Where the causal diagonal sits when seqlen_q != seqlen_k.
//   kBottomRight (flash-attn's convention): query i sees keys j <= i + seqlen_k - seqlen_q.
//   kTopLeft (PyTorch's is_causal):          query i sees keys j <= i.
// The same alignment places the sliding window and the ALiBi distance.
enum class CausalAlignment : unsigned char { kBottomRight, kTopLeft };

enum class Backend : unsigned char { kAuto, kCPU, kCUDA };

struct AttentionOptions {
  // Multiplies q.k before the softmax. Unset: 1 / sqrt(head_dim).
  std::optional<float> softmax_scale;

  // Causal masking; implies window_right = 0.
  bool causal = false;
  CausalAlignment causal_alignment = CausalAlignment::kBottomRight;

  // Sliding window, as flash-attn's window_size: query i (aligned as above, at diagonal key d_i) sees
  // keys in [d_i - window_left, d_i + window_right]; -1 leaves that side unbounded.
  int window_left = -1;
  int window_right = -1;

  // Score capping: s = softcap * tanh(s / softcap), applied to the scaled scores. 0 disables it.
  float softcap = 0.0f;

  // ALiBi: fp32 slopes of shape (heads_q) or (batch, heads_q). Adds -slope * |d_i - j| to the scores
  // after the softcap, as flash-attn does.
  std::optional<TensorView> alibi_slopes;

  // Backward on GPUs: bitwise reproducible dq accumulation. The CPU backend is always deterministic.
  bool deterministic = false;

  // Which backend runs the call. kAuto picks it from the tensors' device.
  Backend backend = Backend::kAuto;

  // CPU backend: number of threads; 0 uses OpenMP's default (OMP_NUM_THREADS or all cores).
  int num_threads = 0;

  // GPU backends: the cudaStream_t to launch on (nullptr = the legacy default stream).
  void* stream = nullptr;
};

}  // namespace flashattn
