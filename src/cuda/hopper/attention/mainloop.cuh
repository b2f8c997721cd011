// A consumer warpgroup: for every work tile of its block, its 64 query rows against the tile's keys.
//
// Per key tile j: S = Q K_j^T (wgmma, both from shared memory), the mask and score modifiers where the tile
// needs them, the online softmax in registers (the portable kernels' OnlineSoftmax: wgmma's accumulator per
// warp is the m16n8 layout), then O += P V_j with P straight from registers. With `overlap` the products of
// the next key tile's S and this one's P V are in flight while the softmax runs: the softmax of S_{j+1}
// waits only for S_{j+1}, and O is rescaled once P_j V_j has landed. With `ping_pong` the two consumers take
// turns to issue their products (a named barrier each), so one's softmax runs under the other's products.
#pragma once

#include <math_constants.h>

#include "cuda/device/sequence.cuh"
#include "cuda/device/warp_gemm.cuh"
#include "cuda/forward/mask.cuh"
#include "cuda/forward/softmax.cuh"
#include "cuda/hopper/attention/epilogue.cuh"
#include "cuda/hopper/attention/scheduler.cuh"
#include "cuda/hopper/attention/shape.cuh"

namespace flashattn::cuda::hopper {

template <class Shape>
class AttentionConsumer {
  using T = typename Shape::Element;
  static constexpr int kNTiles = Shape::kBlockN / 8;
  static constexpr int kDTiles = Shape::kHeadDim / 8;
  static constexpr int kPSteps = Shape::kBlockN / kWgmmaK;
  static constexpr bool kOverlap = Shape::kTile.overlap;
  static constexpr bool kPingPong = Shape::kTile.ping_pong && Shape::kConsumers == 2;
  static constexpr std::uint32_t kPingPongThreads = 2 * kWarpgroupThreads;

 public:
  __device__ __forceinline__ AttentionConsumer(const AttentionStorage<Shape>& smem, const HopperForwardParams& p,
                                               int consumer)
      : smem_(smem), p_(p), consumer_(consumer), lane_(static_cast<int>(threadIdx.x) % kWarpSize) {
    s_.zero();  // the first Q K^T overwrites S (accumulate off) but its asm reads the registers
  }

  __device__ __forceinline__ void run(const TileScheduler& scheduler) {
    // Consumer 0 issues first; every turn then hands over to the other consumer.
    if (kPingPong && consumer_ == 1) named_barrier_arrive(ping_pong_barrier(0), kPingPongThreads);
    for (int index = scheduler.first(); scheduler.valid(index); index = scheduler.next(index)) {
      const TileWork work = describe<Shape::kBlockM, Shape::kBlockN>(p_.attention, scheduler.at(index));
      attend(work);
    }
    // Consumer 1's last hand-over is still pending on consumer 0's barrier: take it, so that none is left.
    if (kPingPong && consumer_ == 0) named_barrier_sync(ping_pong_barrier(0), kPingPongThreads);
    // The block's shared memory must outlive the last output copies.
    if (static_cast<int>(threadIdx.x) % kWarpgroupThreads == 0) tma_store_wait<0>();
  }

 private:
  using ScoreTile = device::Accumulator<1, kNTiles>;
  using OutputTile = device::Accumulator<1, kDTiles>;

  template <int kTiles>
  static __device__ __forceinline__ float (&flat(device::Accumulator<1, kTiles>& tile))[kTiles * 4] {
    return reinterpret_cast<float(&)[kTiles * 4]>(tile.c);
  }

  __device__ __forceinline__ void attend(const TileWork& work) {
    const ForwardParams& a = p_.attention;
    row_begin_ = work.m0 + consumer_ * kWgmmaM;
    row_end_ = min(row_begin_ + kWgmmaM, work.seq.seqlen_q);
    warp_row0_ = row_begin_ + (static_cast<int>(threadIdx.x) % kWarpgroupThreads) / kWarpSize * 16;
    mod_.scale = a.scale;
    mod_.softcap = a.softcap;
    mod_.slope =
        a.alibi_slopes == nullptr ? 0.0f : a.alibi_slopes[work.tile.batch * a.alibi_batch_stride + work.tile.head];
    mod_.offset = work.mask.offset;
    // As the portable kernel: plain scores stay raw and exp2 folds in scale * log2(e); modified ones (and a
    // non-positive scale, which would turn the maximum around) are converted to log2 units first.
    modify_ = !mod_.plain() || !(a.scale > 0.0f);
    softmax_scale_ = modify_ ? 1.0f : a.scale_log2;

    mbarrier_wait(smem_.q_full(), q_phase_);
    q_phase_ ^= 1u;
    o_.zero();
    softmax_.init();
    if (work.key_tiles() > 0) {
      if constexpr (kOverlap) {
        overlapped_key_tiles(work);
      } else {
        serial_key_tiles(work);
      }
    }
    float inverse_sum[1][2];
    float lse[1][2];
    softmax_.finish(inverse_sum, lse, softmax_scale_);
    store_output<Shape>(smem_, p_, work, consumer_, o_, inverse_sum, lse);
  }

  // S_j, softmax_j, P_j V_j one after the other.
  __device__ __forceinline__ void serial_key_tiles(const TileWork& work) {
    for (int key_tile = work.key_tile_begin; key_tile < work.key_tile_end; ++key_tile) {
      begin_turn();
      issue_scores();
      end_turn();
      wait_scores<0>();
      float correction[1][2];
      to_probabilities(work, key_tile, correction);
      softmax_.rescale(o_, correction);
      to_fragments();
      begin_turn();
      issue_output();
      end_turn();
      wait_output();
    }
  }

