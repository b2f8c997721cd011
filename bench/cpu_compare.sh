#!/usr/bin/env bash
# flashattn's CPU backend beside PyTorch's CPU scaled_dot_product_attention, on the CPU shapes of the
# project's baseline table, fp32 and bf16, 2 and 16 threads, forward and backward. Meant for the GPU machine
# (16 cores, torch installed); not part of CI.
#
# usage: bench/cpu_compare.sh OUT_DIR [--threads "2 16"] [--dtypes "fp32 bf16"] [--warmup N] [--iters N]
#                                     [--no-torch] [--cli PATH]
#
# Writes into OUT_DIR: flashattn.jsonl (one `flashattn bench --json` line per run), torch.jsonl
# (bench/torch_cpu_sdpa.py), log.txt (everything printed), machine.txt (`flashattn info`, lscpu), and from
# bench/cpu_table.py table.md (ours vs PyTorch, GFLOP/s by the FlashAttention convention) and cpu_compare.png.
# Each thread count runs with OMP_NUM_THREADS=N, OMP_PROC_BIND=close and OMP_PLACES=cores, for both libraries.
# It builds build/flashattn first (scripts/build.sh), unless --cli names an already built flashattn tool.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
  exit 2
fi
out_dir=$1
shift
thread_counts="2 16"
dtypes="fp32 bf16"
warmup=2
iters=10
run_torch=1
cli=""
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) thread_counts=$2; shift 2 ;;
    --dtypes) dtypes=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --no-torch) run_torch=0; shift ;;
    --cli) cli=$2; shift 2 ;;
    *) echo "cpu_compare.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

# (batch heads seqlen head_dim causal): the CPU rows of the baseline table.
shapes=("1 16 2048 128 no" "1 16 2048 128 yes" "4 32 512 64 no")

mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
log="$out_dir/log.txt"
: > "$out_dir/flashattn.jsonl"
: > "$log"
# Without --no-torch the PyTorch figures are measured afresh; with it, an earlier torch.jsonl is reused.
[ "$run_torch" -eq 1 ] && : > "$out_dir/torch.jsonl"

if [ -z "$cli" ]; then
  FLASHATTN_BUILD_TARGET=flashattn_cli "$repo_root/scripts/build.sh" -DFLASHATTN_TESTS=OFF -DFLASHATTN_CLI=ON \
    >> "$log" 2>&1
  cli="$repo_root/build/flashattn"
fi
{
  "$cli" info
  echo
  lscpu 2> /dev/null || true
} > "$out_dir/machine.txt"

run_json=$(mktemp)
trap 'rm -f "$run_json"' EXIT
failures=0
for threads in $thread_counts; do
  export OMP_NUM_THREADS=$threads OMP_PROC_BIND=close OMP_PLACES=cores
  for dtype in $dtypes; do
    for shape in "${shapes[@]}"; do
      read -r batch heads seqlen head_dim causal <<< "$shape"
      causal_flag=()
      [ "$causal" = yes ] && causal_flag=(--causal)
      args=(bench --batch "$batch" --heads "$heads" --seqlen-q "$seqlen" --head-dim "$head_dim" "${causal_flag[@]}"
            --dtype "$dtype" --threads "$threads" --backward --warmup "$warmup" --iters "$iters" --json "$run_json")
      echo "== flashattn ${args[*]}" | tee -a "$log"
      if "$cli" "${args[@]}" >> "$log" 2>&1; then
        cat "$run_json" >> "$out_dir/flashattn.jsonl"
      else
        failures=$((failures + 1))
        echo "   failed (see $log)" | tee -a "$log"
        # A run that fails only its sanity check still wrote its timings.
        [ -s "$run_json" ] && cat "$run_json" >> "$out_dir/flashattn.jsonl"
      fi
      : > "$run_json"
    done
  done
  if [ "$run_torch" -eq 1 ]; then
    echo "== torch_cpu_sdpa.py --threads $threads --dtypes $dtypes" | tee -a "$log"
    # shellcheck disable=SC2086  # the dtype list splits into words on purpose
    python3 "$repo_root/bench/torch_cpu_sdpa.py" --threads "$threads" --dtypes $dtypes --warmup "$warmup" \
      --iters "$iters" --out "$out_dir/torch.jsonl" >> "$log" 2>&1 || failures=$((failures + 1))
  fi
done

table_args=("$out_dir/flashattn.jsonl")
[ -s "$out_dir/torch.jsonl" ] && table_args+=("$out_dir/torch.jsonl")
python3 "$repo_root/bench/cpu_table.py" "${table_args[@]}" --markdown "$out_dir/table.md" \
  --plot "$out_dir/cpu_compare.png" | tee -a "$log"
if [ "$failures" -gt 0 ]; then
  echo "cpu_compare.sh: $failures run(s) failed; see $log" >&2
  exit 1
fi
