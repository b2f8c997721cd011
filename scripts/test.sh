#!/usr/bin/env bash
# Builds flashattn with its tests and runs every test; the last line is CTest's summary.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

"$repo_root/scripts/deps.sh"
"$repo_root/scripts/build.sh" -DFLASHATTN_TESTS=ON -DFLASHATTN_CLI=ON
ctest --test-dir "$repo_root/build" --output-on-failure -j"$(nproc)"
