#!/usr/bin/env bash
# Configures and builds flashattn (Release, Ninja, every core) in build/ at the repository root; the CUDA
# backend is compiled when CMake finds nvcc. Arguments go to the configure step, then those in the
# environment variable FLASHATTN_CMAKE_ARGS (e.g. FLASHATTN_CMAKE_ARGS=-DFLASHATTN_CUDA=OFF). Set
# FLASHATTN_BUILD_TARGET to build one target only. Used by bench.sh and test.sh.
#
# usage: scripts/build.sh [cmake configure arguments...]
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir="$repo_root/build"

read -r -a user_cmake_args <<< "${FLASHATTN_CMAKE_ARGS:-}"
cmake -S "$repo_root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" "${user_cmake_args[@]}"
target_args=()
if [ -n "${FLASHATTN_BUILD_TARGET:-}" ]; then
  target_args=(--target "$FLASHATTN_BUILD_TARGET")
fi
cmake --build "$build_dir" --parallel "$(nproc)" "${target_args[@]}"
