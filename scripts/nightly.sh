#!/usr/bin/env bash
# Nightly hardware-regression run (for cron, a CI runner or a Slurm job): run the suites, ingest the
# results into the history store, compare them with the last good night on this hardware, print the
# change points, and build the report from the store.
#
#   crontab:  0 2 * * *  cd /path/to/repo && PATH=/path/to/venv/bin:$PATH bash scripts/nightly.sh >> reports/nightly/cron.log 2>&1
#
# Exit status: 0 nothing regressed; 1 a regression (the compare's table says which); 2 bad input or
# set-up (e.g. the store could not be opened); 3 the suites failed (a case errored or ran out of
# memory) and produced results, none of which regressed; 4 the suites produced no results file; 5 the
# compare was inconclusive (the runs cannot tell a change from the noise between runs; not recorded as a
# good night: rerun, or calibrate the noise with `bench history calibrate`).
# Environment (all optional):
#   BENCH_DB              history store: a SQLite file or postgresql+psycopg://... (default reports/history.sqlite)
#   BENCH_NIGHTLY_DIR     where the night's JSON, report and logs go (default reports/nightly)
#   BENCH_SUITE_ARGS      extra pytest arguments, e.g. "--bench-device cuda --bench-budget 2"
#   BENCH_COMPARE_ARGS    extra `bench compare` arguments, e.g. "--config nightly.toml"
#   BENCH_REPORT_NIGHTS   how many recent nights per machine the report draws (default: all of them; change
#                         points are found over the whole history either way; 0: no report)
#   PYTEST_CMD, BENCH_CMD the commands to run (default: python3 -m pytest, bench)
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
out="${BENCH_NIGHTLY_DIR:-reports/nightly}"
export BENCH_DB="${BENCH_DB:-reports/history.sqlite}"
pytest_cmd=(${PYTEST_CMD:-python3 -m pytest})
bench_cmd=(${BENCH_CMD:-bench})
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
json="$out/suites-$stamp.json"
mkdir -p "$out"

echo "== $(date -u +%FT%TZ) nightly run: suites -> $json"
# shellcheck disable=SC2086 # BENCH_SUITE_ARGS is a list of arguments
"${pytest_cmd[@]}" suites/ -p no:cacheprovider -q --benchmark-json "$json" ${BENCH_SUITE_ARGS:-}
suites_rc=$?
if [ ! -s "$json" ]; then
  echo "nightly: the suites wrote no results (pytest exit status $suites_rc)" >&2
  exit 4
fi

echo "== ingest into $BENCH_DB"
"${bench_cmd[@]}" history ingest --quiet "$json" || exit 2

echo "== compare with the last good night on this hardware"
# shellcheck disable=SC2086
"${bench_cmd[@]}" compare "$json" --against last-good --record --no-baseline-ok --hide-unchanged ${BENCH_COMPARE_ARGS:-}
compare_rc=$?
[ "$compare_rc" -le 1 ] || [ "$compare_rc" -eq 3 ] || exit 2

echo "== change points in the history"
"${bench_cmd[@]}" history changes | tee "$out/changes-$stamp.txt" || exit 2
"${bench_cmd[@]}" history trends -o "$out/trends-$stamp.json" || exit 2

nights="${BENCH_REPORT_NIGHTS:-}"
if [ "$nights" != 0 ]; then
  echo "== report"
  # The store's trends (summaries, not raw samples: the page stays small however long the history), and
  # tonight's file for its suite tables and machine_info.
  night_args=()
  [ -z "$nights" ] || night_args=(--nights "$nights")
  "${bench_cmd[@]}" report --db "$BENCH_DB" "$json" ${night_args[@]+"${night_args[@]}"} \
    -o "$out/report-$stamp.html" --title "Nightly $stamp" || exit 2
fi

if [ "$compare_rc" -eq 1 ]; then
  exit 1
fi
if [ "$compare_rc" -eq 3 ]; then
  echo "nightly: the compare was inconclusive; see above" >&2
  exit 5
fi
if [ "$suites_rc" -ne 0 ]; then
  echo "nightly: the suites failed (pytest exit status $suites_rc); see above" >&2
  exit 3
fi
exit 0