  // S_{j+1} and P_j V_j in flight together; the softmax of S_{j+1} runs while P_j V_j does.
  __device__ __forceinline__ void overlapped_key_tiles(const TileWork& work) {
    float correction[1][2];
    begin_turn();
    issue_scores();
    end_turn();
    wait_scores<0>();
    to_probabilities(work, work.key_tile_begin, correction);  // O is zero: nothing to rescale
    to_fragments();
    for (int key_tile = work.key_tile_begin + 1; key_tile < work.key_tile_end; ++key_tile) {
      begin_turn();
      issue_scores();
      issue_output();
      end_turn();
      wait_scores<1>();
      to_probabilities(work, key_tile, correction);
      wait_output();
      softmax_.rescale(o_, correction);
      to_fragments();
    }
    begin_turn();
    issue_output();
    end_turn();
    wait_output();
  }

  __device__ __forceinline__ void begin_turn() {
    if constexpr (kPingPong) named_barrier_sync(ping_pong_barrier(consumer_), kPingPongThreads);
  }
  __device__ __forceinline__ void end_turn() {
    if constexpr (kPingPong) named_barrier_arrive(ping_pong_barrier(1 - consumer_), kPingPongThreads);
  }

  // S = Q K^T over the head dimension, 16 channels per wgmma; Q's rows of this consumer, K's stage k_read_.
  __device__ __forceinline__ void issue_scores() {
    mbarrier_wait(smem_.k_full(k_read_.stage), k_read_.phase);
    const unsigned char* q_rows = smem_.q() + consumer_ * Shape::kConsumerRowBytes;
    const unsigned char* k_tile = smem_.k(k_read_.stage);
    wgmma_fence();
#pragma unroll
    for (int step = 0; step < Shape::kHeadDim / kWgmmaK; ++step) {
      const int panel = step * kWgmmaK / Shape::kPanelColumns;
      const int column = step * kWgmmaK % Shape::kPanelColumns;
      const std::uint64_t q_descriptor =
          advance_descriptor_along_k<T>(make_k_major_sw128_descriptor(q_rows + panel * Shape::kQPanelBytes), column);
      const std::uint64_t k_descriptor =
          advance_descriptor_along_k<T>(make_k_major_sw128_descriptor(k_tile + panel * Shape::kKvPanelBytes), column);
      wgmma_m64k16_ss<Shape::kBlockN, T>(flat(s_), q_descriptor, k_descriptor, step > 0);
    }
    wgmma_commit_group();
  }

  // O += P V over the key tile, 16 keys per wgmma; V's stage v_read_.
  __device__ __forceinline__ void issue_output() {
    mbarrier_wait(smem_.v_full(v_read_.stage), v_read_.phase);
    const std::uint64_t v_descriptor = make_mn_major_sw128_descriptor(smem_.v(v_read_.stage), Shape::kKvPanelBytes);
    wgmma_fence();
#pragma unroll
    for (int step = 0; step < kPSteps; ++step) {
      wgmma_m64k16_rs<Shape::kHeadDim, T>(flat(o_), p_fragments_[step],
                                          advance_descriptor_bytes(v_descriptor, step * kWgmmaK * kSwizzle128RowBytes),
                                          true);
    }
    wgmma_commit_group();
  }

  // S has landed (at most `Pending` younger groups still run): K's stage goes back to the producer.
  template <int Pending>
  __device__ __forceinline__ void wait_scores() {
    wgmma_wait_group<Pending>();
    pin_accumulators(flat(s_));
    if (lane_ == 0) mbarrier_arrive(smem_.k_empty(k_read_.stage));
    k_read_.advance();
  }

  // P V has landed: V's stage goes back to the producer, and O and P's registers are free again.
  __device__ __forceinline__ void wait_output() {
    wgmma_wait_group<0>();
    pin_accumulators(flat(o_));
    pin_fragments(p_fragments_);
    if (lane_ == 0) mbarrier_arrive(smem_.v_empty(v_read_.stage));
    v_read_.advance();
  }

  __device__ __forceinline__ void to_probabilities(const TileWork& work, int key_tile, float (&correction)[1][2]) {
    const int key0 = key_tile * Shape::kBlockN;
    if (modify_) {
      device::mask_and_modify<true>(s_, work.mask, mod_, warp_row0_, key0, lane_);
    } else if (row_begin_ < row_end_ && work.mask.tile_needs_mask(row_begin_, row_end_, key0, key0 + Shape::kBlockN)) {
      device::mask_and_modify<false>(s_, work.mask, mod_, warp_row0_, key0, lane_);
    }
    softmax_.to_probabilities(s_, softmax_scale_, correction);
  }

  // P in the input type, as the A fragments of the P V wgmma (16 keys each).
  __device__ __forceinline__ void to_fragments() {
#pragma unroll
    for (int step = 0; step < kPSteps; ++step) device::accumulator_as_a<T>(p_fragments_[step], s_, 0, 2 * step);
  }

  const AttentionStorage<Shape>& smem_;
  const HopperForwardParams& p_;
  const int consumer_;
  const int lane_;
  PipelineState<Shape::kStages> k_read_;
  PipelineState<Shape::kStages> v_read_;
  std::uint32_t q_phase_ = 0;

  int row_begin_ = 0;
  int row_end_ = 0;
  int warp_row0_ = 0;
  device::ScoreMod mod_;
  bool modify_ = false;
  float softmax_scale_ = 1.0f;

  ScoreTile s_;
  OutputTile o_;
  std::uint32_t p_fragments_[kPSteps][4];
  device::OnlineSoftmax<1> softmax_;
};

}  // namespace flashattn::cuda::hopper
