#!/usr/bin/env bash
# One full GPU check in one go, for the GPU machine (no network needed): builds flashattn with its Python
# module for the card present on every core, runs every test through ctest (CPU and GPU) and then the Python
# tests under pytest (NumPy, PyTorch and CuPy, CUDA tensors included), runs a small GPU grid under
# compute-sanitizer (memcheck, racecheck), and benchmarks forward and backward against PyTorch's
# scaled_dot_product_attention backends through the Python package. A failing step does not stop the later
# ones; the exit status is 1 when any step failed or could not run (no GPU), 2 for a malformed command line.
#
# usage: scripts/gpu_check.sh OUTDIR
#
# OUTDIR gets at most 8 files: summary.json (rewritten after every step: card, date, commit, per-step
# status and seconds, test counts, failed tests), build.log (configure, build, `flashattn info`, the Python
# package), ctest.log (ctest, then pytest), sanitizer.log, bench.log, bench.json, bench.md and bench.png
# (bench/gpu_attention.py).
#
# Environment:
#   GPU_CHECK_STEPS       steps to run, comma-separated (default build,python,test,sanitize,bench); they
#                         always run in that order, and a later call can reuse the build of an earlier one
#   FLASHATTN_BENCH       quick (default: sequence lengths 1k, 4k, 16k) or full (512 ... 16k); 20 timed runs
#   FLASHATTN_CUDA_ARCHS  architectures to build (default: the card's, from nvidia-smi: 9.0 -> 90a, 8.6 -> 86)
#   FLASHATTN_CMAKE_ARGS  extra configure arguments
#   FLASHATTN_PYTHONPATH  where an already built flashattn package is importable; the python step then only
#                         checks the import instead of assembling the package in BUILD_DIR/python-site
#   GPU_CHECK_BUILD_DIR   build directory (default build-gpu in the repository, which git ignores)
#   GPU_CHECK_BUDGET_S    wall-clock seconds the whole check may take (default 540, under the GPU machine's
#                         10-minute limit per command): each step gets what is left, a step that cannot
#                         start in time is recorded as not run
#   GPU_CHECK_JOBS        parallel ctest jobs (default: the core count)
set -uo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly all_steps=(build python test sanitize bench)
# compute-sanitizer runs these GPU tests: the attention grid of tests/cuda/test_cuda_shapes.cpp (sanitizer_grid; on
# an H100 its batched forward cases run on the Hopper kernel),
# and the KV-cache call's split and CUDA-graph cases (tests/cuda/test_cuda_kvcache.cpp: paged and contiguous
# caches, copy-engine and thread copies, split-KV with its combine, many short sequences on the narrow tile).
readonly sanitizer_filter='Sanitizer/*:KVCache/CudaKVSplits.*:CudaKVGraph.*'
# A step is not started with less time left than this: it could not finish and would leave no result.
readonly min_step_seconds=20

