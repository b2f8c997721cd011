#!/usr/bin/env bash
# Builds flashattn and runs its main job: `flashattn bench` on the default problem (batch 1, seqlen 2048,
# 16 heads, head_dim 128, bf16, forward), on the GPU when this build can use one, else on the CPU.
# Arguments go to `flashattn bench` (see build/flashattn bench --help), e.g. scripts/bench.sh --backward.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

"$repo_root/scripts/deps.sh" --no-tests
FLASHATTN_BUILD_TARGET=flashattn_cli "$repo_root/scripts/build.sh" -DFLASHATTN_TESTS=OFF -DFLASHATTN_CLI=ON
"$repo_root/build/flashattn" info
echo
exec "$repo_root/build/flashattn" bench "$@"
