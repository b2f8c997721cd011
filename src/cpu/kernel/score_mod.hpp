// What turns a raw dot product q.k into the score the softmax sees, in the log2 domain:
//   x = scale * q.k;  x = softcap * tanh(x / softcap) (softcap > 0);  x -= slope * |d_i - j| (ALiBi);
//   masked pairs -> -inf;  result * log2(e).
// Applied to one vector of lanes at a time; the lanes run along keys (one query row) or along queries
// (one key), so both the row-major backward and the transposed forward share it.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernel/simd.hpp"

namespace flashattn::cpu {
namespace {

struct ScoreMod {
  float scale = 1.0f;
  float softcap = 0.0f;  // 0: off
  float slope = 0.0f;    // ALiBi slope of this (batch, head); 0: off

  bool plain() const { return softcap == 0.0f && slope == 0.0f; }

  // `dots`: raw q.k of kLanes pairs; lanes in [visible_begin, visible_end) are visible, the rest -> -inf.
  // ALiBi distance of lane t: |distance_base + distance_step * t|. When softcap_grad is not null, it
  // receives d(capped score) / d(scaled score) = 1 - tanh^2 (1 where softcap is off).
  VecF apply(VecF dots, int visible_begin, int visible_end, float distance_base, float distance_step,
             float* softcap_grad) const {
    VecF x = dots * scale;
    if (softcap != 0.0f) {
      for (int t = 0; t < kLanes; ++t) {
        const float capped = std::tanh(x[t] / softcap);
        if (softcap_grad != nullptr) softcap_grad[t] = 1.0f - capped * capped;
        x[t] = softcap * capped;
      }
    } else if (softcap_grad != nullptr) {
      store(softcap_grad, splat(1.0f));
    }
    if (slope != 0.0f) {
      for (int t = 0; t < kLanes; ++t) x[t] -= slope * std::fabs(distance_base + distance_step * static_cast<float>(t));
    }
    x *= kLog2e;
    const VecI lane = lane_index();
    return (lane >= visible_begin) & (lane < visible_end) ? x : splat(kNegInf);
  }

  // The common case: no softcap, no ALiBi, every lane visible.
  VecF apply_plain(VecF dots) const { return dots * (scale * kLog2e); }

  // Only the mask, for scores that already are log2-domain (queries pre-multiplied by scale * log2(e)).
  static VecF mask_only(VecF scores, int visible_begin, int visible_end) {
    const VecI lane = lane_index();
    return (lane >= visible_begin) & (lane < visible_end) ? scores : splat(kNegInf);
  }
};

}  // namespace
}  // namespace flashattn::cpu
