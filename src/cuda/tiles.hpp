// The tile table of the portable (sm_80+) kernels: every size a kernel is compiled with, per head
// dimension, in one place. Head dimensions are compiled at 64, 128 and 256; others round up.
// bench/cuda/tile_sweep.sh builds variants with one entry overridden by FLASHATTN_DEV_* definitions.
#pragma once

namespace flashattn::cuda {

inline constexpr int kCompiledHeadDims[] = {64, 128, 256};
inline constexpr int kWarpSize = 32;

// Forward: each warp owns kMTiles * 16 query rows of a kWarps * kMTiles * 16-row block and walks the keys
// kBlockN at a time. K and V tiles stream through kv_stages buffers each (cp.async): with 2, tile j + 1
// loads while tile j is used; with 1, K j + 1 loads during tile j's softmax and P V, and V j + 1 during the
// next Q K^T, which halves the shared memory so that more blocks fit on an SM. kQInRegisters keeps the
// warp's Q fragments in registers for the whole loop instead of re-reading them per key tile.
struct ForwardTile {
  int warps;
  int m_tiles;
  int block_n;
  bool q_in_registers;
  int min_blocks_per_sm;
  int kv_stages = 2;

  constexpr int threads() const { return warps * kWarpSize; }
  constexpr int block_m() const { return warps * m_tiles * 16; }
};

constexpr ForwardTile forward_tile(int head_dim) {
#if defined(FLASHATTN_DEV_FWD_WARPS)
  if (head_dim > 0) {
    return {FLASHATTN_DEV_FWD_WARPS, FLASHATTN_DEV_FWD_MTILES, FLASHATTN_DEV_FWD_N,
            FLASHATTN_DEV_FWD_QREG,  FLASHATTN_DEV_FWD_MINB,   FLASHATTN_DEV_FWD_STAGES};
  }
#endif
  // Measured on an H100 (bf16, batch x seqlen = 16k, seqlen 8k, TFLOP/s non-causal / causal), 2026-11-26:
  //   d = 64:  4 warps x 2 m-tiles, Q re-read from shared memory   306 / 280 (Q in registers 293 / 264;
  //            8 warps x 2 m-tiles 286 / 239). Two m-tiles per warp reuse each K/V fragment twice.
  //   d = 128: 4 warps x 2 m-tiles, Q from shared memory, 2 blocks  346 / 303 (8 warps x 1 m-tile, Q in
  //            registers: 302 / 281). Half the shared-memory reads per FLOP; it spilled 404 bytes until
  //            the tile copies stopped holding per-row addresses (smem.cuh), now 48.
  //   d = 256: 4 warps x 1 m-tile, block_n 64, one K and one V buffer, 2 blocks per SM: 334 / 310 at 8k,
  //            327 / 276 at 2k (8 warps x 1 m-tile, two buffers, 1 block: 327 / 291 and 308 / 253; same
  //            call, 2026-11-26). Two blocks overlap one's barriers and prologue with the other's products.
  // Later the same day, with one barrier per key tile for two buffers (kernel.cuh), d = 128 with one K and
  // one V buffer gave 338 / 281, 356 / 307, 360 / 320 at 2k, 4k, 8k against two buffers' 339 / 274,
  // 351 / 304, 358 / 321 (same call; +0.3 to +1.9 % in an earlier call against two buffers, two barriers).
  if (head_dim <= 64) return {4, 2, 64, false, 2};
  if (head_dim <= 128) return {4, 2, 64, false, 2, 1};
  return {4, 1, 64, false, 2, 1};
}

// Hopper forward (sm_90a, hopper/attention/): a persistent block of one producer warpgroup (TMA copies) and
// block_m / 64 consumer warpgroups (wgmma, softmax, epilogue), each owning 64 query rows of a block_m-row
// tile and walking its keys block_n at a time; K and V stream through `stages` shared-memory stages each.
// setmaxnreg moves registers from the producer to the consumers. `overlap`: a consumer issues Q K^T of the
// next key tile and P V of this one before the softmax that needs the former (FlashAttention-3's
// intra-warpgroup pipelining); `ping_pong`: the consumers take turns to issue their products, so that one's
// softmax runs under the other's matrix work.
struct HopperForwardTile {
  int block_m;
  int block_n;
  int stages;
  int producer_registers;
  int consumer_registers;
  bool overlap;
  bool ping_pong;
  // The softmax reduces each thread's share of a row as a tree rather than value by value (forward/softmax.cuh,
  // RowReduction, where the measurements are).
  bool tree_reductions;
  // Diagonal tiles are masked with one comparison per score where no row's first key lies inside them
  // (forward/mask.cuh, mask_key_ends). H100, same call, 2026-11-27 01:07 UTC, causal: d = 64 +1.6-1.8 % at 1k-4k,
  // d = 128 +0.7-1.3 %; d = 64's 192-row tile (160 registers) gained nothing under a mask and ran 1-1.7 % slower
  // without one (two calls), so it keeps the two comparisons.
  bool key_end_mask = true;
  // With two Q buffers, a work tile's output is written between the next tile's second Q K^T and its first P V,
  // the stores running under the former, instead of before the next tile's first softmax
  // (hopper/attention/mainloop.cuh). H100, in-process A/Bs against writing it first, 2026-11-27 03:21 and 03:25 UTC:
  // d = 128 causal +1.7 to +2.7 % from 1.5k, within 1.2 % at 1k; without a mask +0.7 to +2.5 % in most cells, but
  // one cell per call read -5 % (1k in the first, 3k in the second) and 2k +1.3 % / -0.9 to -2.5 % (where a copy
  // of the old library read -3.4 %). d = 64's 128-row tile: -6 to -7 % causal at 1k and 2k, so it keeps the first
  // order.
  bool output_under_scores = false;
};

// Queries per sequence from which the long-sequence tile (`long_sequences`) is used where one is compiled
// (hopper_long_tile), with or without a mask. Without one, 192-row query tiles ran at 1.00 of the 128-row tile at 1k
// and 1.09-1.12 from 1.5k to 4k (d = 64, H200, same call, 2026-11-26 23:08 UTC). Under a causal mask they took from
// 3072 queries until session 16 (0.94 at 2k, H100, 2026-11-26 23:57 UTC): an odd tile count left a unit of half the
// others' keys, and the first consumers walked key tiles that their rows do not see. With both mended (tile_order.hpp,
// mainloop.cuh's own_key_tile_end), causal, H200, in-process A/B, 2026-11-27 05:28 UTC: against the 128-row tile
// +3.7 / +7.9 / +7.3 % at 1k / 1.5k / 2k; against the 192-row tile before the two changes +3.5 % at 3k.
inline constexpr int kHopperLongTileSeqlen = 1024;

constexpr HopperForwardTile hopper_forward_tile(int head_dim, bool long_sequences = false) {
#if defined(FLASHATTN_DEV_HOPPER_N)
  if (head_dim > 0 && !long_sequences) {
    HopperForwardTile tile{FLASHATTN_DEV_HOPPER_M, FLASHATTN_DEV_HOPPER_N, FLASHATTN_DEV_HOPPER_STAGES, 24,
                           FLASHATTN_DEV_HOPPER_M == 192 ? 160 : 240};
    tile.overlap = FLASHATTN_DEV_HOPPER_OVERLAP;
    tile.ping_pong = FLASHATTN_DEV_HOPPER_PINGPONG;
    tile.tree_reductions = FLASHATTN_DEV_HOPPER_TREE;
    return tile;
  }
#endif
  // Shared memory: Q (block_m x d, one or two buffers), 2 x stages x block_n x d for K and V and the output
  // buffer, at most 227 KiB (hopper/attention/shape.cuh); registers per consumer thread: O (d / 2), S
  // (block_n / 2) and P (block_n / 4) of its 64 rows; 24 + 2 x 240 = 504 of the 512 per warpgroup lane.
  // FLASHATTN_DEV_HOPPER_{M,N,STAGES,OVERLAP,PINGPONG,TREE} build a variant. Measured on an H100 (bf16, batch x
  // seqlen = 16k, forward TFLOP/s at seqlen 1k / 2k / 4k / 16k, non-causal), 2026-11-26:
  //   d = 64:  the long-sequence tile is 192 x 128, 2 stages, without `overlap` (three consumers at 160
  //            registers, no ping-pong: the three take turns at the tensor cores by themselves; with `overlap` it
  //            spilled 394 bytes). H200, same call, 23:06 UTC, at 1k / 2k / 4k / 8k / 16k: 394 / 466 / 484 / 514 /
  //            514 (causal 240 / 323 / 414 / 454 / 477) against 394 / 430 / 445 / 454 / 456 (281 / 357 / 401 / 409
  //            / 427) for the tiles before it (128 x 128 below 8k, then 192 x 80 with `overlap`); 3 stages 1 %
  //            slower, tree reductions 2-4 % slower, 192 x 80 without `overlap` 13-15 % slower from 2k. Earlier, on
  //            an H100: 128 x 128, 3 stages 385 / 422 / 442 / 454 at 1k / 2k / 4k / 16k; 128 x 192, 2 stages 343 /
  //            419 / 445 / 477 (another call; it spilled 120 bytes; the n192 wgmma is gone with it). Same call,
  //            19:38 UTC, 1k / 2k / 4k, no mask (causal): 128 x 128, 3 stages 385 / 422 / 444
  //            (285 / 352 / 400); without `ping_pong` 393 / 428 / 452 (285 / 348 / 399); 2 stages 384 / 418 /
  //            441 (284 / 350 / 395); 128 x 80, 4 stages 351 / 383 / 402 (241 / 317 / 361). cuDNN 439-491
  //            (341-443). The 128-row tile runs without `ping_pong` since session 11: with the tree reductions,
  //            H100, same call, 23:57 UTC, causal +2.2 / +0.8 / +1.3 / +1.9 % at 1k / 1.5k / 2k / 3k, without a
  //            mask within 0.6 % (a second copy of the same library read -1.5 to +0.8 %).
  //   d = 128: 128 x 128, 2 stages, two Q buffers 563 / 626 / 658 at 1k / 2k / 4k; 3 stages with one Q
  //            buffer 543 / 626 / 668 (same call). Without `overlap` 6 / 10 / 12 / 14 % slower at 1k / 2k /
  //            4k / 16k; without `ping_pong` within 1 % (same call). 128 x 176 (FA3's non-causal tile; one Q
  //            buffer, O through it; it spilled 284 bytes with `overlap`) 434 / 547 / 623 / 667 / 666 at 1k / 2k /
  //            4k / 8k / 16k against 555 / 620 / 653 / 667 / 653, 450 / 504 / 548 / 565 / 533 without `overlap`
  //            (same call, 2026-11-26 19:25 UTC; the n176 wgmma is gone with it).
  //   d = 256: 128 x 80 580 / 675 / 724 / 772; 128 x 64 561 / 643 / 683 / 711 (the call before: n64 wgmma
  //            read K and Q from shared memory as fast as it can deliver).
  if (head_dim <= 64 && long_sequences) return {192, 128, 2, 24, 160, false, false, false, false};
  if (head_dim <= 64) return {128, 128, 3, 24, 240, true, false, true};
  if (head_dim <= 128) {
    HopperForwardTile tile{128, 128, 2, 24, 240, true, true, true};
    tile.output_under_scores = true;
    return tile;
  }
  return {128, 80, 2, 24, 240, true, true, false};
}

// Whether a long-sequence tile different from the default one is compiled for `head_dim` (instances/*_m192.cu).
constexpr bool hopper_long_tile(int head_dim) {
  return hopper_forward_tile(head_dim, true).block_m != hopper_forward_tile(head_dim, false).block_m;
}

// Backward: a block owns block_n keys of one KV head and walks the query tiles (block_m rows) of every
// query head of its group. Warp layouts per product:
//   S^T, dP^T (block_n x block_m): sdp_warps_n x (warps / sdp_warps_n)
//   dK, dV (block_n x head_dim):   kv_warps_n x (warps / kv_warps_n)
//   dQ (block_m x head_dim):       dq_warps_m x (warps / dq_warps_m)
struct BackwardTile {
  int warps;
  int block_m;
  int block_n;
  int sdp_warps_n;
  int kv_warps_n;
  int dq_warps_m;
  int min_blocks_per_sm;

