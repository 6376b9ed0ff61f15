"""What is said and shown about a data-parallel sweep: the verdict's sentences (never more certain than
the intervals), the report's ranks table and figure, and the `bench allreduce` table."""

from __future__ import annotations

import pytest
from test_analysis_distributed import around, dp_point, dp_sweep

from bench.analysis.distributed import analyse_distributed
from bench.present.distributed import (
    allreduce_table,
    allreduce_verdict,
    distributed_verdict,
)
from bench.present.report.sweeps import distributed_context, ranks_table, sweep_context
from bench.records.allreduce import AllreducePoint, AllreduceResult
from bench.records.distributed import RankInfo
from bench.records.sweep import Case, Measurement, SweepResult


def sweep(**kw):
    result = dp_sweep([dp_point(8, [around(0.010), around(0.012)], no_sync=around(0.006), baseline=around(0.009)),
                       dp_point(16, [around(0.020), around(0.020)], no_sync=around(0.020, spread=0.05),
                                baseline=around(0.020, spread=0.05))], **kw)
    result.distributed.ranks = [RankInfo(0, 0, "a", "cpu"), RankInfo(1, 1, "b", "cpu")]
    result.distributed.analysis = analyse_distributed(result)
    return result


def text(sentences):
    return " ".join(" ".join(sentences).split())


def test_the_verdict_states_the_job_and_that_batch_sizes_are_per_rank():
    v = text(distributed_verdict(sweep()))
    assert "Data parallel: 2 ranks (DDP over gloo, cpu, 2 hosts); batch sizes are per rank" in v
    assert "where rank 1 was the slowest" in v


def test_the_verdict_gives_the_communication_share_and_efficiency_with_their_intervals():
    v = text(distributed_verdict(sweep()))
    assert "Gradient all-reduce share of a step" in v and "50.0% (" in v
    assert "Weak-scaling efficiency" in v and "0.75 (" in v


def test_a_share_whose_interval_holds_zero_is_said_to_be_indistinguishable_from_zero():
    v = text(distributed_verdict(sweep()))
    assert "At batch 16 per rank the two step times are not told apart by their CIs" in v
    assert "At batch 16 per rank it is not distinguishable from 1." in v


def test_a_job_that_ended_early_says_so():
    result = sweep()
    result.distributed.failure = "rank 1 lost contact"
    assert distributed_verdict(result)[-1] == "The job ended early: rank 1 lost contact."


def test_a_single_process_sweep_has_no_data_parallel_sentences_table_or_figure():
    one = SweepResult(config={"workload": "mlp"}, points=[Measurement(Case("mlp", 8), samples_s=[0.1] * 8)])
    assert distributed_verdict(one) == [] and ranks_table(one) is None and distributed_context(one, "#123456") is None
    assert sweep_context(0, "x.json", one, "mlp", (0.1, 0.2, 0.3))["distributed"] is None


def test_the_report_shows_each_ranks_median_the_spread_and_the_communication_share():
    ctx = distributed_context(sweep(), (0.1, 0.2, 0.3))
    table = ctx["table"]
    assert table["columns"][:5] == ["batch per rank", "batch in all", "step time", "rank 0", "rank 1"]
    first = table["rows"][0]
    assert [c["text"] for c in first[:2]] == ["8", "16"]
    col = table["columns"].index("all-reduce share")
    assert first[col]["text"].startswith("50.0% (")
    assert ctx["figure"]["svg"] and "<svg" in str(ctx["figure"]["svg"])
    assert ctx["ranks"] == ["rank 0: a cpu", "rank 1: b cpu"]


def test_the_allreduce_table_gives_algorithm_and_bus_bandwidth():
    p = AllreducePoint(size_bytes=1 << 20, count=1 << 18, dtype="float32", samples_s=[1e-3] * 8, algbw_bytes_per_s=(1 << 20) / 1e-3,
                       busbw_bytes_per_s=(1 << 20) / 1e-3 * 1.5)
    result = AllreduceResult({"world_size": 4, "dtype": "float32", "backend": "nccl", "device": "cuda"}, points=[p])
    lines = allreduce_table(result)
    assert "algbw" in lines[0] and "busbw" in lines[0] and "1.05 GB/s" in lines[1] and "1.57 GB/s" in lines[1]
    assert "Highest bus bandwidth: 1.57 GB/s at 1.0 MiB." in allreduce_verdict(result)[1]


def test_the_bus_bandwidth_interval_comes_from_the_times_ci_with_its_ends_swapped():
    from bench.analysis.distributed import bus_bandwidth_interval
    from bench.core.stats import summarize

    times = [1e-3 * (1 + 0.01 * (i % 7 - 3)) for i in range(60)]
    s = summarize(times)
    i = bus_bandwidth_interval(1 << 20, s, 4)
    assert i.value == pytest.approx((1 << 20) / s.median_s * 1.5)
    assert i.low == pytest.approx((1 << 20) / s.ci_high_s * 1.5) and i.high == pytest.approx((1 << 20) / s.ci_low_s * 1.5)
    assert i.low < i.value < i.high
    assert bus_bandwidth_interval(1 << 20, None, 4) is None


def _allreduce_file(tmp_path, **kw):
    from report_inputs import make_allreduce, write

    return write(tmp_path / "allreduce.json", make_allreduce(**kw))


def test_the_report_draws_an_allreduce_file_with_its_verdict_figure_table_and_warnings(tmp_path):
    import re

    from report_inputs import FIXED_TIME, section

    from bench.present.report import build_report, load_inputs

    html = build_report(load_inputs([_allreduce_file(tmp_path, finished=False)]), generated=FIXED_TIME)
    assert "<title>All-reduce bandwidth across message sizes" in html
    assert "Highest bus bandwidth:" in html and 'href="#allreduce"' in html
    part = section(html, "allreduce")
    assert part.count("<svg") == 0 and section(html, "summary").count("<svg") == 1  # its figure beside its card
    assert "Bus bandwidth" in section(html, "summary")
    assert "Ranks: rank 0: a cpu; rank 1: b cpu." in part
    header = re.search(r"<thead>(.*?)</thead>", part, re.S).group(1)
    for col in ("size", "median time", "algbw", "busbw (95% CI)", "rank 0", "rank 1", "rank spread"):
        assert f">{col}<" in header.replace(" ↕", "")
    assert part.count("<tr>") == 1 + 3  # the header and one row per size
    assert "1.0 MiB" in part and "3.1%" in part  # rank 0 runs 3% faster: (1 − 0.97) / 0.97
    warnings = section(html, "warnings")
    assert "4.0 KiB: a warning" in warnings and "did not finish" in warnings


def test_an_allreduce_file_beside_a_sweep_gets_its_own_environment_column(tmp_path):
    from report_inputs import FIXED_TIME, make_sweep, write

    from bench.present.report import build_report, load_inputs

    sweep_path = write(tmp_path / "sweep.json", make_sweep())
    html = build_report(load_inputs([sweep_path, _allreduce_file(tmp_path)]), generated=FIXED_TIME)
    env = html[html.index('<section id="environment">'):]
    assert "all-reduce · float32 · 2 ranks · gloo · cpu" in env


def test_the_history_store_still_refuses_an_allreduce_file(tmp_path):
    from bench.core.errors import InvalidResultsFile
    from bench.history.sources import read_results_file

    with pytest.raises(InvalidResultsFile, match="not a results file bench reads|holds no benchmark"):
        read_results_file(_allreduce_file(tmp_path))
