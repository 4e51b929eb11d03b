#!/usr/bin/env bash
# GPU smoke test of the trainer: bf16 autocast on one GPU, FSDP2 over NCCL on all GPUs,
# bf16 parity at the Yuan2-2B shape. Run on a GPU machine from the repo root:
#   OUT=/tmp/out scripts/gpu_smoke.sh
set -euo pipefail
OUT=${OUT:-/tmp/gpu_smoke}
mkdir -p "$OUT"
PY=${PY:-python3}
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
export PYTHONUNBUFFERED=1

cat > "$OUT/small.yaml" <<YAML
model: {preset: yuan2_small}
data: {path: $PWD/trainer/assets/demo, seq_len: 512}
output_dir: $OUT/one
train: {method: full, max_steps: 30, micro_batch_size: 4, lr: 0.002, warmup_steps: 3, precision: bf16}
checkpoint: {every_steps: 10}
eval: {max_new_tokens: 16}
YAML
$PY -m trainer train --config "$OUT/small.yaml"
if [ "$NGPU" -ge 2 ]; then
  sed -e "s#$OUT/one#$OUT/multi#" -e "s/micro_batch_size: 4/micro_batch_size: $((4 / NGPU > 0 ? 4 / NGPU : 1))/" \
    "$OUT/small.yaml" > "$OUT/multi.yaml"
  torchrun --standalone --nproc-per-node "$NGPU" -m trainer train --config "$OUT/multi.yaml"
  $PY - "$OUT" <<'PYEOF'
import json, sys
out = sys.argv[1]
def losses(d):
    return {r["step"]: r["loss"] for r in map(json.loads, open(f"{out}/{d}/metrics.jsonl")) if r["kind"] == "train"}
a, b = losses("one"), losses("multi")
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
print(f"one GPU vs FSDP2: worst relative loss difference {worst:.2e} over {len(a)} steps (bf16)")
PYEOF
fi
$PY scripts/gpu_parity.py
