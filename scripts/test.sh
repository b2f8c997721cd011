#!/usr/bin/env bash
# Builds flashattn with its tests and runs every test: the C++ suite (CTest), then the Python package, built
# and installed as `pip install .` does into a virtual environment in build/python-venv, under pytest. The
# last line is pytest's summary.
#
# The Python package is built without build isolation (its build packages come from the virtual
# environment, so that a machine without network builds it) and, on a machine without a GPU (no
# nvidia-smi), with -DFLASHATTN_CUDA=OFF: CI has nvcc but no GPU, and the CUDA kernels, already compiled
# once for the C++ tests, would only be compiled a second time. FLASHATTN_CMAKE_ARGS applies to both builds.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python_venv="$repo_root/build/python-venv"

"$repo_root/scripts/deps.sh" --python-venv="$python_venv"
"$repo_root/scripts/build.sh" -DFLASHATTN_TESTS=ON -DFLASHATTN_CLI=ON
ctest --test-dir "$repo_root/build" --output-on-failure -j"$(nproc)"

python_cmake_args=${FLASHATTN_CMAKE_ARGS:-}
if ! command -v nvidia-smi > /dev/null; then
  python_cmake_args+=" -DFLASHATTN_CUDA=OFF"
fi
CMAKE_ARGS="$python_cmake_args" "$python_venv/bin/python" -m pip install --no-build-isolation --no-deps \
  --disable-pip-version-check -C build-dir="$repo_root/build/python-build" "$repo_root"
cd "$repo_root"
"$python_venv/bin/python" -m pytest tests/python