if [ $# -ne 1 ] || [[ "$1" == -* ]]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
  exit 2
fi
build_dir=${GPU_CHECK_BUILD_DIR:-$repo_root/build-gpu}
bench_mode=${FLASHATTN_BENCH:-quick}
budget_s=${GPU_CHECK_BUDGET_S:-540}
jobs=${GPU_CHECK_JOBS:-$(nproc)}

# True when the word $1 is one of the remaining arguments.
is_one_of() {
  local word=$1 candidate
  shift
  for candidate in "$@"; do [ "$candidate" = "$word" ] && return 0; done
  return 1
}

IFS=',' read -r -a requested_steps <<< "${GPU_CHECK_STEPS:-build,python,test,sanitize,bench}"
for step in "${requested_steps[@]}"; do
  if ! is_one_of "$step" "${all_steps[@]}"; then
    echo "gpu_check.sh: unknown step '$step' in GPU_CHECK_STEPS (steps: ${all_steps[*]})" >&2
    exit 2
  fi
done
if [ "$bench_mode" != quick ] && [ "$bench_mode" != full ]; then
  echo "gpu_check.sh: FLASHATTN_BENCH must be quick or full, not '$bench_mode'" >&2
  exit 2
fi

mkdir -p "$1" || exit 2
out_dir=$(cd "$1" && pwd)
start_time=$(date +%s)
state_file=$(mktemp)
trap 'rm -f "$state_file"' EXIT
any_failure=0

log() { echo "gpu_check.sh: $*" >&2; }
# Records a summary.json entry: a dotted key (steps.build.status; a last part ending in [] appends to a list)
# and its value (integers, true, false and null keep their JSON types).
record() { printf '%s\t%s\n' "$1" "$2" >> "$state_file"; }
seconds_left() { echo $((budget_s - ($(date +%s) - start_time))); }
# A limit for `timeout`, which reads 0 as "no limit": at least one second.
limit() { local left; left=$(seconds_left); echo $((left > 0 ? left : 1)); }

write_summary() {
  python3 - "$state_file" "$out_dir/summary.json" << 'PY'
import json, sys

def typed(text):
    if text.lstrip("-").isdigit():
        return int(text)
    return {"true": True, "false": False, "null": None}.get(text, text)

summary = {}
with open(sys.argv[1], encoding="utf-8") as state:
    for line in state:
        key, _, value = line.rstrip("\n").partition("\t")
        *parents, leaf = key.split(".")
        node = summary
        for parent in parents:
            node = node.setdefault(parent, {})
        if leaf.endswith("[]"):
            node.setdefault(leaf[:-2], []).append(typed(value))
        else:
            node[leaf] = typed(value)
with open(sys.argv[2], "w", encoding="utf-8") as out:
    json.dump(summary, out, indent=2)
    out.write("\n")
PY
}

# Runs one step's function with the time that is left, and records its status and duration.
run_step() {
  local step=$1 left status began
  left=$(seconds_left)
  if [ "$left" -lt "$min_step_seconds" ]; then
    log "$step: not run, ${left}s of the ${budget_s}s budget left"
    record "steps.$step.status" "not_run"
    record "steps.$step.note" "out of time: ${left}s of GPU_CHECK_BUDGET_S=${budget_s} left"
    any_failure=1
    write_summary
    return
  fi
  log "$step: running (${left}s left)"
  began=$(date +%s)
  case "$step" in
    build) step_build "$left" ;;
    python) step_python "$left" ;;
    test) step_test "$left" ;;
    sanitize) step_sanitize "$left" ;;
    bench) step_bench "$left" ;;
  esac
  status=$?
  record "steps.$step.seconds" "$(($(date +%s) - began))"
  case "$status" in
    0) record "steps.$step.status" "pass" ;;
    124) record "steps.$step.status" "timeout"; any_failure=1 ;;
    *) record "steps.$step.status" "fail"; any_failure=1 ;;
  esac
  log "$step: $(tail -n 1 "$state_file" | cut -f2) after $(($(date +%s) - began))s"
  write_summary
}

# The card, and the architecture to build for: 9.0 -> 90a (Hopper's wgmma / TMA need the arch-specific
# target), any other x.y -> xy.
detect_card() {
  local line
  card_name="" compute_cap="" detected_archs=""
  if ! command -v nvidia-smi > /dev/null; then
    gpu_note="no NVIDIA GPU: nvidia-smi is not installed"
  elif ! line=$(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>&1 |
    head -n 1) || [[ "$line" != *,* ]]; then
    gpu_note="no NVIDIA GPU: nvidia-smi says: $line"
  else
    IFS=',' read -r card_name compute_cap driver memory <<< "$line"
    card_name=$(echo "$card_name" | xargs) compute_cap=$(echo "$compute_cap" | xargs)
    record "gpu.driver" "$(echo "$driver" | xargs)"
    record "gpu.memory" "$(echo "$memory" | xargs)"
    if [ "$compute_cap" = "9.0" ]; then detected_archs=90a; else detected_archs=${compute_cap/./}; fi
    gpu_note=""
  fi
}

step_build() {
  local left=$1 archs=${FLASHATTN_CUDA_ARCHS:-$detected_archs} began status
  local configure_args=(-S "$repo_root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASHATTN_CUDA=ON
    -DFLASHATTN_TESTS=ON -DFLASHATTN_CLI=ON)
  [ -n "$archs" ] && configure_args+=("-DFLASHATTN_CUDA_ARCHS=$archs")
  # The Python module comes from this same build (one compilation of the kernels, not a second one by pip),
  # where nanobind is installed; without it the python and bench steps report the missing package.
  : > "$out_dir/build.log"
  if python3 -m nanobind --cmake_dir > /dev/null 2>&1; then
    configure_args+=(-DFLASHATTN_PYTHON=ON)
  else
    echo "== no nanobind for python3: building without the Python module" >> "$out_dir/build.log"
  fi
  read -r -a user_args <<< "${FLASHATTN_CMAKE_ARGS:-}"
  record "build.cuda_archs" "${archs:-project default (no GPU detected)}"
  began=$(date +%s)
  {
    echo "== configure: cmake ${configure_args[*]} ${user_args[*]}"
    timeout "$left" cmake "${configure_args[@]}" "${user_args[@]}" &&
      echo "== build: cmake --build $build_dir --parallel $(nproc)" &&
      timeout "$(limit)" cmake --build "$build_dir" --parallel "$(nproc)"
  } >> "$out_dir/build.log" 2>&1
  status=$?
  record "build_seconds" "$(($(date +%s) - began))"
  { echo "== flashattn info"; "$build_dir/flashattn" info; } >> "$out_dir/build.log" 2>&1
  return "$status"
}

