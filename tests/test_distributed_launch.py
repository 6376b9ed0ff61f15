"""Two-process Gloo jobs on the CPU through torchrun (`python -m torch.distributed.run --standalone
--nproc_per_node=2 -m bench ...`): the sweep and `bench allreduce` record every rank and the combined
result, only rank 0 writes and prints, and a rank that raises, runs out of memory, fails in the middle
of a point or dies ends cleanly: a one-line message on rank 0 and a valid results file, never a hang.

Each job runs once per module (fixtures) with tiny settings; a timeout on every job turns a hang into
a failure instead of a stuck CI run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.core.stats import slowest_rank_per_block
from bench.records.allreduce import load_allreduce
from bench.records.sweep import load_sweep

JOB_TIMEOUT_S = 240  # a hung job fails the test (every collective inside has a timeout of its own)
FAST = ["--budget", "0.1", "--warmup-max", "0.1", "--min-samples", "6", "--no-telemetry", "-q"]


def torchrun(*argv: str, timeout_s: float = JOB_TIMEOUT_S, module: str = "bench", cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", module, *argv], capture_output=True, text=True, timeout=timeout_s, env=env, cwd=cwd)


def bench_lines(text: str, command: str) -> list[str]:
    """Our own one-line messages (torchrun adds its report of the failed rank around them)."""
    return [line for line in text.splitlines() if line.startswith(f"bench {command}:")]


@pytest.fixture(scope="module")
def sweep_job(tmp_path_factory):
    """Batches 1 and 2 run on both ranks; at 4 rank 1 raises, at 8 it runs out of memory (both in the
    pre-flight steps, before any all-reduce), so 16 is skipped."""
    out = tmp_path_factory.mktemp("ddp") / "sweep.json"
    proc = torchrun("sweep", "-w", "bench.testing.workloads:failing", "-a", "plan=4:error,8:oom", "-b", "1,2,4,8,16",
                    "--dist-timeout", "30", "-o", str(out), *FAST)
    return proc, out


def test_a_two_rank_sweep_records_every_rank_and_the_slowest_rank_per_step(sweep_job):
    proc, out = sweep_job
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = load_sweep(out)
    assert result.finished and result.world_size == 2 and result.distributed.backend == "gloo"
    assert [r.rank for r in result.distributed.ranks] == [0, 1]
    assert result.config["distributed"]["world_size"] == 2
    ok = result.ok_points()
    assert [p.batch_size for p in ok] == [1, 2]
    for p in ok:
        assert p.distributed.per_rank_batch_size == p.batch_size
        assert p.distributed.global_batch_size == 2 * p.batch_size == p.global_batch_size
        per_rank = p.distributed.rank_samples_s
        assert len(per_rank) == 2 and all(len(s) == len(p.samples_s) for s in per_rank)
        assert p.samples_s == pytest.approx(slowest_rank_per_block(per_rank, p.block_sizes))
        assert p.distributed.no_sync.ok and len(p.distributed.no_sync.rank_samples_s) == 2
        assert p.distributed.baseline.ok and p.distributed.baseline.rank_samples_s == []
    rows = {r.per_rank_batch_size: r for r in result.distributed.analysis.points}
    assert [rows[b].global_batch_size for b in (1, 2)] == [2, 4]
    assert all(rows[b].spread is not None and rows[b].comm_share is not None and rows[b].efficiency is not None
               for b in (1, 2))


def test_only_rank_0_prints_and_the_verdict_states_the_job(sweep_job):
    proc, out = sweep_job
    assert proc.stdout.count("Results:") == 1 and proc.stdout.count("bench.testing.workloads:failing · fp32") == 1
    assert "Data parallel: 2 ranks (DDP over gloo, cpu)" in " ".join(proc.stdout.split())
    assert "Weak-scaling efficiency" in proc.stdout and "Gradient all-reduce share" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_a_rank_that_raises_fails_the_point_on_every_rank_with_its_message(sweep_job):
    proc, out = sweep_job
    result = load_sweep(out)
    p = result.point(4)
    assert p.status == "error" and p.error.startswith("rank 1: ValueError: the fake workload raised on rank 1")
    assert "rank 1: ValueError" in proc.stdout


def test_a_rank_that_runs_out_of_memory_is_an_oom_point_and_larger_batches_are_skipped(sweep_job):
    proc, out = sweep_job
    result = load_sweep(out)
    p = result.point(8)
    assert p.status == "oom" and p.error.startswith("rank 1: OutOfMemoryError: CUDA out of memory (fake)")
    assert result.point(16) is None  # larger than an out-of-memory batch
    assert result.largest_batch_that_fits == 2 and "data-parallel" in result.largest_batch_reason
    assert json.loads(out.read_text())["schema"] == "bench.sweep"


@pytest.fixture(scope="module")
def dying_job(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "dying.json"
    proc = torchrun("sweep", "-w", "bench.testing.workloads:failing", "-a", "plan=2:late-error,4:exit", "-a", "after_calls=12",
                    "-b", "1,2,4", "--dist-timeout", "3", "--no-comm-share", "--no-scaling-baseline",
                    "-o", str(out), *FAST)
    return proc, out


def test_a_rank_failing_inside_a_collective_is_waited_for_until_the_timeout_then_the_point_fails(dying_job):
    proc, out = dying_job
    p = load_sweep(out).point(2)
    assert p.status == "error" and p.error.startswith("rank 1: ValueError")
    assert "rank 0 gave up waiting for it" in p.error


def test_a_rank_that_dies_ends_the_job_with_one_line_on_rank_0_and_a_valid_file(dying_job):
    proc, out = dying_job
    assert proc.returncode != 0
    lines = bench_lines(proc.stderr, "sweep")
    assert len(lines) == 1 and lines[0].startswith("bench sweep: error: torchrun stopped this rank (SIGTERM)")
    assert str(out) in lines[0]
    result = load_sweep(out)
    assert not result.finished and "another rank exited" in result.distributed.failure
    assert [p.batch_size for p in result.points] == [1, 2]


def test_bench_allreduce_reports_algorithm_and_bus_bandwidth_for_every_size(tmp_path):
    out = tmp_path / "allreduce.json"
    proc = torchrun("allreduce", "-s", "4096,262144", "--budget", "0.2", "--dist-timeout", "30", "-o", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = load_allreduce(out)
    assert result.finished and result.world_size == 2 and [p.size_bytes for p in result.points] == [4096, 262144]
    for p in result.points:
        assert p.ok and len(p.rank_samples_s) == 2
        # block by block one rank's steps (bench.core.stats.slowest_rank_per_block)
        assert all(any(v == pytest.approx(s[i]) for s in p.rank_samples_s) for i, v in enumerate(p.samples_s))
        assert p.algbw_bytes_per_s == pytest.approx(p.size_bytes / p.stats.median_s)
        assert p.busbw_bytes_per_s == pytest.approx(p.algbw_bytes_per_s * 2 * (2 - 1) / 2)
    assert proc.stdout.count("Results:") == 1 and "busbw" in proc.stdout


def test_the_suites_run_unchanged_under_torchrun_and_rank_0_writes_every_ranks_samples(tmp_path):
    suites = Path(__file__).resolve().parents[1] / "suites" / "test_step_time.py"
    proc = torchrun(str(suites), "-k", "mlp-fp32-bs4-cpu", "--bench-budget", "0.3", "--benchmark-json", "out.json",
                    "-p", "no:cacheprovider", "-q", module="pytest", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert output.count("Wrote benchmark data in") == 1  # rank 0 alone writes the JSON
    data = json.loads((tmp_path / "out.json").read_text())
    (bench,) = data["benchmarks"]
    info = bench["extra_info"]
    m = info["measurement"]
    assert m["status"] == "ok" and info["batch_size"] == 4
    d = m["distributed"]
    assert d["world_size"] == 2 and d["per_rank_batch_size"] == 4 and d["global_batch_size"] == 8
    per_rank = [r["samples_s"] for r in d["ranks"]]
    assert len(per_rank) == 2 and all(len(r) == len(m["samples_s"]) for r in per_rank)
    assert m["samples_s"] == pytest.approx(slowest_rank_per_block(per_rank, m["block_sizes"]))  # the slowest block
    assert d["no_sync"]["status"] == "ok" and d["baseline"]["status"] == "ok"
    # pytest-benchmark timed the DDP step in rounds every rank agreed on (a mismatch would hang the job).
    timing = info["pytest_benchmark_timing"]
    assert bench["stats"]["rounds"] == timing["rounds"] and bench["stats"]["iterations"] == timing["steps_per_round"]
