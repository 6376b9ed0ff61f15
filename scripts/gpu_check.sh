#!/usr/bin/env bash
# The GPU checks in one run (estimated 6-9 minutes on an H100; not yet run on one), for a session lent a GPU:
#   bash scripts/gpu_check.sh                 # on the GPU box, from a checkout (nothing installed)
#   TINY=1 bash scripts/gpu_check.sh          # tiny sizes on the CPU, to test this script itself
# Results go to $OUT (the device tool's folder; default docs/gpu), a short table is printed last.
# It measures the card as found: it never changes clocks, power limits or modes.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-docs/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
log() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }

if [ "${TINY:-0}" = 1 ]; then
  DEV=cpu; R50="-w cnn -b 2,8,32 --budget 0.3"; TF="-w transformer -b 2,8 --budget 0.3"
  SUITES="--bench-device cpu --bench-workloads mlp --bench-batch-sizes 4 --bench-budget 0.1"
  CMP="--device cpu --batch-sizes 16 --rounds 2"; OVH="--device cpu --batch-size 64 --rounds 2"; PEAK="--size 256"
else
  DEV=cuda
  R50="-w resnet50 -p bf16 --channels-last --budget 2 --max-batch 4096"
  TF="-w transformer -p bf16 -a seq_len=1024 -a d_model=1024 -a n_layers=12 -a n_heads=16 -a vocab=32768 --budget 2 --max-batch 1024"
  SUITES="--bench-device cuda --bench-budget 1 --bench-precisions bf16 --bench-workloads mlp,cnn,transformer"  # a subset: the whole GPU tier takes longer than one device call
  CMP="--device cuda --workload resnet50 --batch-sizes 32,256 --rounds 3"
  OVH="--device cuda --workload resnet50 --batch-size 256 --rounds 6"; PEAK=""
fi

log "environment"; nvidia-smi --query-gpu=name,memory.total,power.limit,clocks.max.sm --format=csv 2>/dev/null || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"

log "GPU-marked tests"
$PY -m pytest tests -m gpu -q -p no:cacheprovider 2>&1 | tail -15

log "peak matmul throughput"
$PY -m bench peak --device $DEV $PEAK --json "$OUT/peak.json" 2>&1 | tail -12

log "ResNet-50-class sweep up to out-of-memory, then the largest-batch search"
$PY -m bench sweep -d $DEV $R50 -q --overwrite -o "$OUT/sweep-resnet50.json" 2>&1 | tail -30

log "transformer sweep"
$PY -m bench sweep -d $DEV $TF -q --overwrite -o "$OUT/sweep-transformer.json" 2>&1 | tail -30

log "harness vs torch.utils.benchmark"
$PY scripts/compare_timer.py $CMP --json "$OUT/compare-timer.json" 2>&1 | tail -5

log "sampler overhead"
$PY scripts/sampler_overhead.py $OVH --json "$OUT/sampler-overhead.json" 2>&1 | tail -3

log "nightly suites"
$PY -m pytest suites/ -q -p no:cacheprovider $SUITES --benchmark-json "$OUT/suites.json" 2>&1 | tail -8

log "summary"
$PY - "$OUT" <<'EOF'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
for name in ("sweep-resnet50.json", "sweep-transformer.json"):
    p = out / name
    if not p.exists():
        print(f"{name}: missing"); continue
    d = json.loads(p.read_text())
    ok = [q for q in d["points"] if q["status"] == "ok"]
    print(f"{name}: {len(ok)} ok points, largest batch that fits {d['largest_batch']['batch_size']} "
          f"({d['largest_batch']['reason']})")
    for s in (d.get("analysis") or {}).get("verdict", []):
        print("   ", s)
EOF