python_can_import() {
  PYTHONPATH="$bench_pythonpath${PYTHONPATH:+:$PYTHONPATH}" python3 -c \
    'import flashattn; print("flashattn", getattr(flashattn, "__version__", "?"), "from", flashattn.__file__)'
}

# Lays the flashattn package out in BUILD_DIR/python-site as its wheel holds it: the build's `python` install
# component (the extension module and libflashattn) plus the package's Python sources (pyproject.toml's
# wheel.packages). `pip install .` would compile the whole library, kernels included, a second time.
step_python() {
  local left=$1 site="$build_dir/python-site"
  {
    if [ -n "${FLASHATTN_PYTHONPATH:-}" ]; then
      echo "== python: FLASHATTN_PYTHONPATH=$FLASHATTN_PYTHONPATH, checking the import only"
      python_can_import
      return
    fi
    echo "== python: cmake --install $build_dir --component python --prefix $site, then python/flashattn/*.py"
    rm -rf "$site"
    timeout "$left" cmake --install "$build_dir" --component python --prefix "$site" || return
    if ! compgen -G "$site/flashattn/_ext*" > /dev/null; then
      echo "the build has no Python module: it was configured without FLASHATTN_PYTHON (no nanobind?)"
      return 1
    fi
    cp -r "$repo_root/python/flashattn/." "$site/flashattn/" && python_can_import
  } >> "$out_dir/build.log" 2>&1
}

# Test counts from ctest's JUnit file: GPU tests (prefix cuda:) and CPU tests, with the failed ones' names.
record_test_counts() {
  python3 - "$1" >> "$state_file" << 'PY'
import sys
import xml.etree.ElementTree as ET

# Skips of tests that need more GPUs than the machine has ("... the test needs at least two"): counted apart.
MORE_DEVICES = "the test needs at least"
fields = ("total", "passed", "failed", "skipped", "skipped_more_devices")
counts = {kind: dict.fromkeys(fields, 0) for kind in ("cpu", "cuda")}
failed, skip_reasons = [], set()
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    name = case.get("name", "")
    kind = counts["cuda" if name.startswith("cuda:") else "cpu"]
    kind["total"] += 1
    if case.find("skipped") is not None or case.get("status") == "notrun":
        kind["skipped"] += 1
        out = case.findtext("system-out") or ""
        lines = out.splitlines()
        for i, line in enumerate(lines[:-1]):
            if line.endswith(": Skipped"):
                skip_reasons.add(lines[i + 1].strip())
                if MORE_DEVICES in lines[i + 1]:
                    kind["skipped_more_devices"] += 1
    elif case.find("failure") is not None or case.get("status") == "fail":
        kind["failed"] += 1
        failed.append(name)
    else:
        kind["passed"] += 1
for kind, numbers in counts.items():
    for key, value in numbers.items():
        print(f"tests.{kind}.{key}\t{value}")
for name in failed[:100]:
    print(f"tests.failed[]\t{name}")
for reason in sorted(skip_reasons)[:10]:
    print(f"tests.skip_reasons[]\t{reason}")
PY
}

step_test() {
  local left=$1 junit="$build_dir/gpu_check_junit.xml" status
  rm -f "$junit"
  timeout "$left" ctest --test-dir "$build_dir" -j"$jobs" --output-on-failure --output-junit "$junit" \
    > "$out_dir/ctest.log" 2>&1
  status=$?
  [ -f "$junit" ] || return "$status"
  record_test_counts "$junit"
  local cuda_total cuda_skipped
  cuda_total=$(awk -F'\t' '$1 == "tests.cuda.total" { v = $2 } END { print v + 0 }' "$state_file")
  cuda_skipped=$(awk -F'\t' '$1 == "tests.cuda.skipped" { v = $2 } END { print v + 0 }' "$state_file")
  cuda_skipped=$((cuda_skipped - $(awk -F'\t' '$1 == "tests.cuda.skipped_more_devices" { v = $2 } END { print v + 0 }' \
    "$state_file")))
  # On the GPU machine a skipped GPU test is a failed check, not a pass: it did not test the GPU. Tests that need
  # more GPUs than the machine has are the exception (tests.cuda.skipped_more_devices in summary.json).
  if [ "$cuda_total" -eq 0 ]; then
    echo "gpu_check.sh: no GPU tests ran (was the build configured with FLASHATTN_CUDA=ON?)" >> "$out_dir/ctest.log"
    return 1
  fi
  if [ "$cuda_skipped" -gt 0 ]; then
    echo "gpu_check.sh: $cuda_skipped of $cuda_total GPU tests skipped (see tests.skip_reasons in summary.json)" \
      >> "$out_dir/ctest.log"
    status=1
  fi
  step_pytest || status=1
  return "$status"
}

