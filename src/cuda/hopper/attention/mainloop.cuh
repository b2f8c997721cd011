// A consumer warpgroup: for every work tile of its block, its 64 query rows against the tile's keys.
//
// Per key tile j: S = Q K_j^T (wgmma, both from shared memory), the mask and score modifiers where the tile
// needs them, the online softmax in registers (the portable kernels' OnlineSoftmax: wgmma's accumulator per
// warp is the m16n8 layout), then O += P V_j with P straight from registers. With `overlap` the products of
// the next key tile's S and this one's P V are in flight while the softmax runs: the softmax of S_{j+1}
// waits only for S_{j+1}, and O is rescaled once P_j V_j has landed; with two Q buffers the next work tile's
// first Q K^T goes out with this one's last P V, and this one's output is written while it runs, or (the tile
// table's output_under_scores) O waits in its registers through the next tile's first softmax and is written
// while the next tile's second Q K^T runs, before its first P V goes out. With `ping_pong` the two consumers
// take turns to issue their products (a named barrier each), so one's softmax runs under the other's products.
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
  // The next work tile's first Q K^T goes out with this one's last P V when its Q has a buffer of its own.
  static constexpr bool kAcrossTiles = kOverlap && Shape::kQStages == 2;
  // ... and its output is written once the next tile's second Q K^T is issued (the tile table's
  // output_under_scores).
  static constexpr bool kOutputUnderScores = kAcrossTiles && Shape::kTile.output_under_scores;
  static constexpr std::uint32_t kPingPongThreads = 2 * kWarpgroupThreads;

 public:
  __device__ __forceinline__ AttentionConsumer(const AttentionStorage<Shape>& smem, const HopperForwardParams& p,
                                               int consumer)
      : smem_(smem),
        p_(p),
        consumer_(consumer),
        lane_(static_cast<int>(threadIdx.x) % kWarpSize),
        output_offset_(Shape::kOutputBuffer ? output_thread_offset(smem, consumer) : 0) {
    s_.zero();  // the first Q K^T overwrites S (accumulate off) but its asm reads the registers
  }

  __device__ __forceinline__ void run(const TileScheduler& scheduler) {
    // Consumer 0 issues first; every turn then hands over to the other consumer.
    if (kPingPong && consumer_ == 1) named_barrier_arrive(ping_pong_barrier(0), kPingPongThreads);
    auto cursor = scheduler.first();
    if (scheduler.valid(cursor)) open_tile(scheduler.at(cursor));
    bool first_scores_landed = false;  // the tile's first Q K^T came with the previous tile's last P V
    while (scheduler.valid(cursor)) {
      const int key_tiles = tile_.work.key_tiles();
      if (key_tiles > 0) {
        if constexpr (kOverlap) {
          if (!first_scores_landed) {
            begin_turn();
            issue_scores(tile_.q_stage);
            end_turn();
            wait_scores<0>();
          }
          overlapped_key_tiles();
        } else {
          serial_key_tiles();
        }
      }
      // Every Q K^T of the tile has completed: Q's buffer can take another Q.
      if (lane_ == 0) mbarrier_arrive(smem_.q_empty(tile_.q_stage));
      const auto next = scheduler.next(cursor);
      first_scores_landed = false;
      if (kAcrossTiles && key_tiles > 0 && scheduler.valid(next)) {
        const TileState following = tile_state(scheduler.at(next));
        if (following.work.key_tiles() > 0) {
          // This tile's last P V and the next one's first Q K^T; the output goes while the latter runs.
          begin_turn();
          issue_output();
          issue_scores(following.q_stage);
          end_turn();
          if constexpr (kOutputUnderScores) {
            // The LSE now, O once the next tile's second Q K^T is issued (overlapped_key_tiles).
            float lse[1][2];
            softmax_.finish(pending_inverse_sum_, lse, tile_.softmax_scale);
            pending_rows_ = begin_output(p_.attention, tile_.work, consumer_, lse);
            tile_ = following;
            softmax_.init();
            wait_output<1>();
            output_pending_ = true;
          } else {
            wait_output<1>();
            switch_tile(following);
          }
          wait_scores<0>();
          first_scores_landed = true;
        } else {
          last_output();
          switch_tile(following);
        }
        cursor = next;
        continue;
      }
      if (kOverlap && key_tiles > 0) last_output();
      close_tile();
      cursor = next;
      // (With one Q buffer, the next Q has been loading since this tile's last Q K^T.)
      if (scheduler.valid(cursor)) open_tile(scheduler.at(cursor));
    }
    // Consumer 1's last hand-over is still pending on consumer 0's barrier: take it, so that none is left.
    if (kPingPong && consumer_ == 0) named_barrier_sync(ping_pong_barrier(0), kPingPongThreads);
    // The block's shared memory must outlive the last output copies.
    if (static_cast<int>(threadIdx.x) % kWarpgroupThreads == 0) tma_store_wait<0>();
  }

 private:
  using ScoreTile = device::Accumulator<1, kNTiles>;
  using OutputTile = device::Accumulator<1, kDTiles>;

  // What the consumer keeps of the work tile whose scores it is turning into probabilities.
  struct TileState {
    TileWork work;
    int q_stage;
    int row_begin;  // this consumer's rows [row_begin, row_end) of the sequence
    int row_end;
    int warp_row0;
    device::ScoreMod mod;
    bool modify;
    float softmax_scale;
  };

  template <int kTiles>
  static __device__ __forceinline__ float (&flat(device::Accumulator<1, kTiles>& tile))[kTiles * 4] {
    return reinterpret_cast<float(&)[kTiles * 4]>(tile.c);
  }

  // The tile's rows, score modifiers and Q buffer; waits until its Q has landed.
  __device__ __forceinline__ TileState tile_state(const WorkTile& tile) {
    const ForwardParams& a = p_.attention;
    TileState t;
    t.work = describe<Shape::kBlockM, Shape::kBlockN>(a, tile);
    t.row_begin = t.work.m0 + consumer_ * kWgmmaM;
    t.row_end = min(t.row_begin + kWgmmaM, t.work.seq.seqlen_q);
    t.warp_row0 = t.row_begin + (static_cast<int>(threadIdx.x) % kWarpgroupThreads) / kWarpSize * 16;
    t.mod.scale = a.scale;
    t.mod.softcap = a.softcap;
    t.mod.slope = a.alibi_slopes == nullptr ? 0.0f : a.alibi_slopes[tile.batch * a.alibi_batch_stride + tile.head];
    t.mod.offset = t.work.mask.offset;
    // As the portable kernel: plain scores stay raw and exp2 folds in scale * log2(e); modified ones (and a
    // non-positive scale, which would turn the maximum around) are converted to log2 units first.
    t.modify = !t.mod.plain() || !(a.scale > 0.0f);
    t.softmax_scale = t.modify ? 1.0f : a.scale_log2;
    t.q_stage = q_read_.stage;
    mbarrier_wait(smem_.q_full(q_read_.stage), q_read_.phase);
    q_read_.advance();
    return t;
  }

  __device__ __forceinline__ void open_tile(const WorkTile& tile) {
    tile_ = tile_state(tile);
    reset_accumulators();
  }

  // This tile's output written, `following` (its Q landed) becomes the tile.
  __device__ __forceinline__ void switch_tile(const TileState& following) {
    close_tile();
    tile_ = following;
    reset_accumulators();
  }

  __device__ __forceinline__ void reset_accumulators() {
    o_.zero();
    softmax_.init();
  }

  __device__ __forceinline__ void close_tile() {
    float inverse_sum[1][2];
    float lse[1][2];
    softmax_.finish(inverse_sum, lse, tile_.softmax_scale);
    if constexpr (Shape::kOutputBuffer) {
      const OutputRows rows = begin_output(p_.attention, tile_.work, consumer_, lse);
      store_output<Shape>(smem_, p_, consumer_, output_offset_, rows, pack_output<Shape>(o_, inverse_sum));
    } else {
      write_output<Shape>(p_, tile_.work, consumer_, o_, inverse_sum, lse);
    }
  }

  // The last P V of the tile, on its own.
  __device__ __forceinline__ void last_output() {
    begin_turn();
    issue_output();
    end_turn();
    wait_output<0>();
  }

  // S_j, softmax_j, P_j V_j one after the other.
  __device__ __forceinline__ void serial_key_tiles() {
    int key_tile = tile_.work.key_tile_begin;
    for (const int end = own_key_tile_end(); key_tile < end; ++key_tile) {
      begin_turn();
      issue_scores(tile_.q_stage);
      end_turn();
      wait_scores<0>();
      float correction[1][2];
      to_probabilities(key_tile, correction);
      softmax_.rescale(o_, correction);
      to_fragments();
      begin_turn();
      issue_output();
      end_turn();
      wait_output<0>();
    }
    for (; key_tile < tile_.work.key_tile_end; ++key_tile) release_key_tile();
  }

  // The end of the key tiles that this consumer's rows see: under a causal mask the tile's later rows see further,
  // so that its first consumers' last key tiles would be masked out entirely (192-row tile: on average 1.5 of the
  // three consumers' key tiles per work tile). Rows before the sequence's start see none. H200, in-process A/B,
  // 2026-11-27 05:28 UTC, d = 64 causal against the same library walking every key tile: +4.5 / +3.2 / +1.2 / +0.4 %
  // at 2k / 3k / 4k / 8k; without a mask, where nothing is given back, -0.2 to -1.5 % (a copy of the library before:
  // +0.1 to -1.6 %).
  __device__ __forceinline__ int own_key_tile_end() const {
    const TileWork& work = tile_.work;
    if (tile_.row_begin < 0 || tile_.row_begin >= tile_.row_end) return work.key_tile_begin;
    const int key_end = work.mask.end_key(tile_.row_end - 1);
    return max(work.key_tile_begin, min(work.key_tile_end, (key_end + Shape::kBlockN - 1) / Shape::kBlockN));
  }

  // A key tile this consumer does not need: its K and V stages go back once they have been filled (so that the
  // release counts towards that fill's phase).
  __device__ __forceinline__ void release_key_tile() {
    mbarrier_wait(smem_.k_full(k_read_.stage), k_read_.phase);
    release_key_stage();
    mbarrier_wait(smem_.v_full(v_read_.stage), v_read_.phase);
    release_value_stage();
  }

  // K's (V's) stage goes back to the producer, and the consumer moves on to the next.
  __device__ __forceinline__ void release_key_stage() {
    if (lane_ == 0) mbarrier_arrive(smem_.k_empty(k_read_.stage));
    k_read_.advance();
  }
  __device__ __forceinline__ void release_value_stage() {
    if (lane_ == 0) mbarrier_arrive(smem_.v_empty(v_read_.stage));
    v_read_.advance();
  }

  // With S_first landed: S_{j+1} and P_j V_j in flight together, the softmax of S_{j+1} running while P_j V_j
  // does. Ends with the last P in registers and its P V not yet issued. The previous tile's output, when still
  // in O's registers, is written between the tile's second Q K^T and its first P V: its stores run under the
  // former.
  __device__ __forceinline__ void overlapped_key_tiles() {
    float correction[1][2];
    to_probabilities(tile_.work.key_tile_begin, correction);  // O is zero or the previous tile's: no rescale
    to_fragments();
    for (int key_tile = tile_.work.key_tile_begin + 1; key_tile < tile_.work.key_tile_end; ++key_tile) {
      begin_turn();
      issue_scores(tile_.q_stage);
      if (kOutputUnderScores && output_pending_) {
        end_turn();
        write_pending_output();
        begin_turn();
      }
      issue_output();
      end_turn();
      wait_scores<1>();
      to_probabilities(key_tile, correction);
      wait_output<0>();
      softmax_.rescale(o_, correction);
      to_fragments();
    }
    if (kOutputUnderScores && output_pending_) write_pending_output();  // a tile of one key tile
  }

  // The previous tile's output, finished in O's registers; O is then zero for this tile.
  __device__ __forceinline__ void write_pending_output() {
    if constexpr (kOutputUnderScores) {
      store_output<Shape>(smem_, p_, consumer_, output_offset_, pending_rows_,
                          pack_output<Shape>(o_, pending_inverse_sum_));
      o_.zero();
      output_pending_ = false;
    }
  }

  __device__ __forceinline__ void begin_turn() {
    if constexpr (kPingPong) named_barrier_sync(ping_pong_barrier(consumer_), kPingPongThreads);
  }
  __device__ __forceinline__ void end_turn() {
    if constexpr (kPingPong) named_barrier_arrive(ping_pong_barrier(1 - consumer_), kPingPongThreads);
  }

  // S = Q K^T over the head dimension, 16 channels per wgmma; this consumer's rows of Q's buffer `q_stage`,
  // K's stage k_read_.
  __device__ __forceinline__ void issue_scores(int q_stage) {
    mbarrier_wait(smem_.k_full(k_read_.stage), k_read_.phase);
    const unsigned char* q_rows = smem_.q(q_stage) + consumer_ * kWgmmaM * kSwizzle128RowBytes;
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
    release_key_stage();
  }

  // P V has landed (at most `Pending` younger groups still run): V's stage goes back to the producer, and O
  // and P's registers are free again.
  template <int Pending>
  __device__ __forceinline__ void wait_output() {
    wgmma_wait_group<Pending>();
    pin_accumulators(flat(o_));
    pin_fragments(p_fragments_);
    release_value_stage();
  }

  __device__ __forceinline__ void to_probabilities(int key_tile, float (&correction)[1][2]) {
    const int key0 = key_tile * Shape::kBlockN;
    const TileWork& work = tile_.work;
    if (tile_.modify) {
      device::mask_and_modify<true>(s_, work.mask, tile_.mod, tile_.warp_row0, key0, lane_);
    } else if (tile_.row_begin < tile_.row_end &&
               work.mask.tile_needs_mask(tile_.row_begin, tile_.row_end, key0, key0 + Shape::kBlockN)) {
      if (Shape::kTile.key_end_mask && work.mask.first_key(tile_.row_end - 1) <= key0) {
        device::mask_key_ends(s_, work.mask, tile_.warp_row0, key0, lane_);
      } else {
        device::mask_and_modify<false>(s_, work.mask, tile_.mod, tile_.warp_row0, key0, lane_);
      }
    }
    softmax_.to_probabilities(s_, tile_.softmax_scale, correction);
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
  const std::uint32_t output_offset_;  // where this thread's output stores start (epilogue.cuh)
  PipelineState<Shape::kQStages> q_read_;
  PipelineState<Shape::kStages> k_read_;
  PipelineState<Shape::kStages> v_read_;

  TileState tile_;
  // The previous work tile's output while it waits in O's registers (kOutputUnderScores).
  bool output_pending_ = false;
  OutputRows pending_rows_;
  float pending_inverse_sum_[1][2];
  ScoreTile s_;
  OutputTile o_;
  std::uint32_t p_fragments_[kPSteps][4];
  device::OnlineSoftmax<1,
                        Shape::kTile.tree_reductions ? device::RowReduction::kTree : device::RowReduction::kSequential>
      softmax_;
};

}  // namespace flashattn::cuda::hopper