  constexpr int threads() const { return warps * kWarpSize; }
};

constexpr BackwardTile backward_tile(int head_dim) {
#if defined(FLASHATTN_DEV_BWD_WARPS)
  if (head_dim > 0) {
    return {FLASHATTN_DEV_BWD_WARPS, FLASHATTN_DEV_BWD_M,  FLASHATTN_DEV_BWD_N,   FLASHATTN_DEV_BWD_SDP,
            FLASHATTN_DEV_BWD_KV,    FLASHATTN_DEV_BWD_DQ, FLASHATTN_DEV_BWD_MINB};
  }
#endif
  // Same card and shapes, after the softmax-gradient phase was compiled per case (kernel.cuh), 2026-11-26:
  //   d = 64:  block_m 128, warps of 32 keys for S^T, dK/dV and dQ, one block per SM: 247 / 234
  //            (block_m 64 with two blocks per SM at 128 registers, which spill: 199 / 183).
  //   d = 128: dQ in warps of 32 rows x 32 channels: 267 / 244 (16 rows x 64 channels: 262 / 239).
  //   d = 256: dK/dV in warps of 32 keys x 64 channels, dQ in 32 x 64: 211 / 200 (16 keys x 128, dQ in
  //            16 x 128: 199 / 188).
  // With the dQ sums in 8 x 8 blocks (params.hpp) the same entries give 267 / 251, 319 / 287 and (dQ 32
  // channels at a time) 254 / 250; block_m 64 at d = 64 then gave 244 / 229 and 253 / 235 (dQ warps 16 x 32).
  if (head_dim <= 64) return {8, 128, 128, 4, 4, 4, 1};
  if (head_dim <= 128) return {8, 64, 128, 4, 4, 2, 1};
  return {8, 64, 64, 4, 2, 2, 1};
}

// The deterministic backward's dQ pass: a block owns block_m query rows and walks the keys.
constexpr ForwardTile dq_tile(int head_dim) {
  if (head_dim <= 128) return {4, 1, 64, false, 2};
  return {4, 1, 32, false, 1};
}

// Decoding (the KV-cache call, decode/kernel.cuh): a block owns kDecodeRows query rows (the query heads of
// one KV head times the new tokens) and a key range of one sequence. Each of its warps takes its own
// keys_per_warp keys of every key tile, so the block reads each K/V byte once whatever the number of
// rows; the warps' partial softmax states merge at the end. Key tiles stream through `stages` cp.async
// buffers: memory-bound work wants bytes in flight, not reuse.
struct DecodeTile {
  int warps;
  int keys_per_warp;
  int stages;
  int min_blocks_per_sm;