# The Python tests with the package the python step laid out (CUDA tensors through PyTorch and CuPy here;
# CI runs the same files without a GPU). Its last line, pytest's summary, goes to summary.json.
step_pytest() {
  local status
  {
    echo "== python3 -m pytest tests/python (PYTHONPATH=$bench_pythonpath)"
    PYTHONPATH="$bench_pythonpath${PYTHONPATH:+:$PYTHONPATH}" timeout "$(limit)" \
      python3 -m pytest "$repo_root/tests/python" -q -rs -p no:cacheprovider
  } > "$build_dir/pytest.log" 2>&1
  status=$?
  cat "$build_dir/pytest.log" >> "$out_dir/ctest.log"
  record "tests.python" "$(tail -n 1 "$build_dir/pytest.log" | tr -d '=' | xargs)"
  return "$status"
}

step_sanitize() {
  local left=$1 sanitizer tool status=0 tool_status passed
  sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  : > "$out_dir/sanitizer.log"
  if [ ! -x "$sanitizer" ]; then
    echo "compute-sanitizer not found (PATH, /usr/local/cuda/bin)" >> "$out_dir/sanitizer.log"
    return 1
  fi
  if [ -z "$card_name" ]; then
    echo "not run: $gpu_note" >> "$out_dir/sanitizer.log"
    return 1
  fi
  for tool in memcheck racecheck; do
    echo "== $sanitizer --tool $tool --error-exitcode 1 flashattn_cuda_tests --gtest_filter=$sanitizer_filter" \
      >> "$out_dir/sanitizer.log"
    # Half of what is left for memcheck, the rest for racecheck.
    [ "$tool" = memcheck ] && left=$(($(limit) / 2 + 1)) || left=$(limit)
    timeout "$left" "$sanitizer" --tool "$tool" --error-exitcode 1 "$build_dir/tests/flashattn_cuda_tests" \
      --gtest_filter="$sanitizer_filter" > "$build_dir/sanitizer_$tool.log" 2>&1
    tool_status=$?
    cat "$build_dir/sanitizer_$tool.log" >> "$out_dir/sanitizer.log"
    # A run whose tests all skipped proves nothing: it must have passed some and skipped none.
    passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) tests\?\.$/\1/p' "$build_dir/sanitizer_$tool.log" | tail -n 1)
    if grep -q '^\[  SKIPPED \]' "$build_dir/sanitizer_$tool.log" || [ "${passed:-0}" -eq 0 ]; then
      [ "$tool_status" -eq 0 ] && tool_status=1
    fi
    record "sanitizer.$tool.status" "$([ "$tool_status" -eq 0 ] && echo pass || echo fail)"
    record "sanitizer.$tool.tests_passed" "${passed:-0}"
    [ "$tool_status" -eq 0 ] || status=$tool_status
  done
  return "$status"
}

step_bench() {
  local left=$1 mode_args=()
  [ "$bench_mode" = quick ] && mode_args=(--quick)
  record "bench.mode" "$bench_mode"
  record "bench.json" "bench.json"
  record "bench.markdown" "bench.md"
  PYTHONPATH="$bench_pythonpath${PYTHONPATH:+:$PYTHONPATH}" timeout "$left" \
    python3 "$repo_root/bench/gpu_attention.py" "${mode_args[@]}" --strict --json "$out_dir/bench.json" \
    --markdown "$out_dir/bench.md" --plot "$out_dir/bench.png" > "$out_dir/bench.log" 2>&1
  local status=$?
  record "bench.plot" "$([ -f "$out_dir/bench.png" ] && echo bench.png || echo null)"
  return "$status"
}

detect_card
bench_pythonpath=${FLASHATTN_PYTHONPATH:-$build_dir/python-site}
record "date" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
record "git_commit" "$(git -C "$repo_root" rev-parse HEAD 2> /dev/null || echo unknown)"
record "git_uncommitted_files" "$(git -C "$repo_root" status --porcelain 2> /dev/null | wc -l)"
record "host_cores" "$(nproc)"
record "steps_requested" "${requested_steps[*]}"
if [ -n "$card_name" ]; then
  record "gpu.name" "$card_name"
  record "gpu.compute_capability" "$compute_cap"
  log "card: $card_name (compute capability $compute_cap)"
else
  record "gpu.name" "null"
  record "gpu.note" "$gpu_note"
  log "$gpu_note; the GPU tests will skip, and the sanitizer and benchmark cannot run"
  any_failure=1
fi
write_summary

for step in "${all_steps[@]}"; do
  is_one_of "$step" "${requested_steps[@]}" && run_step "$step"
done

record "ok" "$([ "$any_failure" -eq 0 ] && echo true || echo false)"
record "total_seconds" "$(($(date +%s) - start_time))"
write_summary
log "summary: $out_dir/summary.json ($([ "$any_failure" -eq 0 ] && echo 'all steps passed' || echo 'FAILED'))"
exit "$any_failure"
