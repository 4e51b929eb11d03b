#!/usr/bin/env bash
# Issue 6 figures on one multi-GPU host, run from the repo root: OUT=/tmp/perf scripts/gpu_perf.sh [phase]
#   phase "main" (default): bench/train_throughput.py (all rows, variants, generation) and
#     scripts/gpu_parity.py on GPU 0, while GPUs 1-2 run the 1- and 2-GPU scaling rows;
#     (the scaling rows of that phase share the host with the throughput rows: report "wide"'s);
#   phase "wide": the scaling rows alone, one run at a time, on 1, 2 and all GPUs of the host.
set -uo pipefail
OUT=${OUT:-/tmp/perf}
PHASE=${1:-main}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
NGPU=$(nvidia-smi -L | wc -l)

scaling() {  # scaling RECIPE GPUS (comma list)
  local n; n=$(($(tr -cd , <<<"$2" | wc -c) + 1))
  CUDA_VISIBLE_DEVICES=$2 torchrun --standalone --nproc-per-node "$n" bench/train_scaling.py \
    --recipe "$1" --json "$OUT/scaling-$1-${n}gpu.json" 2>&1 | grep -v -i warn
}

if [ "$PHASE" = main ]; then
  (
    if [ "$NGPU" -ge 3 ]; then
      for recipe in mixed bf16; do scaling $recipe 1; scaling $recipe 1,2; done
    fi
  ) >"$OUT/scaling.log" 2>&1 &
  CUDA_VISIBLE_DEVICES=0 python3 bench/train_throughput.py --generation --steps 10 --json "$OUT/throughput.json" \
    --rows baseline_full,baseline_lora,ours_full,ours_full:inductor_ce,ours_lora,ours_lora:plain_lora,ours_no_lfa,ours_full_packed \
    2>&1 | grep -v -i warn | tee "$OUT/throughput.log"
  CUDA_VISIBLE_DEVICES=0 python3 scripts/gpu_parity.py 2>&1 | tee "$OUT/parity.log"
  wait
  cat "$OUT/scaling.log"
else
  sets="0"
  [ "$NGPU" -ge 2 ] && sets="$sets 0,1"
  [ "$NGPU" -ge 3 ] && sets="$sets $(seq -s, 0 $((NGPU - 1)))"
  for recipe in mixed bf16; do for gpus in $sets; do scaling $recipe "$gpus"; done; done | tee "$OUT/scaling-wide.log"
fi
