#!/usr/bin/env bash
# Tile-size sweep for the CUDA kernels, on the GPU machine: each variant overrides src/cuda/tiles.hpp's
# table for one head dimension (FLASHATTN_DEV_* definitions), is built on its own (kernels for that head
# dimension only, for the card present), checked against the CPU backend and timed by kernel_sweep.
#
# usage: bench/cuda/tile_sweep.sh HEAD_DIM 'name|forward tile|backward tile' ...
#   forward tile:  warps,m_tiles,block_n,q_in_registers,min_blocks_per_sm,kv_stages  (empty: the table's)
#   backward tile: warps,block_m,block_n,sdp_warps_n,kv_warps_n,dq_warps_m,min_blocks_per_sm
# e.g. bench/cuda/tile_sweep.sh 128 'table||' 'wide|4,2,64,false,2,2|8,64,128,4,4,4,1'
# Prints ptxas' register and spill lines for the kernels, then kernel_sweep's check and time lines.
set -uo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
head_dim=${1:?usage: tile_sweep.sh HEAD_DIM VARIANT...}
shift
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d '.')
[ "$arch" = 90 ] && arch=90a

for variant in "$@"; do
  IFS='|' read -r name forward backward <<< "$variant"
  defines=""
  if [ -n "$forward" ]; then
    IFS=',' read -r w m n q b stages <<< "$forward"
    defines+=" -DFLASHATTN_DEV_FWD_WARPS=$w -DFLASHATTN_DEV_FWD_MTILES=$m -DFLASHATTN_DEV_FWD_N=$n"
    defines+=" -DFLASHATTN_DEV_FWD_QREG=$q -DFLASHATTN_DEV_FWD_MINB=$b -DFLASHATTN_DEV_FWD_STAGES=${stages:-2}"
  fi
  if [ -n "$backward" ]; then
    IFS=',' read -r w m n sdp kv dq b <<< "$backward"
    defines+=" -DFLASHATTN_DEV_BWD_WARPS=$w -DFLASHATTN_DEV_BWD_M=$m -DFLASHATTN_DEV_BWD_N=$n"
    defines+=" -DFLASHATTN_DEV_BWD_SDP=$sdp -DFLASHATTN_DEV_BWD_KV=$kv -DFLASHATTN_DEV_BWD_DQ=$dq -DFLASHATTN_DEV_BWD_MINB=$b"
  fi
  build="$repo_root/build-sweep-$name"
  # nvcc splits option values at commas, so every field is its own definition.
  cmake -S "$repo_root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASHATTN_CUDA_ARCHS="$arch" \
    -DFLASHATTN_HEAD_DIMS="$head_dim" -DFLASHATTN_TESTS=OFF -DFLASHATTN_CLI=OFF \
    -DCMAKE_CUDA_FLAGS="$defines -Xptxas=-v" -DCMAKE_CXX_FLAGS="$defines" > "$build.log" 2>&1 &&
    cmake --build "$build" --target flashattn >> "$build.log" 2>&1 ||
    { echo "$name: build failed (log: $build.log)"; continue; }
  grep -A2 -E "Compiling entry function .*(forward_kernel|backward_kernel)" "$build.log" | grep -E "spill|Used" |
    sed "s/^/$name ptxas: /" | sort -u
  g++ -std=c++20 -O2 -I"$repo_root/include" -I"$build/include" -I/usr/local/cuda/include \
    "$repo_root/bench/cuda/kernel_sweep.cpp" -L"$build/src" -lflashattn -L/usr/local/cuda/lib64 -lcudart \
    -o "$build/kernel_sweep" || { echo "$name: kernel_sweep did not build"; continue; }
  LD_LIBRARY_PATH="$build/src" "$build/kernel_sweep" "$head_dim" | sed "s/^/$name /"
done
