#!/usr/bin/env bash
# The data-parallel GPU checks in one run (estimated 3-5 minutes on one H100; not yet run on a GPU):
#   bash scripts/ddp_check.sh            # on the GPU box, from a checkout (nothing installed)
#   TINY=1 bash scripts/ddp_check.sh     # tiny sizes on the CPU (Gloo), to test this script itself
# 1. One GPU: the DDP wrapper's overhead. A torchrun job of one process measures each point under
#    DDP (world size 1) and, beside it, the plain step on the same GPU (the one-rank baseline), so
#    overhead = t(DDP) / t(plain) - 1 at each batch. A plain `bench sweep` is run too, for reference.
# 2. Every GPU of the box (when there are more than one): the data-parallel sweep, `bench allreduce`
#    and the suites' step-time cases under torchrun (rank 0 writes the JSON).
# Results go to $OUT (default docs/gpu), a summary is printed last. It changes no clock or mode.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-docs/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
log() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }

if [ "${TINY:-0}" = 1 ]; then
  DEV=cpu; NGPU=2; W="-w mlp -a in_features=64 -a hidden=64 -b 4,64 --budget 0.3 --no-telemetry"
  AR="-s 4096,1048576 --budget 0.3"
  SUITE=(-k "mlp-fp32-bs4-cpu" --bench-budget 0.3)
else
  DEV=cuda
  NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
  W="-w resnet50 -p bf16 --channels-last -b 16,64,256 --budget 2"
  AR="--budget 1"
  SUITE=(--bench-device cuda -k "mlp and bf16" --bench-budget 1)
fi
RUN="$PY -m torch.distributed.run --standalone"

log "environment"; nvidia-smi --query-gpu=name,memory.total,power.limit --format=csv 2>/dev/null || true
nvidia-smi topo -m 2>/dev/null || true

log "plain sweep (one process, no torchrun)"
$PY -m bench sweep -d $DEV $W -q --overwrite --no-largest-search -o "$OUT/ddp-plain.json" 2>&1 | tail -8

log "DDP on one process (torchrun --nproc_per_node=1): the wrapper's overhead against the plain step"
$RUN --nproc_per_node=1 -m bench sweep -d $DEV $W -q --overwrite -o "$OUT/ddp-1.json" 2>&1 | tail -12

if [ "$NGPU" -gt 1 ]; then
  log "data parallel over $NGPU devices"
  $RUN --nproc_per_node=$NGPU -m bench sweep -d $DEV $W -q --overwrite -o "$OUT/ddp-$NGPU.json" 2>&1 | tail -14
  log "all-reduce bandwidth over $NGPU devices"
  $RUN --nproc_per_node=$NGPU -m bench allreduce -d $DEV $AR --overwrite -o "$OUT/allreduce-$NGPU.json" 2>&1 | tail -14
  log "the suites' step-time cases over $NGPU devices"
  $RUN --nproc_per_node=$NGPU -m pytest suites/test_step_time.py "${SUITE[@]}" -q -p no:cacheprovider \
    --benchmark-json "$OUT/suites-ddp-$NGPU.json" 2>&1 | tail -6
else
  log "one GPU: no multi-GPU sweep or all-reduce bandwidth"
fi

log "summary"
$PY - "$OUT" <<'PYEOF'
import pathlib, sys
from bench.records.sweep import load_sweep
out = pathlib.Path(sys.argv[1])
p = out / "ddp-1.json"
if not p.exists():
    sys.exit("ddp-1.json missing")
r = load_sweep(p)
for row in r.distributed.analysis.points:
    if row.step_time_s is None or row.baseline_step_time_s is None:
        print(f"batch {row.per_rank_batch_size}: not measured ({row.null_reasons})"); continue
    e = row.efficiency
    lo = f"{1 / e.high - 1:+.1%}" if e.high else "?"
    hi = f"{1 / e.low - 1:+.1%}" if e.low else "?"
    print(f"batch {row.per_rank_batch_size:>5}: DDP {row.step_time_s * 1e3:.3f} ms, plain {row.baseline_step_time_s * 1e3:.3f} ms,"
          f" overhead {row.step_time_s / row.baseline_step_time_s - 1:+.1%} ({lo} to {hi})")
PYEOF
