#!/usr/bin/env bash
# The GPU checks in one call of a lent machine, at most 6 minutes in all (not yet run on a card):
#   bash scripts/gpu_wheels.sh                # here, first: the store's wheels into .whl/ (carry it)
#   bash scripts/gpu_check.sh                 # on the GPU box, from a checkout (nothing installed)
#   TINY=1 bash scripts/gpu_check.sh          # tiny sizes on the CPU, to test this script itself
# `bench doctor` runs first (can this machine's step times be trusted?), then the GPU-marked tests, two
# sweeps, the pytest suites and the matmul peak. At most 4 files come back in $OUT (default docs/gpu; a
# lent machine returns at most 8): gpu-check.log (everything printed, written as it goes, so a call cut
# at its limit still returns it), summary.md, summary.json and results.tar.gz (every result file and
# each check's log). It measures the card as found: it never changes clocks, power limits or modes.
#
# Each check runs under its own time limit (seconds, below) so one that hangs cannot take the others'
# time: with the summary's and the tarball's, the limits and their 2 s kill-afters add to 358 s, so the
# run stays under 6 minutes even if every check used all of its limit. A check cut off keeps what it
# wrote (sweep files are rewritten after every point, the doctor's JSON before each of its checks) and
# the table says "timed out".
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-docs/gpu}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")   # what goes into the tarball
SITE=$(mktemp -d "${TMPDIR:-/tmp}/gpu-site.XXXXXX")    # the installed wheels (not packed)
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1
TEE_PID=$!
: > "$WORK/sections.tsv"
PY=${PYTHON:-python3}

if [ "${TINY:-0}" = 1 ]; then
  DEV=cpu
  DOCTOR="--device cpu --quick --threads 1"
  GPU_TESTS="tests/test_memory.py tests/test_timing.py"   # every GPU-marked test skips here: collect a few
  R50="-w cnn -a image_size=8 -a width=2 -a blocks=1 -b 2,4 --budget 0.2"
  TF="-w transformer -a seq_len=16 -a d_model=16 -a n_layers=1 -a n_heads=2 -a vocab=32 -b 2 --budget 0.1 --no-largest-search"
  SUITES="--bench-device cpu --bench-workloads mlp --bench-batch-sizes 4 --bench-precisions bf16 --bench-budget 0.1"
  PEAK="--device cpu --precision fp32 --size 128 --warmup 0.05 --repeats 2 --min-repeat-s 0.02"
else
  DEV=cuda
  DOCTOR="--device cuda --sustained 20 --rounds 6"
  GPU_TESTS="tests"
  # Batch 4096 or 8192 runs out of memory on an 80-141 GB card; the search then finds the largest batch
  # between the last that fit and the first that did not, and a full measurement confirms it.
  R50="-w resnet50 -p bf16 --channels-last -b 1,4,16,64,256,1024,4096,8192 --budget 1"
  TF="-w transformer -p bf16 -a seq_len=512 -a d_model=1024 -a n_layers=8 -a n_heads=16 -a vocab=32768 -b 1,4,16,64,256 --budget 1 --no-largest-search"
  SUITES="--bench-device cuda --bench-budget 0.5 --bench-precisions bf16 --bench-workloads mlp,cnn,transformer,resnet50"
  PEAK="--device cuda --precision bf16"
fi

# check NAME LIMIT_S COMMAND...: run it under its limit, its output to $WORK/NAME.log (the tail shown),
# and its exit status and seconds to $WORK/sections.tsv.
check() {
  local name=$1 limit=$2; shift 2
  printf '\n== %s (limit %s s, %s)\n' "$name" "$limit" "$(date +%T)"
  local start=$SECONDS
  timeout -k 2 "$limit" "$@" > "$WORK/$name.log" 2>&1
  local rc=$?
  tail -n 12 "$WORK/$name.log"
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && echo "-- $name: timed out after $limit s"
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" "$limit" >> "$WORK/sections.tsv"
}

# The history store's packages travel as wheels (scripts/gpu_wheels.sh); without them the store's tests skip.
check wheels 15 bash -c "if compgen -G '.whl/*.whl' > /dev/null; then $PY -m pip install -q --no-index --no-deps \
  --target '$SITE' .whl/*.whl && echo installed: .whl/*.whl; else echo 'no .whl/*.whl: run scripts/gpu_wheels.sh'; fi"
export PYTHONPATH=$PYTHONPATH:$SITE
check doctor 90 $PY -m bench doctor $DOCTOR --json "$WORK/doctor.json"
check gpu-tests 65 $PY -m pytest -p bench.testing.skip_missing_store $GPU_TESTS -m gpu -q -p no:cacheprovider \
  --junitxml "$WORK/gpu-tests.xml"
check resnet50 70 $PY -m bench sweep -d $DEV $R50 -q --overwrite -o "$WORK/sweep-resnet50.json"
check transformer 30 $PY -m bench sweep -d $DEV $TF -q --overwrite -o "$WORK/sweep-transformer.json"
check suites 30 $PY -m pytest suites/test_step_time.py -q -p no:cacheprovider $SUITES --benchmark-json "$WORK/suites.json"
check peak 15 $PY -m bench peak $PEAK --json "$WORK/peak.json"

printf '\n== summary (%s)\n' "$(date +%T)"
timeout -k 2 15 $PY scripts/gpu_check_summary.py "$WORK" "$OUT"
timeout -k 2 10 tar -czf "$OUT/results.tar.gz" -C "$WORK" .
rm -rf "$WORK" "$SITE"
exec >&- 2>&-
wait $TEE_PID   # the log is complete in $OUT before the call returns
