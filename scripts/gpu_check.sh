#!/usr/bin/env bash
# The GPU checks in one run of at most 8 minutes on an H100 or H200 (not yet run on one), for a session
# lent a GPU:
#   bash scripts/gpu_check.sh                 # on the GPU box, from a checkout (nothing installed)
#   TINY=1 bash scripts/gpu_check.sh          # tiny sizes on the CPU, to test this script itself
# Results go to $OUT (the device tool's folder; default docs/gpu) as small files, one per check, with
# each check's log; the two sweeps' verdicts and a short table (scripts/gpu_check_summary.py) are
# printed last. It measures the card as found: it never changes clocks, power limits or modes.
#
# Each check runs under its own time limit (seconds, below), so one that hangs or runs long cannot
# take the others' time: the limits add up to 460 s, and the whole run stays under 8 minutes even if
# every check used all of its limit. A check cut off by its limit keeps what it wrote (sweep files are
# rewritten after every point) and the table says "timed out". Budgeted for torch.compile off and
# ResNet-50 bf16 steps of 10-300 ms (about 0.2 ms per image), whose largest batch on an H200 (~139 GiB)
# is about 3,000-4,000.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-docs/gpu}
mkdir -p "$OUT"
: > "$OUT/sections.tsv"
PY=${PYTHON:-python3}

if [ "${TINY:-0}" = 1 ]; then
  DEV=cpu
  GPU_TESTS="tests/test_memory.py tests/test_timing.py"   # every GPU-marked test skips here: collect a few
  R50="-w cnn -a image_size=8 -a width=2 -a blocks=1 -b 2,4 --budget 0.2"
  TF="-w transformer -a seq_len=16 -a d_model=16 -a n_layers=1 -a n_heads=2 -a vocab=32 -b 2,8 --budget 0.2 --no-largest-search"
  TIMERS="--device cpu -a in_features=64 -a hidden=64 -a depth=2 --batch-sizes 16 --rounds 2 --budget 0.2 --min-time 0.1"
  SAMPLER="--device cpu -a in_features=64 -a hidden=64 -a depth=2 --batch-sizes 1,8 --rounds 2 --budget 0.15"
  SUITES="--bench-device cpu --bench-workloads mlp --bench-batch-sizes 4 --bench-precisions bf16 --bench-budget 0.1"
  PEAK="--device cpu --precision fp32 --size 128 --warmup 0.05 --repeats 2 --min-repeat-s 0.02"
else
  DEV=cuda
  GPU_TESTS="tests"
  # Batch 4096 or 8192 runs out of memory on an 80-141 GB card; the search then finds the largest batch
  # between the last that fit and the first that did not, and a full measurement confirms it.
  R50="-w resnet50 -p bf16 --channels-last -b 1,4,16,64,256,1024,2048,4096,8192 --budget 1.5"
  TF="-w transformer -p bf16 -a seq_len=512 -a d_model=1024 -a n_layers=8 -a n_heads=16 -a vocab=32768 -b 1,4,16,64,256 --budget 1 --no-largest-search"
  TIMERS="--device cuda --workload resnet50 --precision bf16 --channels-last --batch-sizes 32,256 --rounds 3 --budget 1 --min-time 0.3"
  # Launch-bound batch sizes: a sampler thread taking the GIL would show here first.
  SAMPLER="--device cuda --batch-sizes 1,2,4,8,16,32,64 --rounds 4 --budget 0.4"
  SUITES="--bench-device cuda --bench-budget 0.5 --bench-precisions bf16 --bench-workloads mlp,cnn,transformer,resnet50"
  PEAK="--device cuda --precision bf16"
fi

# check NAME LIMIT_S COMMAND...: run it under its limit, its output to $OUT/NAME.log (the tail shown),
# and its exit status and seconds to $OUT/sections.tsv.
check() {
  local name=$1 limit=$2; shift 2
  printf '\n== %s (limit %s s, %s)\n' "$name" "$limit" "$(date +%T)"
  local start=$SECONDS
  timeout -k 2 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 12 "$OUT/$name.log"
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && echo "-- $name: timed out after $limit s"
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" "$limit" >> "$OUT/sections.tsv"
}

check env 15 bash -c "nvidia-smi --query-gpu=name,memory.total,power.limit,clocks.max.sm --format=csv 2>/dev/null; \
  $PY -c \"import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())\""
check gpu-tests 75 $PY -m pytest $GPU_TESTS -m gpu -q -p no:cacheprovider --junitxml "$OUT/gpu-tests.xml"
check resnet50 130 $PY -m bench sweep -d $DEV $R50 -q --overwrite -o "$OUT/sweep-resnet50.json"
check transformer 35 $PY -m bench sweep -d $DEV $TF -q --overwrite -o "$OUT/sweep-transformer.json"
check timers 40 $PY scripts/compare_timer.py $TIMERS --json "$OUT/compare-timer.json"
check sampler 50 $PY scripts/sampler_overhead.py $SAMPLER --json "$OUT/sampler-overhead.json"
check suites 80 $PY -m pytest suites/test_step_time.py -q -p no:cacheprovider $SUITES --benchmark-json "$OUT/suites.json"
check peak 20 $PY -m bench peak $PEAK --json "$OUT/peak.json"

printf '\n== summary (%s)\n' "$(date +%T)"
timeout -k 2 15 $PY scripts/gpu_check_summary.py "$OUT"
