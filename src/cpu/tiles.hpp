// Tile sizes of the CPU kernels, in one place.
#pragma once

#include <cstdint>

namespace flashattn::cpu {

// Forward: a task owns kForwardQueryTile query rows of one head and streams the keys kForwardKeyTile at a
// time. The query tile is also the vector axis of the transposed score tile (a multiple of every ISA's
// lane count).
inline constexpr std::int64_t kForwardQueryTile = 64;
inline constexpr std::int64_t kForwardKeyTile = 64;
// AMX bf16 forward: key tile of the row-major score tile; each sequence's keys are repacked from a multiple
// of it (kernel/forward_amx.hpp).
inline constexpr std::int64_t kAmxKeyTile = 128;
// AMX operands pad channels to whole 2 x 2 blocks of tiles: 32 bf16 values.
inline constexpr std::int64_t kAmxChannelBlock = 32;
// Backward: a key tile's K^T, V^T and dK, dV accumulators stay resident while the query tiles stream.
inline constexpr std::int64_t kBackwardQueryTile = 64;
inline constexpr std::int64_t kBackwardKeyTile = 64;
// Row padding of fp32 work buffers: the widest vector (AVX-512, 16 floats), so any ISA can use them.
inline constexpr std::int64_t kRowPadding = 16;

}  // namespace flashattn::cpu