  constexpr int threads() const { return warps * kWarpSize; }
  constexpr int tile_keys() const { return warps * keys_per_warp; }
  constexpr bool operator==(const DecodeTile& o) const {
    return warps == o.warps && keys_per_warp == o.keys_per_warp && stages == o.stages &&
           min_blocks_per_sm == o.min_blocks_per_sm;
  }
};
inline constexpr int kDecodeRows = 16;
// At most this many key splits per block's rows: the combine (decode/merge.cuh) keeps one weight per split in
// shared memory.
inline constexpr int kMaxDecodeSplits = 128;
// On Hopper, up to this many splits run as one thread-block cluster and merge through its distributed shared
// memory (decode/epilogue.cuh) instead of the workspace and the combine: 8 is the portable cluster size.
inline constexpr int kMaxClusterSplits = 8;

// Three tiles per head_dim: wide blocks, one per SM, for calls of few (sequence, KV head) units, whose keys the
// host splits across the SMs; narrow blocks, several per SM, for calls of many short units, where one block's
// start and end (page lookups, queries, the merge of the warps) overlap the others' copies; medium blocks, two
// per SM, for paged caches in a few waves of units, where each block's first copies wait for its page lookups.
// Head dims whose narrow or medium tile is their wide one have no instances of it.
enum class DecodeWidth { kWide, kMedium, kNarrow };

constexpr DecodeTile decode_tile(int head_dim, DecodeWidth width = DecodeWidth::kWide) {
#if defined(FLASHATTN_DEV_DEC_WARPS)
  if (head_dim > 0) {
    return {FLASHATTN_DEV_DEC_WARPS, FLASHATTN_DEV_DEC_KEYS, FLASHATTN_DEV_DEC_STAGES, FLASHATTN_DEV_DEC_MINB};
  }
#endif
  // Measured on an H100 at d = 128 (bf16, 32 query / 8 KV heads, one new token, copy-engine loads), K/V TB/s
  // at batch x keys 64 x 4k, 8 x 32k, 2 x 128k, 1 x 128k, 2026-11-26: 8 warps x 16 keys, 2 stages 2.93, 2.97,
  // 2.94, 2.66; 4 warps, 3 stages 2.91, 2.94, 2.91, 2.63; 8 warps, 3 stages 2.90, 2.92, 2.88, 2.58; 4 warps,
  // 4 stages 2.83, 2.85, 2.82, 2.45. Deeper pipelines did not pay: the copies are not short of bytes in
  // flight. d = 64 and 256 keep the 4-warp layout, not measured against others.
  // Narrow, measured on the same card and shapes plus 256 x 512 and 256 x 2k keys (paged: pages of 16):
  // 4 warps, 2 stages (68 KB of shared memory: three blocks per SM) read 256 x 512 at 2.70 (paged 2.60)
  // against the wide tile's 2.62 (2.22), and 256 x 2k paged at 2.95 against 2.79; 4 warps, 3 stages (two
  // per SM) 2.58 (2.42); 2 warps, 3 stages (four per SM) 2.55 (2.51). With 4 units per SM (64 x 4k) the wide
  // tile stays ahead: 2.94 against 2.81.
  // Medium, same card, 2026-11-26 (one call, µs, the wide tile first): 6 warps, 2 stages (100 KB: two blocks per
  // SM) read paged 64 x 4k in 371.7 against 385.0, 64 x 2k 199.4 against 207.2, 64 x 512 70.6 against 72.6; on the
  // contiguous cache the same within 0.3 % at 64 x 4k and 64 x 2k, and slower at 64 x 512 (73.1 against 70.7).
  if (head_dim <= 64) return {4, 16, 4, 2};
  if (head_dim <= 128) {
    switch (width) {
      case DecodeWidth::kWide:
        return {8, 16, 2, 1};
      case DecodeWidth::kMedium:
        return {6, 16, 2, 2};
      case DecodeWidth::kNarrow:
        return {4, 16, 2, 3};
    }
  }
  return {4, 16, 2, 1};
}

}  // namespace flashattn::cuda
